"""An image folder: one sub-folder per class, optionally under one folder per split.

Layouts (``.png``, ``.jpg``, ``.jpeg``, any case; other files and hidden files are ignored)::

    <root>/<split>/<class>/<file>    when <root> has a split folder: train, valid|val|validation|dev, test
    <root>/<class>/<file>            otherwise; split by a seeded draw (valid_fraction, test_fraction)

With split folders every sub-folder of ``root`` must be a split name, and a missing valid split is a seeded
slice of train (``valid_fraction``). Classes are the class folder names, sorted (as torchvision's
ImageFolder), over all splits; a class folder with no image is an error. Images are decoded by PIL,
converted to RGB and resized to ``image_size`` when given; without it every image must have the same
size. Ids are the files' paths relative to ``root``, with ``/`` (``train/cat/001.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_common import (IMAGE_SUFFIXES, SPLIT_ALIASES, check_image_size, finish_splits,
                                                   load_images, split_name)
from pipeline.errors import DataError


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_files(split_folder: Path) -> dict[str, list[Path]]:
    """class name -> its image files (sorted); an empty class folder is a DataError."""
    out = {}
    for folder in subfolders(split_folder):
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} file)")
        out[folder.name] = files
    if not out:
        raise DataError(f"{split_folder}: no class folders")
    return out


def read_imagefolder(root: Path, *, image_size=None, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                     seed: int = 0) -> dict[str, ImageSet]:
    size = check_image_size(image_size, "imagefolder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    tops = subfolders(root)
    if any(p.name.lower() in SPLIT_ALIASES for p in tops):
        per_split: dict[str, dict[str, list[Path]]] = {}
        for p in tops:
            name = split_name(p.name, str(p))  # a stray folder beside train/ is an unknown split name
            if name in per_split:
                raise DataError(f"{p}: a second folder for split {name!r}")
            per_split[name] = class_files(p)
    else:
        per_split = {"all": class_files(root)}  # "all": drawn into train/valid/test by finish_splits
    classes = sorted({c for by_class in per_split.values() for c in by_class})
    rows = [(split, classes.index(c), f) for split, by_class in per_split.items()
            for c in sorted(by_class) for f in by_class[c]]
    images = load_images([f for _, _, f in rows], size)  # one call: every split must share the image size
    labels = np.array([y for _, y, _ in rows], dtype=np.int64)
    everything = ImageSet(images, labels, classes, [f.relative_to(root).as_posix() for _, _, f in rows])
    sets = {split: everything.subset([i for i, r in enumerate(rows) if r[0] == split]) for split in per_split}
    return finish_splits(sets, valid_fraction, test_fraction, seed)
