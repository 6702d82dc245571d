"""MNIST as torchvision writes it: big-endian IDX files, plain or gzipped.

Layout (``root`` is the folder holding ``MNIST/``, or ``MNIST/``, or ``MNIST/raw`` itself)::

    MNIST/raw/train-images-idx3-ubyte   (or .gz)   60,000 images
    MNIST/raw/train-labels-idx1-ubyte   (or .gz)
    MNIST/raw/t10k-images-idx3-ubyte    (or .gz)   10,000 images (the test split)
    MNIST/raw/t10k-labels-idx1-ubyte    (or .gz)

An IDX file is a 4-byte magic ``00 00 08 <ndim>`` (0x08: unsigned bytes), ``ndim`` big-endian uint32
dimensions, then the uint8 data in C order: images [N, 28, 28], labels [N]. The file size must be exactly
the header plus the product of the dimensions. Greyscale is repeated into RGB. Splits: ``train``, ``test``
and ``valid``, a seeded slice of train (``valid_fraction``). Classes ``"0"`` ... ``"9"``; ids
``mnist-<file split>-<index in that file>`` (``mnist-train-00042`` also for an image moved to valid).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_common import finish_splits, ids_for
from pipeline.errors import DataError, one_line

FILES = {"train": "train", "test": "t10k"}  # split -> file prefix
MAGIC = {3: 0x00000803, 1: 0x00000801}  # ndim -> magic (uint8 data)


def find_raw(root: Path) -> Path:
    """The folder holding the IDX files: ``root/MNIST/raw``, ``root/raw`` or ``root``."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        if any((folder / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")):
            return folder
    raise DataError(f"{root}: no MNIST files (looked for MNIST/raw/train-images-idx3-ubyte[.gz], "
                    "raw/..., and the folder itself)")


def idx_path(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):  # the plain file first: torchvision keeps both after extracting
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / stem}: missing (nor {stem}.gz)")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with ``ndim`` dimensions; a bad magic, size or gzip stream is a DataError."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut gzip stream is an EOFError
        raise DataError(f"{path}: unreadable ({one_line(exc)})") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, shorter than its {header}-byte header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != MAGIC[ndim]:
        raise DataError(f"{path}: not an IDX file of {ndim}-d uint8 data (magic 0x{magic:08x}, "
                        f"expected 0x{MAGIC[ndim]:08x})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated IDX file" if len(raw) < expected else "IDX file with trailing bytes"
        raise DataError(f"{path}: {problem}: dims {dims} need {expected} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_file_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = idx_path(folder, f"{prefix}-images-idx3-ubyte"), idx_path(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return images, labels.astype(np.int64)


def read_mnist(root: Path, *, valid_fraction: float = 0.1, seed: int = 0) -> dict[str, ImageSet]:
    folder = find_raw(root)
    classes = [str(d) for d in range(10)]
    out = {}
    for split, prefix in FILES.items():
        grey, labels = read_file_split(folder, prefix)  # [N, 28, 28]
        rgb = np.repeat(grey[..., None], 3, axis=-1)  # [N, 28, 28, 3]: the same grey in every channel
        out[split] = ImageSet(rgb, labels, classes, ids_for("mnist", split, len(labels)))
    return finish_splits(out, valid_fraction, 0.0, seed)
