"""What every reader of a real dataset shares: split names, seeded splits, ids, option checks, image decoding.

Split names on disk are mapped to the three the pipeline uses: ``train``; ``valid`` (also ``val``,
``validation``, ``dev``); ``test``. Any other name is a :class:`DataError` naming where it was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.errors import DataError, ParamsError, one_line

SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid",
                 "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ImageSize = Union[None, int, Sequence[int]]


def split_name(name: str, where: str) -> str:
    """The pipeline's name of split ``name`` (``val`` -> ``valid``); ``where`` names the file or folder."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"{where}: unknown split name {name!r} (expected one of {', '.join(SPLIT_ALIASES)})")
    return SPLIT_ALIASES[key]


def check_fraction(value: float, name: str, kind: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ParamsError(f"read_real({kind}): {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_image_size(value: ImageSize, kind: str) -> Optional[tuple[int, int]]:
    """``image_size`` as (height, width): an int is a square side, a pair is (height, width); None keeps sizes."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ParamsError(f"read_real({kind}): image_size must be a positive int or [height, width], got {value!r}")
    return int(pair[0]), int(pair[1])


def seeded_parts(n: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices (sorted) of a seeded random partition of ``range(n)``: each named part gets
    ``round(fraction * n)`` items, ``train`` the rest. The same (n, fractions, seed) gives the same parts."""
    order = np.random.default_rng(seed).permutation(n)
    parts, start = {}, 0
    for name, fraction in fractions.items():
        count = int(round(fraction * n))
        parts[name] = np.sort(order[start:start + count])
        start += count
    parts["train"] = np.sort(order[start:])
    return parts


def finish_splits(sets: dict[str, ImageSet], valid_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, ImageSet]:
    """The splits in the order train, valid, test, empty ones left out. A set under ``all`` (a source with
    no splits) is drawn into all three; without ``valid``, a seeded ``valid_fraction`` of train becomes valid."""
    sets = dict(sets)
    if "all" in sets:
        everything = sets.pop("all")
        parts = seeded_parts(len(everything), {"valid": valid_fraction, "test": test_fraction}, seed)
        sets.update({s: everything.subset(parts[s]) for s in ("train", "valid", "test")})
    elif "valid" not in sets and "train" in sets:
        parts = seeded_parts(len(sets["train"]), {"valid": valid_fraction}, seed)
        train = sets.pop("train")
        sets.update(train=train.subset(parts["train"]), valid=train.subset(parts["valid"]))
    return {s: sets[s] for s in ("train", "valid", "test") if s in sets and len(sets[s])}


def ids_for(kind: str, split: str, n: int) -> list[str]:
    """``<kind>-<split>-<index>``, the index zero-padded to at least 5 digits (``cifar10-test-00042``)."""
    width = max(5, len(str(max(n - 1, 0))))
    return [f"{kind}-{split}-{i:0{width}d}" for i in range(n)]


def to_rgb_image(path: Path, size: Optional[tuple[int, int]]) -> np.ndarray:
    """One image file decoded by PIL as uint8 [H, W, 3] RGB, resized to ``size`` (height, width) when given.

    The EXIF orientation is applied first: cameras store JPEGs sideways and record the turn there."""
    from PIL import Image, ImageOps

    if not path.is_file():
        raise DataError(f"{path}: image file missing")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated or corrupt file fails here, not later
            img = ImageOps.exif_transpose(img).convert("RGB")
    except DataError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(f"{path}: unreadable image ({one_line(exc)})") from None
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)  # PIL sizes are (width, height)
    return np.asarray(img, dtype=np.uint8)


def load_images(paths: Sequence[Path], size: Optional[tuple[int, int]]) -> np.ndarray:
    """uint8 [N, H, W, 3] from image files. Without ``size`` every image must have the first one's size;
    another size is an error naming the file and both sizes (set ``image_size`` to resize them)."""
    out: Optional[np.ndarray] = None
    for i, path in enumerate(paths):
        img = to_rgb_image(Path(path), size)
        if out is None:
            out = np.empty((len(paths),) + img.shape, dtype=np.uint8)
        elif img.shape != out.shape[1:]:
            got, want = img.shape[:2], out.shape[1:3]
            raise DataError(f"{path}: image size {got[1]}x{got[0]} differs from {want[1]}x{want[0]} "
                            f"(width x height of {paths[0]}); set vision.real.image_size (the image_size option) to resize")
        out[i] = img
    return out if out is not None else np.zeros((0, 1, 1, 3), dtype=np.uint8)
