"""Stage ``prepare-m3col``: the M3CoL tasks' data, with the frozen towers' embeddings, built once.

Reads the params ``m3col.data`` and ``towers`` (the frozen towers, as the embed stage), prepare-vision's
shapes corpus (``--vision``) or a real image + text dataset by path (``m3col.data.image.source``), and the
prepare stage's transcripts (``--prepared``). Writes ``--out`` (default ``data/m3col``) whole, as
:mod:`pipeline.m3col.prepare` describes: the degraded images with one noisy caption each, the corrupted
transcripts, what each sample lost, and the frozen towers' embeddings of every image, caption and
transcript. Same params, same bytes; timings go to ``--timing``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--vision", default="data/vision", help="prepare-vision's folder (default: data/vision)")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder (default: data/prepared)")
    parser.add_argument("--out", default="data/m3col", help="output folder (default: data/m3col)")
    parser.add_argument("--timing", default="reports/timing/prepare-m3col.json", help="wall times (outside --out)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def embed_texts(tower, texts: list[str], progress: bool):
    """Each distinct string through the tower once; rows in ``texts`` order (float16)."""
    pool = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(pool)}
    emb = tower.encode(pool, progress=progress)
    return emb[[row[t] for t in texts]].half().contiguous(), len(pool)


def main(args) -> None:
    from safetensors.torch import save_file

    from pipeline.core.atomic import atomic_dir
    from pipeline.core.params import read_yaml, section
    from pipeline.core.runtime import setup
    from pipeline.data.vision.imageset import write_split
    from pipeline.m3col.params import M3colConfig
    from pipeline.m3col.prepare import SPLITS, real_task, shapes_task, speech_task
    from pipeline.models.params import TowersConfig
    from pipeline.models.towers import fingerprints
    from pipeline.models.towers_image import ImageTower
    from pipeline.models.towers_text import TextTower

    t0, marks = time.time(), {}
    raw = read_yaml(args.params)
    cfg, towers = section(raw, M3colConfig, "m3col").data, section(raw, TowersConfig, "towers")
    progress = not args.no_progress
    device = setup(towers.device, seed=0, threads=towers.threads, key="towers.device")
    prints = fingerprints(towers)  # bad tower paths fail here, before any data is read
    if cfg.image.source == "shapes":
        images, ceiling = shapes_task(Path(args.vision), cfg.image, cfg.seed)
    else:
        images, ceiling = real_task(cfg.image, cfg.seed), None
    speech, speech_classes = speech_task(Path(args.prepared), cfg.speech, cfg.seed)
    marks["data"] = time.time() - t0
    with atomic_dir(Path(args.out), owner="prepare-m3col") as work:
        text_tower = TextTower(towers.text, device)
        texts, distinct = {}, 0
        for split in SPLITS:
            texts[f"image/{split}.text"], n1 = embed_texts(text_tower, [c[0] for c in images[split].captions], progress)
            texts[f"speech/{split}.text"], n2 = embed_texts(text_tower, [r["transcript"] for r in speech[split]], progress)
            distinct += n1 + n2
        del text_tower
        marks["text_tower"] = time.time() - t0 - sum(marks.values())
        image_tower = ImageTower(towers.image, device)
        pixels = {split: image_tower.encode(images[split].images, progress=progress).half().contiguous() for split in SPLITS}
        del image_tower
        marks["image_tower"] = time.time() - t0 - sum(marks.values())
        for split in SPLITS:
            write_split(work / "image", split, images[split])
            (work / "speech").mkdir(exist_ok=True)
            (work / "speech" / f"{split}.json").write_text(json.dumps(speech[split]) + "\n")
        (work / "speech" / "classes.json").write_text(json.dumps(speech_classes, indent=1) + "\n")
        save_file({**{f"{s}.image": pixels[s] for s in SPLITS}, **{f"{s}.text": texts[f"image/{s}.text"] for s in SPLITS}},
                  str(work / "image" / "embeddings.safetensors"))
        save_file({f"{s}.text": texts[f"speech/{s}.text"] for s in SPLITS}, str(work / "speech" / "embeddings.safetensors"))
        manifest = {"towers": prints, "source": cfg.image.source, "ceiling": ceiling,
                    "n": {"image": {s: len(images[s]) for s in SPLITS}, "speech": {s: len(speech[s]) for s in SPLITS}},
                    "image_classes": len(images["train"].class_names), "speech_classes": len(speech_classes)}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    marks["write"] = time.time() - t0 - sum(marks.values())
    Path(args.timing).parent.mkdir(parents=True, exist_ok=True)
    Path(args.timing).write_text(json.dumps({**{k: round(v, 2) for k, v in marks.items()}, "distinct_texts": distinct,
                                             "device": device.type}, indent=1) + "\n")
    ceil = "" if ceiling is None else " ceilings " + ", ".join(f"{k} {100 * v:.1f}" for k, v in ceiling.items())
    print(f"prepare-m3col: {sum(len(images[s]) for s in SPLITS)} images ({cfg.image.source}), "
          f"{sum(len(speech[s]) for s in SPLITS)} transcripts, {distinct} distinct texts embedded;{ceil} "
          f"[{time.time() - t0:.0f} s]")
