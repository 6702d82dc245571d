"""Bias control shared by the embedded sources (the Colored-MNIST protocol of LfF / DFA).

Class ``k``'s dominant bias value is ``k % n_bias`` (with as many bias values as classes: class k -> value k).
A bias-aligned image has its class's dominant value; a bias-conflicting one any other value, uniformly.
``rho`` is the share of aligned images in a biased split (training); ``None`` draws the bias value uniformly
and independently of the class (valid, test; and training when the corpus is unbiased), so that about
``1 / n_bias`` of those images are aligned by chance.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from pipeline.data.vision.imageset import ImageSet


def dominant(labels: np.ndarray, n_bias: int) -> np.ndarray:
    """The dominant bias value of each label."""
    return np.asarray(labels, dtype=np.int64) % n_bias


def draw_bias(labels: np.ndarray, n_bias: int, rho: Optional[float],
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bias values int64 [N] and aligned bool [N] for ``labels``.

    With ``rho``, exactly ``round(rho * n_k)`` images of each class k are aligned (which ones is random), so
    every class gets its share of conflicting images even when rho is close to 1 and the split is small.
    """
    labels = np.asarray(labels, dtype=np.int64)
    dom = dominant(labels, n_bias)
    if rho is None:
        bias = rng.integers(0, n_bias, size=len(labels))
        return bias, bias == dom
    aligned = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        aligned[rng.permutation(idx)[: int(round(rho * len(idx)))]] = True
    # a conflicting image takes one of the n_bias - 1 other values, uniformly
    other = (dom + 1 + rng.integers(0, n_bias - 1, size=len(labels))) % n_bias
    return np.where(aligned, dom, other), aligned


def conflicting(data: ImageSet) -> ImageSet:
    """The bias-conflicting images of ``data`` (same ids: they are the same images)."""
    return data.subset([i for i, a in enumerate(data.aligned) if not a])

