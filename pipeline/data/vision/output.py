"""One prepared source folder: its splits (imageset format), the vocabulary table, a sample grid, its stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data.vision.imageset import ImageSet, write_split

GRID_PER_CLASS = 6  # images (and as many masks) per class in grid.png
GRID_MAX_CLASSES = 20  # rows: the first classes only, for datasets with many (CIFAR-100)
GRID_TILE = 64  # images are enlarged (nearest neighbour) to at least this many pixels


def write_source(folder: Path, splits: dict[str, ImageSet], attributes: dict) -> dict:
    """Write every split, ``attributes.json`` and ``grid.png`` into ``folder``; return per-split counts."""
    folder = Path(folder)
    for name, data in splits.items():
        write_split(folder, name, data)
    (folder / "attributes.json").write_text(json.dumps(attributes, indent=1, sort_keys=True) + "\n")
    write_grid(folder / "grid.png", splits["train"] if "train" in splits else next(iter(splits.values())))
    return {name: split_stats(data) for name, data in splits.items()}


def split_stats(data: ImageSet) -> dict:
    out = {"images": len(data), "per_class": np.bincount(data.labels, minlength=len(data.class_names)).tolist()}
    if data.aligned is not None and len(data) and all(a is not None for a in data.aligned):
        out["aligned_share"] = round(float(np.mean(data.aligned)), 4)
    if data.captions is not None:
        out["captions"] = sum(len(c) for c in data.captions)
    return out


def grid_image(data: ImageSet) -> np.ndarray:
    """uint8 [H, W, 3]: one row per class, its first images, then their masks (white on black) if known."""
    n, size = GRID_PER_CLASS, data.images.shape[1]
    scale = max(1, -(-GRID_TILE // size))  # ceil
    tile = size * scale + 2  # 1 px gap each side
    classes = list(range(min(len(data.class_names), GRID_MAX_CLASSES)))
    cols = n * (2 if data.masks is not None else 1)
    canvas = np.full((len(classes) * tile, cols * tile, 3), 128, dtype=np.uint8)
    for row, k in enumerate(classes):
        idx = np.flatnonzero(data.labels == k)[:n]
        tiles = [data.images[i] for i in idx]
        if data.masks is not None:
            tiles += [np.repeat(data.masks[i][..., None] * 255, 3, axis=-1) for i in idx]
            tiles = tiles[: len(idx)] + [None] * (n - len(idx)) + tiles[len(idx):]  # masks start at column n
        for col, t in enumerate(tiles):
            if t is not None:
                big = t.repeat(scale, 0).repeat(scale, 1)  # [S*scale, S*scale, 3]
                canvas[row * tile + 1: row * tile + 1 + size * scale, col * tile + 1: col * tile + 1 + size * scale] = big
    return canvas


def write_grid(path: Path, data: ImageSet) -> None:
    from PIL import Image

    Image.fromarray(grid_image(data)).save(path, format="PNG")
