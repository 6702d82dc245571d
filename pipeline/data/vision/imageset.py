"""One in-memory type for every image source, and the on-disk format of a prepared split.

A split is two files in a folder::

    <split>.safetensors   images uint8 [N, H, W, 3] (RGB), labels int64 [N], and when known
                          masks uint8 [N, H, W] (1 = foreground), bias int64 [N] (the bias attribute's index)
    <split>.jsonl         one JSON object per image, in the same order: {"id", "label", "class_name",
                          "captions": [...], "attributes": {...}, "aligned": bool|null}

plus ``classes.json`` (the class names, index = label) written once per folder. Ids are unique
strings (``shapes-train-000123``, ``cifar10-test-00042``) by which captions, embeddings and generated
views refer to an image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline.data.jsonl import json_objects
from pipeline.errors import DataError, one_line


@dataclass
class ImageSet:
    """Images of one split with their labels and whatever the source knows about them."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int64 [N]
    class_names: list[str]
    ids: list[str]
    masks: Optional[np.ndarray] = None  # uint8 [N, H, W], 1 = foreground
    bias: Optional[np.ndarray] = None  # int64 [N]: index of the bias attribute's value (e.g. the colour)
    captions: Optional[list[list[str]]] = None  # per image, one or more captions
    attributes: Optional[list[dict]] = None  # per image, e.g. {"shape": "triangle", "colour": "red", ...}
    aligned: Optional[list[bool]] = None  # per image: its bias value is its class's dominant one
    extra: dict = field(default_factory=dict)  # source-specific facts (e.g. rho), written to stats

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
        for name in ("images", "ids", "masks", "bias", "captions", "attributes", "aligned"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name}: {len(value)} entries for {n} labels")
        if len(set(self.ids)) != n:
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)

        def pick(seq):
            return None if seq is None else [seq[i] for i in idx]

        return ImageSet(self.images[idx], self.labels[idx], self.class_names, pick(self.ids),
                        None if self.masks is None else self.masks[idx], None if self.bias is None else self.bias[idx],
                        pick(self.captions), pick(self.attributes), pick(self.aligned), dict(self.extra))


def write_split(folder: Path, split: str, data: ImageSet) -> None:
    """Write ``<split>.safetensors`` and ``<split>.jsonl`` (and ``classes.json``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"images": torch.from_numpy(np.ascontiguousarray(data.images)),
               "labels": torch.from_numpy(np.asarray(data.labels, dtype=np.int64))}
    if data.masks is not None:
        tensors["masks"] = torch.from_numpy(np.ascontiguousarray(data.masks, dtype=np.uint8))
    if data.bias is not None:
        tensors["bias"] = torch.from_numpy(np.asarray(data.bias, dtype=np.int64))
    save_file(tensors, str(folder / f"{split}.safetensors"))
    with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
        for i, image_id in enumerate(data.ids):
            row = {"id": image_id, "label": int(data.labels[i]), "class_name": data.class_names[int(data.labels[i])],
                   "captions": data.captions[i] if data.captions is not None else [],
                   "attributes": data.attributes[i] if data.attributes is not None else {},
                   "aligned": data.aligned[i] if data.aligned is not None else None}
            f.write(json.dumps(row, sort_keys=True) + "\n")
    (folder / "classes.json").write_text(json.dumps(data.class_names, indent=1) + "\n")


def read_corpus(root: Path, source: str, key: str, splits: tuple[str, ...] = ("train", "valid", "test")) -> dict:
    """The ``splits`` of the prepare-vision corpus ``root/source`` (split -> ImageSet). A missing split is one
    DataError line naming the stage that writes it and ``key``, the params key that chose ``source``."""
    folder = Path(root) / source
    missing = [s for s in splits if not (folder / f"{s}.safetensors").is_file()]
    if missing:
        raise DataError(f"{folder}: no {missing[0]} split ({missing[0]}.safetensors); run the prepare-vision stage "
                        f"(dvc repro prepare-vision) or set {key}")
    return {s: read_split(folder, s) for s in splits}


def read_split(folder: Path, split: str) -> ImageSet:
    """The split written by :func:`write_split`; a missing or inconsistent file is one DataError line."""
    folder = Path(folder)
    tensors_path, rows_path, classes_path = folder / f"{split}.safetensors", folder / f"{split}.jsonl", folder / "classes.json"
    for p in (tensors_path, rows_path, classes_path):
        if not p.is_file():
            raise DataError(f"{p}: missing; run the stage that prepares {folder} (dvc repro)")
    try:
        t = load_file(str(tensors_path))
        class_names = json.loads(classes_path.read_text())
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"{folder}: unreadable {split} split ({one_line(exc)}); re-run prepare-vision") from None
    rows = [row for _, row in json_objects(rows_path)]
    if len(rows) != len(t.get("labels", ())):
        raise DataError(f"{rows_path}: {len(rows)} rows for {len(t.get('labels', ()))} images in {tensors_path.name}")
    try:
        return ImageSet(
            images=t["images"].numpy(), labels=t["labels"].numpy(), class_names=class_names, ids=[r["id"] for r in rows],
            masks=t["masks"].numpy() if "masks" in t else None, bias=t["bias"].numpy() if "bias" in t else None,
            captions=[r["captions"] for r in rows], attributes=[r["attributes"] for r in rows],
            aligned=[r["aligned"] for r in rows],
        )
    except (KeyError, ValueError) as exc:
        raise DataError(f"{folder}: {split} split does not match its format ({one_line(exc)})") from None
