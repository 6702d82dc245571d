"""Image-caption pairs: a JSON-lines file, or COCO captions.

**JSON lines** (``root`` is the ``.jsonl`` file; images relative to its folder, or to option ``images``)::

    {"image": "photos/001.png", "caption": "a red car", "label": "car", "split": "train"}

one object per line, ``label`` and ``split`` optional but on every line or on none; several lines naming
the same image give it several captions (and must agree on its label and split). Without ``split`` the
images are drawn into train/valid/test (``valid_fraction``, ``test_fraction``, ``seed``).

**COCO captions** (``root`` is a captions JSON, or the COCO folder)::

    {"images": [{"id": 1, "file_name": "000000000001.jpg", ...}],
     "annotations": [{"image_id": 1, "caption": "A man riding a horse.", ...}]}

A file's images are in option ``images``; by default the folder named after the file
(``annotations/captions_train2017.json`` -> ``train2017/`` beside ``annotations/``), else the file's folder.
All of a file's images go to option ``split`` when given, else they are drawn into train/valid/test. Given
the COCO folder, ``annotations/captions_train<year>.json`` is train (a seeded ``valid_fraction`` of it
valid) and ``captions_val<year>.json`` is test (``year`` option, default 2017). An image with no caption
is kept with none.

Captions are grouped per image in first-seen order. Classes: the sorted ``label`` values, else the single
class ``"none"``. Ids are the image paths as the file writes them (``photos/001.png``, COCO's ``file_name``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_common import check_image_size, finish_splits, load_images, split_name
from pipeline.data.jsonl import json_objects
from pipeline.errors import DataError, ParamsError, one_line


def build(entries: dict[str, dict], folder: Path, size, where: str) -> ImageSet:
    """One ImageSet from ``image path -> {"captions", "label"}`` (images under ``folder``)."""
    labels = {e["label"] for e in entries.values()}
    classes = sorted(labels) if labels != {None} else ["none"]
    for image, e in entries.items():
        if not (folder / image).is_file():
            raise DataError(f"{where}: image {folder / image} missing")
    images = load_images([folder / image for image in entries], size)
    y = np.array([classes.index(e["label"] if e["label"] is not None else "none") for e in entries.values()],
                 dtype=np.int64)
    return ImageSet(images, y, classes, list(entries), captions=[e["captions"] for e in entries.values()])


def read_jsonl(root: Path, *, images: Optional[str] = None, image_size=None, valid_fraction: float = 0.1,
               test_fraction: float = 0.1, seed: int = 0) -> dict[str, ImageSet]:
    size = check_image_size(image_size, "jsonl")
    if not root.is_file():
        raise DataError(f"{root}: missing (the JSON-lines caption file)")
    entries: dict[str, dict] = {}  # image -> {"captions", "label", "split"}, in first-seen order
    has = {"label": set(), "split": set()}  # whether lines have the optional keys (must agree)
    for where, row in json_objects(root):
        if not isinstance(row.get("image"), str) or not isinstance(row.get("caption"), str):
            raise DataError(f"{where}: expected an object with string 'image' and 'caption'")
        for key in has:
            has[key].add(key in row)
            if len(has[key]) > 1:
                raise DataError(f"{where}: {key!r} is on some lines and not on others")
        label = str(row["label"]) if "label" in row else None
        split = split_name(row["split"], where) if "split" in row else "all"
        e = entries.setdefault(row["image"], {"captions": [], "label": label, "split": split})
        if (e["label"], e["split"]) != (label, split):
            raise DataError(f"{where}: image {row['image']} given label/split {label}/{split}, "
                            f"earlier {e['label']}/{e['split']}")
        e["captions"].append(row["caption"])
    if not entries:
        raise DataError(f"{root}: no captions")
    folder = Path(images) if images is not None else root.parent
    everything = build(entries, folder, size, str(root))
    splits = [e["split"] for e in entries.values()]
    sets = {s: everything.subset([i for i, t in enumerate(splits) if t == s]) for s in dict.fromkeys(splits)}
    return finish_splits(sets, valid_fraction, test_fraction, seed)


def coco_entries(path: Path) -> dict[str, dict]:
    """``file_name -> {"captions", "label": None}`` from a COCO captions file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable COCO captions file ({one_line(exc)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise DataError(f"{path}: expected a JSON object with lists 'images' and 'annotations'")
    by_id: dict[int, dict] = {}
    entries: dict[str, dict] = {}
    for i, img in enumerate(doc["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            raise DataError(f"{path}: images[{i}] needs an int 'id' and a string 'file_name'")
        if img["id"] in by_id or img["file_name"] in entries:
            raise DataError(f"{path}: images[{i}]: id {img['id']} or file_name {img['file_name']} given twice")
        by_id[img["id"]] = entries[img["file_name"]] = {"captions": [], "label": None}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str):
            raise DataError(f"{path}: annotations[{i}] needs an 'image_id' and a string 'caption'")
        if ann.get("image_id") not in by_id:
            raise DataError(f"{path}: annotations[{i}] names image_id {ann.get('image_id')!r}, not in 'images'")
        by_id[ann["image_id"]]["captions"].append(ann["caption"])
    if not entries:
        raise DataError(f"{path}: no images")
    return entries


def coco_image_folder(path: Path) -> Path:
    name = path.stem[len("captions_"):] if path.stem.startswith("captions_") else path.stem
    for folder in (path.parent.parent / name, path.parent / name):
        if folder.is_dir():
            return folder
    return path.parent


def read_coco(root: Path, *, images: Optional[str] = None, split: Optional[str] = None, year: str = "2017",
              image_size=None, valid_fraction: float = 0.1, test_fraction: float = 0.1,
              seed: int = 0) -> dict[str, ImageSet]:
    size = check_image_size(image_size, "coco")
    if root.is_dir():  # the COCO folder: train (valid drawn from it) and val as test
        if images is not None or split is not None:
            raise ParamsError("read_real(coco): images and split are options of a single captions file, "
                              f"not of the COCO folder {root}")
        files = {"train": root / "annotations" / f"captions_train{year}.json",
                 "test": root / "annotations" / f"captions_val{year}.json"}
        for path in files.values():
            if not path.is_file():
                raise DataError(f"{path}: missing (COCO captions for year {year})")
        sets = {s: build(coco_entries(p), coco_image_folder(p), size, str(p)) for s, p in files.items()}
        if sets["train"].images.shape[1:] != sets["test"].images.shape[1:]:
            raise DataError(f"{files['test']}: images of size {sets['test'].images.shape[1:3]} but train's are "
                            f"{sets['train'].images.shape[1:3]}; set vision.real.image_size (the image_size option)")
        return finish_splits(sets, valid_fraction, test_fraction, seed)
    if not root.is_file():
        raise DataError(f"{root}: missing (a COCO captions JSON or the COCO folder)")
    folder = Path(images) if images is not None else coco_image_folder(root)
    target = split_name(split, "read_real(coco) option split") if split is not None else "all"
    return finish_splits({target: build(coco_entries(root), folder, size, str(root))}, valid_fraction,
                         test_fraction, seed)
