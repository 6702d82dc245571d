"""The biased sets of the debiasing track, built with the foundation's readers, and what a training run may read.

Per ratio rho, one folder ``<root>/rho<rho>`` in the imageset format (:mod:`pipeline.data.vision.imageset`)::

    train              class-balanced; round(rho x n_k) images of class k have its dominant colour
    valid              the training rho (``cdvg.data.valid: biased``, default) or colour independent of the class
    test               colour independent of the class (unbiased); the same images for every rho
    test_conflicting   the test images whose colour is not their class's dominant one
    test_aligned       the test images whose colour is their class's dominant one

and ``<root>/oracle`` (split ``oracle``): unbiased images held out from every other split, on which only the
oracles train. Sources:

* ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits, upsampled into MNIST's 20/28 box and coloured
  (:func:`pipeline.data.vision.digits.paint`); split per class by ``*_fraction``.
* ``mnist``: real MNIST from ``root`` (:func:`pipeline.data.vision.readers_idx.read_mnist`); its train file is
  split per class into train / valid / oracle, its t10k file is test; coloured the same way: the standard
  Colored MNIST of LfF / DFA (foreground colour, black background).
* ``shapes``: rendered shapes (:mod:`pipeline.data.vision.shapes`), class = shape, bias = colour (8 colours).

The same random stream colours a split at every rho, so a rho sweep changes the ratio and nothing else.

Training reads :func:`read_training`: the images and class labels of train and valid, nothing else (the bias
labels and the aligned flags stay on disk; :attr:`TrainingData.keys_read` says what was read).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.cdvg.params import CdvgData, rho_tag
from pipeline.core.arrays import read_arrays as read_chosen
from pipeline.data.vision.imageset import ImageSet
from pipeline.errors import DataError, one_line

TEST_SPLITS = ("test", "test_conflicting", "test_aligned")
SPLITS = ("train", "valid", *TEST_SPLITS)
ORACLE = "oracle"
#: what a training run reads of a split file: never ``bias`` (nor the jsonl's attributes and aligned flags)
TRAINING_KEYS = ("images", "labels")


def stratified(labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sorted indices per named split, each class cut in the given fractions; the rest goes to ``train``."""
    parts: dict[str, list] = {s: [] for s in (*fractions, "train")}
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        start = 0
        for name, f in fractions.items():
            n = int(round(f * len(idx)))
            parts[name].append(idx[start:start + n])
            start += n
        parts["train"].append(idx[start:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _by_alignment(test: ImageSet) -> dict[str, ImageSet]:
    aligned = np.asarray(test.aligned, dtype=bool)
    return {"test": test, "test_conflicting": test.subset(np.flatnonzero(~aligned)),
            "test_aligned": test.subset(np.flatnonzero(aligned))}


def _painted(cfg: CdvgData, ink_of, labels: np.ndarray, parts: dict[str, np.ndarray], prefix: str):
    """(make(split, rho) -> ImageSet) for the digit sources: ``ink_of(idx)`` float32 [n, S, S] in [0, 1]."""
    from pipeline.data.vision.digits import paint

    style = replace_style(cfg)
    streams = {"train": 1, "valid": 2, "test": 3, ORACLE: 4}

    def make(split: str, rho):
        idx = parts[split]
        rng = np.random.default_rng([cfg.seed, 300, streams[split]])
        return paint(ink_of(idx), labels[idx], idx, f"{prefix}-{split}", style, rho, rng)

    return make


def replace_style(cfg: CdvgData):
    """The digits painter's settings from ``cdvg.data`` (jitter; the mask threshold of the foundation)."""
    from pipeline.data.params import DigitsConfig

    return replace(DigitsConfig(), image_size=cfg.image_size, colour_jitter=cfg.colour_jitter, rho=None)


def _digits(cfg: CdvgData):
    from pipeline.data.vision.digits import BOX, load_grey
    from pipeline.data.vision.raster import resize

    grey, labels = load_grey()
    parts = stratified(labels, {"test": cfg.test_fraction, "valid": cfg.valid_fraction, ORACLE: cfg.oracle_fraction},
                       np.random.default_rng([cfg.seed, 300, 0]))
    box = int(round(cfg.image_size * BOX))
    lo = (cfg.image_size - box) // 2

    def ink_of(idx):
        ink = np.zeros((len(idx), cfg.image_size, cfg.image_size), dtype=np.float32)  # [n, S, S]
        ink[:, lo:lo + box, lo:lo + box] = np.clip(resize(grey[idx], box, box), 0, 1)
        return ink

    return _painted(cfg, ink_of, labels, parts, "digits")


def _mnist(cfg: CdvgData):
    from pipeline.data.vision.raster import resize
    from pipeline.data.vision.readers_idx import find_raw, read_file_split

    folder = find_raw(Path(cfg.root))
    train_grey, train_labels = read_file_split(folder, "train")  # uint8 [N, 28, 28]
    test_grey, test_labels = read_file_split(folder, "t10k")
    grey = np.concatenate([train_grey, test_grey])
    labels = np.concatenate([train_labels, test_labels])
    n = len(train_labels)
    parts = stratified(train_labels, {"valid": cfg.valid_fraction, ORACLE: cfg.oracle_fraction},
                       np.random.default_rng([cfg.seed, 300, 0]))
    parts["test"] = np.arange(n, n + len(test_labels))

    def ink_of(idx):
        ink = grey[idx].astype(np.float32) / 255.0  # [n, 28, 28]
        return ink if cfg.image_size == 28 else np.clip(resize(ink, cfg.image_size, cfg.image_size), 0, 1)

    return _painted(cfg, ink_of, labels, parts, "mnist")


def _shapes(cfg: CdvgData, progress: bool):
    from pipeline.data.params import ShapesConfig
    from pipeline.data.vision import shapes

    scfg = ShapesConfig(colour_jitter=cfg.colour_jitter, captions_per_image=1)
    counts = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test, ORACLE: cfg.n_oracle}

    def make(split: str, rho):
        return shapes.make_split(scfg, split, counts[split], cfg.seed, cfg.image_size, rho, progress)

    return make


def build_sets(cfg: CdvgData, progress: bool = False) -> tuple[dict[str, dict[str, ImageSet]], ImageSet]:
    """({rho_tag: {split: ImageSet}}, the oracle split) as the module docstring describes."""
    make = {"digits": lambda: _digits(cfg), "mnist": lambda: _mnist(cfg),
            "shapes": lambda: _shapes(cfg, progress)}[cfg.source]()
    test = _by_alignment(make("test", None))
    unbiased_valid = make("valid", None) if cfg.valid == "unbiased" else None
    sets = {}
    for rho in cfg.rhos:
        valid = unbiased_valid if unbiased_valid is not None else make("valid", rho)
        sets[rho_tag(rho)] = {"train": make("train", rho), "valid": valid, **test}
    return sets, make(ORACLE, None)


def measured_rho(data: ImageSet) -> float:
    """The share of bias-aligned images of a split."""
    return float(np.mean(np.asarray(data.aligned, dtype=bool))) if len(data) else float("nan")


# ----------------------------------------------------------------------------- what training reads


@dataclass
class TrainingData:
    """The training run's whole view of the data: pixels and class labels of train and valid. Bias labels are
    never loaded; ``keys_read`` lists every array read from the split files (the tests assert on it)."""

    train_images: torch.Tensor  # uint8 [N, S, S, 3]
    train_labels: torch.Tensor  # int64 [N]
    valid_images: torch.Tensor
    valid_labels: torch.Tensor
    classes: list[str]  # class names, index = label (classes.json)
    keys_read: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_arrays(path: Path, keys: tuple[str, ...], stage: str = "cdvg-data") -> dict[str, torch.Tensor]:
    """Only ``keys`` of a safetensors file (one DataError line when missing or unreadable, naming ``stage``,
    the stage that writes it)."""
    return read_chosen(path, keys, f"run the {stage} stage (dvc repro {stage})")


def read_json(path: Path) -> object:
    """A JSON file cdvg-data wrote (one DataError line when missing or unreadable)."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({one_line(exc)}); run the cdvg-data stage (dvc repro cdvg-data)") from None


def read_meta(sets: Path) -> dict:
    """cdvg-data's ``meta.json``: source, classes, colours, each class's dominant colour, per-split counts."""
    return read_json(Path(sets) / "meta.json")


def read_training(folder: Path) -> TrainingData:
    """The pixels and class labels of ``folder``'s train and valid splits (nothing else)."""
    folder = Path(folder)
    train = read_arrays(folder / "train.safetensors", TRAINING_KEYS)
    valid = read_arrays(folder / "valid.safetensors", TRAINING_KEYS)
    classes = read_json(folder / "classes.json")
    k = len(classes)
    for name, split in (("train", train), ("valid", valid)):
        images, labels = split["images"], split["labels"]
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3 or len(labels) != len(images):
            raise DataError(f"{folder / name}.safetensors: images must be uint8 [N, S, S, 3] with N labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise DataError(f"{folder / name}.safetensors: labels outside 0..{k - 1}")
    return TrainingData(train["images"], train["labels"], valid["images"], valid["labels"], classes,
                        tuple(f"{s}.{key}" for s in ("train", "valid") for key in TRAINING_KEYS))


def read_test(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The scoring sets (after training): images and labels of test, test_conflicting and test_aligned."""
    return {s: read_arrays(Path(folder) / f"{s}.safetensors", TRAINING_KEYS) for s in TEST_SPLITS}
