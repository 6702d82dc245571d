"""Small exact raster helpers: pixel-centre grids and separable linear resizing (plain numpy, deterministic)."""

from __future__ import annotations

import numpy as np


def pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x [1, S, S] and y [1, S, S] (float32): the centre of pixel (row i, column j) is (j + 0.5, i + 0.5)."""
    c = np.arange(size, dtype=np.float32) + np.float32(0.5)
    return c[None, None, :].repeat(size, 1), c[None, :, None].repeat(size, 2)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float32 [n_out, n_in]: linear interpolation between input pixel centres (half-pixel aligned, edges
    clamped), the weights of bilinear resizing along one axis; each row sums to 1."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5  # output centre in input pixel units
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    w = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    m[np.arange(n_out), lo] += 1 - w
    m[np.arange(n_out), hi] += w
    return m.astype(np.float32)


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of float images [N, h, w] or [N, h, w, C] to [N, height, width(, C)]."""
    rows = resize_matrix(images.shape[1], height)  # [height, h]
    cols = resize_matrix(images.shape[2], width)  # [width, w]
    x = images.astype(np.float32)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[..., None]  # [N, h, w, 1]
    x = np.einsum("ah,nhwc->nawc", rows, x)  # [N, height, w, C]: rows first, then columns (two small products)
    x = np.einsum("nawc,bw->nabc", x, cols)  # [N, height, width, C]
    return x[..., 0] if squeeze else x
