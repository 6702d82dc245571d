"""Stage ``embed``: the frozen towers' embeddings of every text and image the later stages use, computed once.

Reads the params sections ``towers`` and ``embed``, the image corpora (``--vision``, one folder per source
with its splits, :mod:`pipeline.data.vision.imageset`) and the speech corpus's metadata (``--prepared``,
``meta/{train,valid,test}.json``). Writes ``--out`` (default ``data/embeddings``), laid out as
:mod:`pipeline.data.embeddings` describes: float16 unit rows, their ids, the tower's fingerprint.

Texts: every caption of every image (deduplicated), every transcript, the 31 FSC intents described by
``embed.intent_template``, the keywords, a prompt per vision class, and, for a source with colour and shape
attributes, every colour x shape combination under every ``embed.prompt_templates`` template. Every distinct string is embedded
once, whichever sets it belongs to, so one string has one embedding across the cache.
"""

from __future__ import annotations

import json
import string
import time
from pathlib import Path

from pipeline.core.atomic import atomic_dir
from pipeline.data.embeddings import write_set
from pipeline.errors import DataError
from pipeline.models.params import EmbedConfig, load_embed_params

#: what the stage writes at the top of --out
OUTPUT_ENTRIES = ("text", "image", "manifest.json")
SPEECH_SPLITS = ("train", "valid", "test")


