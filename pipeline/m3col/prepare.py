"""The two M3CoL tasks' data, built once by ``prepare-m3col``, and their reading by the training stages.

Layout of the folder (default ``data/m3col``)::

    image/{train,valid,test}.{safetensors,jsonl}, image/classes.json
        the image + caption task as image splits (pipeline.data.vision.imageset): the degraded images, the
        (colour, shape) class, ONE noisy caption per image, and per image what it lost (attributes: colour,
        shape, grey, occluded, caption_colour, caption_shape); a real source's images and texts as read
    image/embeddings.safetensors   <split>.image float16 [N, Di], <split>.text float16 [N, Dt]: the frozen
                                   towers' unit embeddings of each image and its caption, in split order
    speech/{train,valid,test}.json one row per utterance of the prepare stage's split, in order:
                                   {"transcript" (corrupted), "label", "dropped", "substituted"}
    speech/classes.json, speech/embeddings.safetensors (<split>.text [N, Dt])
    manifest.json                  towers' fingerprints, sizes, the image task's analytic ceilings
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.data.vision.imageset import ImageSet, read_split
from pipeline.errors import DataError
from pipeline.m3col import corrupt

SPLITS = ("train", "valid", "test")
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}


def rng(seed: int, split: str, stream: int) -> np.random.Generator:
    """Separate streams per split and purpose, so e.g. changing n_train leaves the test split unchanged."""
    return np.random.default_rng([seed, SPLIT_CODE[split], stream])


def _first(n: int, data: ImageSet) -> ImageSet:
    return data if n == 0 or n >= len(data) else data.subset(np.arange(n))


# ----------------------------------------------------------------------------- image + caption


def shapes_task(vision: Path, cfg, seed: int) -> tuple[dict[str, ImageSet], dict]:
    """The degraded shapes splits (``cfg``: ``m3col.data.image``) and the analytic ceilings of the test split."""
    folder = vision / "shapes"
    table_file = folder / "attributes.json"
    if not table_file.is_file():
        raise DataError(f"{table_file}: missing; the image task needs prepare-vision's shapes source "
                        "(vision.sources: [shapes, ...])")
    domains = json.loads(table_file.read_text())["domains"]
    shapes, colours = domains["shape"], domains["colour"]
    classes = [f"{c} {s}" for s in shapes for c in colours]  # (shape, colour) order, as the embed stage's prompts
    sizes = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test}
    out, ceiling = {}, {}
    for split in SPLITS:
        data = _first(sizes[split], read_split(folder, split))
        if data.masks is None or data.attributes is None:
            raise DataError(f"{folder}/{split}: no masks or attributes; re-run prepare-vision")
        images, grey, occluded = corrupt.degrade(data.images, data.masks, data.attributes, cfg.degrade, rng(seed, split, 0))
        r = rng(seed, split, 1)
        captions, has_c, has_s, attrs = [], [], [], []
        for i, a in enumerate(data.attributes):
            text, c, s = corrupt.caption(a["colour"], a["shape"], cfg.captions, r)
            captions.append([text])
            has_c.append(c)
            has_s.append(s)
            attrs.append({"colour": a["colour"], "shape": a["shape"], "grey": bool(grey[i]),
                          "occluded": bool(occluded[i]), "caption_colour": c, "caption_shape": s})
        labels = np.array([classes.index(f"{a['colour']} {a['shape']}") for a in data.attributes], dtype=np.int64)
        out[split] = ImageSet(images, labels, classes, list(data.ids), captions=captions, attributes=attrs)
        if split == "test":
            hc, hs = np.array(has_c), np.array(has_s)
            ceiling = {"image": corrupt.image_ceiling(grey, len(colours)),
                       "text": corrupt.text_ceiling(hc, hs, len(colours), len(shapes)),
                       "fused": corrupt.fused_ceiling(grey, hc, hs, len(colours))}
    return out, ceiling


def real_task(cfg, seed: int) -> dict[str, ImageSet]:
    """A real image + text dataset by path (``m3col.data.image.source``), one text per image."""
    from pipeline.data.vision.readers import options_of, read_real

    wanted = {"image_size": cfg.image_size, "text_field": cfg.text_field, "seed": seed}
    splits = read_real(cfg.source, Path(cfg.root), **{k: v for k, v in wanted.items() if k in options_of(cfg.source)})
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"{cfg.root}: the {cfg.source} dataset has no {missing[0]} split (need train, valid, test)")
    sizes = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test}
    out = {}
    for split in SPLITS:
        data = _first(sizes[split], splits[split])
        if data.captions is None or any(not c for c in data.captions):
            bad = next(i for i, c in enumerate(data.captions or [[]] * len(data)) if not c)
            raise DataError(f"{cfg.root}: {split} image {data.ids[bad]!r} has no text; M3CoL needs a text per image")
        out[split] = ImageSet(data.images, data.labels, data.class_names, data.ids,
                              captions=[[c[0]] for c in data.captions], attributes=[{} for _ in data.ids])
    return out


# ----------------------------------------------------------------------------- speech + transcript


def speech_task(prepared: Path, cfg, seed: int) -> tuple[dict[str, list[dict]], list[str]]:
    """Per split, one row per utterance with its corrupted transcript (``cfg``: ``m3col.data.speech``)."""
    meta, classes = {}, None
    for split in SPLITS:
        f = prepared / "meta" / f"{split}.json"
        if not f.is_file():
            raise DataError(f"{f}: missing; run the prepare stage first (dvc repro prepare)")
        meta[split] = json.loads(f.read_text())
    tok = prepared / "tokenizer.json"
    if not tok.is_file():
        raise DataError(f"{tok}: missing; run the prepare stage first (dvc repro prepare)")
    classes = list(json.loads(tok.read_text())["classes"])
    # a bad row (no transcript) is skipped here and refused in one line by the loop below
    vocab = sorted({w for row in meta["train"] if isinstance(row.get("transcript"), str)
                    for w in row["transcript"].split()})
    out = {}
    for split in SPLITS:
        r, rows = rng(seed, split, 2), []
        for i, m in enumerate(meta[split]):
            if not isinstance(m.get("transcript"), str) or not m["transcript"].split() or "label_id" not in m:
                raise DataError(f"{prepared}/meta/{split}.json: row {i} has no transcript or label_id")
            text, dropped, substituted = corrupt.corrupt_transcript(m["transcript"], vocab, cfg, r)
            rows.append({"transcript": text, "label": int(m["label_id"]), "dropped": dropped, "substituted": substituted})
        out[split] = rows
    return out, classes


# ----------------------------------------------------------------------------- reading (the training stages)


@dataclass
class ImageTask:
    splits: dict[str, ImageSet]
    image: dict[str, torch.Tensor]  # split -> float32 [N, Di] frozen image embeddings
    text: dict[str, torch.Tensor]  # split -> float32 [N, Dt] frozen caption embeddings
    classes: list[str]
    manifest: dict


@dataclass
class SpeechTask:
    rows: dict[str, list[dict]]
    text: dict[str, torch.Tensor]  # split -> float32 [N, Dt]
    classes: list[str]
    manifest: dict


def _manifest(root: Path) -> dict:
    f = root / "manifest.json"
    if not f.is_file():
        raise DataError(f"{f}: missing; run the prepare-m3col stage (dvc repro prepare-m3col)")
    return json.loads(f.read_text())


def _embeddings(f: Path, keys: list[str]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not f.is_file():
        raise DataError(f"{f}: missing; run the prepare-m3col stage (dvc repro prepare-m3col)")
    t = load_file(str(f))
    missing = [k for k in keys if k not in t]
    if missing:
        raise DataError(f"{f}: no tensor {missing[0]!r}; re-run prepare-m3col")
    return {k: t[k].float() for k in keys}


def load_image_task(root: Path) -> ImageTask:
    root = Path(root)
    manifest = _manifest(root)
    splits = {s: read_split(root / "image", s) for s in SPLITS}
    emb = _embeddings(root / "image" / "embeddings.safetensors", [f"{s}.{m}" for s in SPLITS for m in ("image", "text")])
    for s in SPLITS:
        for m in ("image", "text"):
            if emb[f"{s}.{m}"].shape[0] != len(splits[s]):
                raise DataError(f"{root}/image/embeddings.safetensors: {s}.{m} has {emb[f'{s}.{m}'].shape[0]} rows "
                                f"for {len(splits[s])} images; re-run prepare-m3col")
    return ImageTask(splits, {s: emb[f"{s}.image"] for s in SPLITS}, {s: emb[f"{s}.text"] for s in SPLITS},
                     splits["train"].class_names, manifest)


def load_speech_task(root: Path, n_utterances: dict[str, int]) -> SpeechTask:
    """The corrupted transcripts and their embeddings; ``n_utterances``: the prepared splits' sizes, which
    they must match (else the speech corpus changed after prepare-m3col)."""
    root = Path(root)
    manifest = _manifest(root)
    rows = {}
    for s in SPLITS:
        f = root / "speech" / f"{s}.json"
        if not f.is_file():
            raise DataError(f"{f}: missing; run the prepare-m3col stage (dvc repro prepare-m3col)")
        rows[s] = json.loads(f.read_text())
        if len(rows[s]) != n_utterances[s]:
            raise DataError(f"{f}: {len(rows[s])} rows for {n_utterances[s]} prepared {s} utterances; "
                            "re-run prepare-m3col (dvc repro)")
    emb = _embeddings(root / "speech" / "embeddings.safetensors", [f"{s}.text" for s in SPLITS])
    classes = json.loads((root / "speech" / "classes.json").read_text())
    return SpeechTask(rows, {s: emb[f"{s}.text"] for s in SPLITS}, classes, manifest)
