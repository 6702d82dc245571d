"""Real handwriting, coloured per class: scikit-learn's 1,797 8x8 digits in the Colored-MNIST protocol.

``sklearn.datasets.load_digits`` is bundled with scikit-learn (no download): 1,797 digits of 16 grey levels
(0..16) written by 43 people. Each is upsampled bilinearly to a box of 20/28 of ``image_size`` centred in
the image (MNIST's layout: a 20x20 digit in 28x28, Colored MNIST's size by default) and painted on black:
pixel = rint(intensity x the image's RGB), intensity = upsampled grey level / 16. The mask is the stroke:
the pixels whose upsampled intensity is at least ``mask_threshold`` (default 0.5, half ink), so the faint
rims that upsampling blurs around a stroke are coloured but not in the mask.

Colour is the bias (LfF / DFA): class k's dominant colour is colour k of the vocabulary table (zero red,
one orange, ..., nine brown); a share ``rho`` of the training images is aligned, the others take one of the
other 9 colours uniformly; valid and test draw the colour independently of the class. Splits are stratified
per class (seeded); ``test_conflicting`` holds the test images whose colour is not their class's.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.vision.bias import conflicting, draw_bias
from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.raster import resize
from pipeline.data.vision.vocab import COLOUR_RGB, DIGIT_TEMPLATES, VOCAB, fill, synonym, values

SPLITS = ("train", "valid", "test")
BOX = 20 / 28  # the digit's box / the image side, as in MNIST


def load_grey() -> tuple[np.ndarray, np.ndarray]:
    """float32 [1797, 8, 8] intensities in [0, 1] and int64 [1797] labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def stratified_split(labels: np.ndarray, valid_fraction: float, test_fraction: float,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Indices per split (sorted), each class split in the same proportions."""
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_test, n_valid = int(round(test_fraction * len(idx))), int(round(valid_fraction * len(idx)))
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test:n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def make_split(grey: np.ndarray, labels: np.ndarray, source_idx: np.ndarray, split: str, cfg, rho, rng) -> ImageSet:
    """The 8x8 digits ``source_idx`` upsampled into MNIST's box and painted (:func:`paint`)."""
    box = int(round(cfg.image_size * BOX))
    lo = (cfg.image_size - box) // 2
    ink = np.zeros((len(source_idx), cfg.image_size, cfg.image_size), dtype=np.float32)  # [n, S, S]
    ink[:, lo:lo + box, lo:lo + box] = np.clip(resize(grey[source_idx], box, box), 0, 1)
    return paint(ink, labels[source_idx], source_idx, f"digits-{split}", cfg, rho, rng)


def paint(ink: np.ndarray, y: np.ndarray, source_idx: np.ndarray, prefix: str, cfg, rho, rng) -> ImageSet:
    """Digits coloured by the Colored-MNIST rule: ``ink`` float32 [n, S, S] in [0, 1] (the stroke intensity),
    ``y`` their classes; pixel = rint(ink x the image's RGB) on black. ``cfg`` gives ``colour_jitter`` and
    ``mask_threshold``; ids are ``<prefix>-<i>``. Also used for real MNIST (``pipeline.cdvg.data``)."""
    colours = values("colour")  # 10 colours: one dominant colour per digit class
    bias, aligned = draw_bias(y, len(colours), rho, rng)
    base = np.array([COLOUR_RGB[c] for c in colours])[bias]  # [n, 3]
    rgb = np.clip(base + rng.integers(-cfg.colour_jitter, cfg.colour_jitter + 1, base.shape), 0, 255)
    images = np.rint(ink[..., None] * rgb[:, None, None, :].astype(np.float32)).astype(np.uint8)  # [n, S, S, 3]
    masks = (ink >= np.float32(cfg.mask_threshold)).astype(np.uint8)
    names = values("digit")
    attributes = [{"digit": names[y[i]], "colour": colours[bias[i]], "rgb": rgb[i].tolist(),
                   "source_index": int(source_idx[i])} for i in range(len(y))]
    picks = rng.integers(0, 1 << 30, (len(y), 3)).tolist()
    captions = [[fill(DIGIT_TEMPLATES[p[0] % len(DIGIT_TEMPLATES)],
                      {"digit": synonym("digit", a["digit"], p[1]), "colour": synonym("colour", a["colour"], p[2])})]
                for a, p in zip(attributes, picks)]
    return ImageSet(images, y, names, [f"{prefix}-{i:04d}" for i in range(len(y))], masks=masks, bias=bias,
                    captions=captions, attributes=attributes, aligned=aligned.tolist(),
                    extra={"rho": rho, "class_attribute": "digit", "bias_attribute": "colour"})


def table(cfg) -> dict:
    """``attributes.json``: the vocabulary table, the digit and colour values, each class's dominant colour."""
    colours = values("colour")
    return {**VOCAB, "domains": {"digit": values("digit"), "colour": colours}, "class_attribute": "digit",
            "bias_attribute": "colour", "rho": cfg.rho, "mask_threshold": cfg.mask_threshold,
            "dominant_bias": {d: colours[k % len(colours)] for k, d in enumerate(values("digit"))}}


def make_digits(cfg, seed: int) -> dict[str, ImageSet]:
    """train (bias share ``cfg.rho``), valid and test (colour independent of the digit), test_conflicting."""
    grey, labels = load_grey()
    rng = lambda stream: np.random.default_rng([seed, 100, stream])  # noqa: E731 - streams apart from the shapes'
    parts = stratified_split(labels, cfg.valid_fraction, cfg.test_fraction, rng(0))
    out = {s: make_split(grey, labels, parts[s], s, cfg, cfg.rho if s == "train" else None, rng(1 + i))
           for i, s in enumerate(SPLITS)}
    out["test_conflicting"] = conflicting(out["test"])
    return out