def add_arguments(parser) -> None:
    parser.add_argument("--vision", default="data/vision", help="image corpora, one folder per source (default: data/vision)")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder (default: data/prepared)")
    parser.add_argument("--out", default="data/embeddings", help="output folder (default: data/embeddings)")
    parser.add_argument("--timing", default="reports/vision/embed.json",
                        help="where the timings go (default: reports/vision/embed.json; not in --out, whose bytes "
                             "depend only on the inputs)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def intent_text(template: str, intent: str) -> str:
    """``"activate_lights_kitchen"`` -> "activate the lights in the kitchen" with the default template; a slot
    that is ``none`` is dropped with the literal text just before it ("bring_socks_none" -> "bring the socks")."""
    from pipeline.data.schema import split_intent

    action, obj, location = split_intent(intent)
    values = {"action": action, "object": obj, "location": location}
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if name is None:
            parts.append(literal)
        elif values[name] != "none":
            parts.append(literal + values[name])
    return " ".join("".join(parts).split())


def class_text(template: str, name: str) -> str:
    return template.format(name=name.replace("_", " "))


def read_vision(root: Path, sources: list[str]) -> dict[str, dict[str, object]]:
    """source -> split -> ImageSet, every split found in the source's folder (sorted by name)."""
    from pipeline.data.vision.imageset import read_split

    out = {}
    for source in sources:
        folder = root / source
        splits = sorted(p.stem for p in folder.glob("*.safetensors"))
        if not splits:
            raise DataError(f"{folder}: no image split (<split>.safetensors); run the prepare-vision stage (dvc repro)")
        out[source] = {s: read_split(folder, s) for s in splits}
    return out


def read_transcripts(prepared: Path) -> dict[str, list[str]]:
    """split -> the transcript of each utterance of ``meta/<split>.json``, in order."""
    out = {}
    for split in SPEECH_SPLITS:
        f = prepared / "meta" / f"{split}.json"
        if not f.is_file():
            raise DataError(f"{f}: missing; run the prepare stage first (dvc repro prepare)")
        rows = json.loads(f.read_text())
        bad = next((i for i, r in enumerate(rows) if not isinstance(r.get("transcript"), str)), None)
        if bad is not None:
            raise DataError(f"{f}: row {bad} has no transcript")
        out[split] = [r["transcript"] for r in rows]
    return out


def unique(texts) -> tuple[list[str], dict[str, int]]:
    """Distinct strings in first-seen order and string -> row."""
    rows: dict[str, int] = {}
    for t in texts:
        rows.setdefault(t, len(rows))
    return list(rows), rows


def read_domains(root: Path, sources: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """source -> (shapes, colours) for the sources whose ``attributes.json`` has both domains."""
    out = {}
    for source in sources:
        f = root / source / "attributes.json"
        found = json.loads(f.read_text()).get("domains", {}) if f.is_file() else {}
        if "shape" in found and "colour" in found:
            out[source] = (list(found["shape"]), list(found["colour"]))
    return out


def prompt_set(templates: list[str], shapes: list[str], colours: list[str]) -> dict:
    """Every ``"colour shape"`` combination under every template: ids ``"<colour> <shape>|<template index>"``,
    combinations in (shape, colour) order, templates inner."""
    ids, texts = [], []
    for shape in shapes:
        for colour in colours:
            for i, tpl in enumerate(templates):
                ids.append(f"{colour} {shape}|{i}")
                texts.append(tpl.format(colour=colour, shape=shape))
    return {"ids": ids, "texts": texts}


def text_sets(cfg: EmbedConfig, vision: dict, transcripts: dict[str, list[str]],
              domains: dict | None = None) -> dict[str, dict]:
    """set name -> {"ids", "texts", "refs"} (ids: a unique key per row)."""
    domains = domains or {}
    from pipeline.data.schema import FSC_INTENTS

    sets = {}
    for source, splits in vision.items():
        caps = [c for data in splits.values() for per_image in data.captions for c in per_image]
        if caps:
            texts, row = unique(caps)
            refs = {i: [row[c] for c in per_image] for data in splits.values() for i, per_image in zip(data.ids, data.captions)}
            sets[f"captions-{source}"] = {"ids": texts, "texts": texts, "refs": refs}
        names = next(iter(splits.values())).class_names
        sets[f"classes-{source}"] = {"ids": names, "texts": [class_text(cfg.template_for(source), n) for n in names]}
        if source in domains:
            sets[f"prompts-{source}"] = prompt_set(cfg.prompt_templates, *domains[source])
    texts, row = unique(t for split in SPEECH_SPLITS for t in transcripts[split])
    sets["transcripts"] = {"ids": texts, "texts": texts, "refs": {s: [row[t] for t in transcripts[s]] for s in SPEECH_SPLITS}}
    sets["intents"] = {"ids": list(FSC_INTENTS), "texts": [cfg.intent_descriptions.get(i) or intent_text(cfg.intent_template, i)
                                                          for i in FSC_INTENTS]}
    words, _ = unique(cfg.keywords)
    sets["keywords"] = {"ids": words, "texts": words}
    return sets


def main(args) -> None:
    from pipeline.core.runtime import setup
    from pipeline.models.towers import fingerprints
    from pipeline.models.towers_image import ImageTower
    from pipeline.models.towers_text import TextTower

    t0 = time.time()
    towers, cfg = load_embed_params(args.params)
    progress = not args.no_progress
    device = setup(towers.device, seed=0, threads=towers.threads, key="towers.device")
    prints = fingerprints(towers)  # bad tower paths fail here, before any data is read
    vision = read_vision(Path(args.vision), cfg.vision_sources)
    sets = text_sets(cfg, vision, read_transcripts(Path(args.prepared)), read_domains(Path(args.vision), cfg.vision_sources))
    manifest, stats = {"towers": prints, "sets": {}}, {}
    with atomic_dir(Path(args.out), owner="embed", legacy=OUTPUT_ENTRIES) as work:
        t = time.time()
        tower = TextTower(towers.text, device)
        loaded = time.time()
        pool, row = unique(x for s in sets.values() for x in s["texts"])  # each distinct string once
        emb = tower.encode(pool, progress=progress)
        stats["text"] = _speed(len(pool), loaded - t, time.time() - loaded)
        for name, s in sets.items():
            entry = write_set(work / "text", name, emb[[row[x] for x in s["texts"]]], {**s, "tower": prints["text"]})
            manifest["sets"][f"text/{name}"] = entry
        del tower
        t = time.time()
        tower = ImageTower(towers.image, device)
        loaded, n_images = time.time(), 0
        for source, splits in vision.items():
            for split, data in splits.items():
                meta = {"ids": data.ids, "source": source, "split": split, "tower": prints["image"]}
                entry = write_set(work / "image", f"{source}-{split}", tower.encode(data.images, progress=progress), meta)
                manifest["sets"][f"image/{source}-{split}"] = entry
                n_images += len(data)
        stats["image"] = _speed(n_images, loaded - t, time.time() - loaded)
        stats["seconds"] = round(time.time() - t0, 2)
        stats["device"] = device.type
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    Path(args.timing).parent.mkdir(parents=True, exist_ok=True)
    Path(args.timing).write_text(json.dumps(stats, indent=1) + "\n")
    print(f"embed: {stats['text']['n']} distinct texts ({stats['text']['per_second']:.0f}/s), "
          f"{n_images} images ({stats['image']['per_second']:.0f}/s) in {len(manifest['sets'])} sets, "
          f"{stats['seconds']:.1f} s")


def _speed(n: int, load_s: float, run_s: float) -> dict:
    return {"n": n, "load_seconds": round(load_s, 2), "seconds": round(run_s, 2),
            "per_second": round(n / run_s, 1) if run_s > 0 else 0.0}
