"""CIFAR-10 and CIFAR-100 as torchvision writes them (the "python version" archives), read without ``pickle.load``.

Layout (``root`` is the folder holding the dataset folder, or the dataset folder itself)::

    cifar-10-batches-py/data_batch_1 ... data_batch_5   train, 10,000 images each
    cifar-10-batches-py/test_batch                      test
    cifar-10-batches-py/batches.meta                    {b"label_names": [...]}
    cifar-100-python/train, test                        {b"fine_labels", b"coarse_labels", ...}
    cifar-100-python/meta                               {b"fine_label_names", b"coarse_label_names"}

Each file is a pickled dict (protocol 2, written by Python 2, so its str keys load as bytes) with
``b"data"``: uint8 [N, 3072], each row the red plane then green then blue (32x32 each, row-major), and
``b"labels"`` (CIFAR-10) or ``b"fine_labels"``/``b"coarse_labels"`` (CIFAR-100): lists of ints.

A pickle can call any importable function while it loads, so these files are read by
:class:`RestrictedUnpickler`, which admits only the globals such files hold (:data:`ALLOWED`) and refuses
anything else with a DataError naming the file and the global, before it is looked up or called.
Splits: ``train``, ``test``, ``valid`` (a seeded slice of train, ``valid_fraction``); ids
``<kind>-<file split>-<index in that split's files>`` (``cifar10-test-00042``).
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_common import finish_splits, ids_for
from pipeline.errors import DataError, ParamsError, one_line

try:  # numpy >= 2 moved the array reconstructor; pickles name either module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2 (``encode(str, "latin1")``), and nothing
    else: other codecs (zlib, base64, rot13...) have no place in these files."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 rebuilds bytes")
    return codecs.encode(text, "latin1")


#: (module, name) -> the object a CIFAR pickle may refer to. Dicts, lists, ints, str and Python 2 str
#: (loaded as bytes) are pickle opcodes and need no global; ``bytes`` and ``_codecs.encode`` are how
#: Python 3 writes bytes at protocol 2; the numpy entries rebuild an ndarray and its dtype.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy < 2 (the released files)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,  # Python 2's name, passed through unmapped to find_class
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` returns only the objects in :data:`ALLOWED`."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as the files' keys are b"data"...
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: refused to unpickle global {module}.{name} "
                            "(a CIFAR file holds only dicts, lists, bytes and numpy arrays)") from None


def load_pickle(path: Path) -> dict:
    """The dict in a CIFAR file, its keys as bytes; anything the restricted unpickler refuses is a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: missing")
    try:
        obj = RestrictedUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated (EOFError), not a pickle (UnpicklingError), bad array state...
        raise DataError(f"{path}: unreadable CIFAR pickle ({one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # a file re-pickled by Python 3 may have str keys; the released files have bytes keys
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def field(d: dict, key: bytes, path: Path):
    if key not in d:
        raise DataError(f"{path}: no {key.decode()!r} entry (has {sorted(k.decode('latin1') for k in d)})")
    return d[key]


def class_names(path: Path, key: bytes) -> list[str]:
    names = field(load_pickle(path), key, path)
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: {key.decode()!r} is not a non-empty list of names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_batches(paths: list[Path], label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 32, 32, 3] and labels int64 [N] of the batch files, in order."""
    images, labels = [], []
    for path in paths:
        d = load_pickle(path)
        data, y = field(d, b"data", path), field(d, label_key, path)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: 'data' must be uint8 [N, 3072], got {getattr(data, 'dtype', type(data).__name__)} "
                            f"{getattr(data, 'shape', '')}")
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (len(data),):
            raise DataError(f"{path}: {y.size} {label_key.decode()} for {len(data)} images")
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(f"{path}: label {int(y.max() if y.max() >= n_classes else y.min())} outside 0..{n_classes - 1}")
        # [N, 3072] -> [N, 3, 32, 32] (channel planes, each row-major) -> [N, 32, 32, 3] (HWC, as ImageSet holds)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def find_folder(root: Path, name: str) -> Path:
    for folder in (root / name, root):
        if folder.is_dir() and (folder.name == name or (folder / "test_batch").is_file() or (folder / "meta").is_file()):
            return folder
    raise DataError(f"{root}: no {name}/ folder")


def read_cifar(kind: str, root: Path, *, valid_fraction: float = 0.1, seed: int = 0,
               labels: str = "fine") -> dict[str, ImageSet]:
    """``kind`` cifar10 or cifar100; ``labels`` (cifar100 only) ``fine`` (100 classes) or ``coarse`` (20)."""
    if labels not in ("fine", "coarse"):
        raise ParamsError(f"read_real({kind}): labels must be 'fine' or 'coarse', got {labels!r}")
    if kind == "cifar10":
        if labels != "fine":
            raise ParamsError("read_real(cifar10): the labels option is for cifar100 (CIFAR-10 has one label set)")
        folder = find_folder(root, "cifar-10-batches-py")
        names = class_names(folder / "batches.meta", b"label_names")
        files = {"train": [folder / f"data_batch_{i}" for i in range(1, 6)], "test": [folder / "test_batch"]}
        label_key = b"labels"
    else:
        folder = find_folder(root, "cifar-100-python")
        names = class_names(folder / "meta", f"{labels}_label_names".encode())
        files = {"train": [folder / "train"], "test": [folder / "test"]}
        label_key = f"{labels}_labels".encode()
    out = {}
    for split, paths in files.items():
        images, y = read_batches(paths, label_key, len(names))
        out[split] = ImageSet(images, y, names, ids_for(kind, split, len(y)))
    return finish_splits(out, valid_fraction, 0.0, seed)
