"""Procedurally rendered shapes: RGB images with exact foreground masks, attributes and captions.

Each image is one flat-coloured shape (8 kinds, see :data:`pipeline.data.vision.vocab.ATTRIBUTES`) of one of
``n_colours`` colours (RGB jittered per image), 3 sizes and 5 position words, randomly rotated and shifted,
over a plain, gradient or noise-texture background. No anti-aliasing: a pixel belongs to the shape when its
centre passes the shape's inside test, so the mask is exact and the shape's pixels all carry the image's
``rgb`` attribute. Geometry is stored in the attributes (centre and radius in 1/16 px, rotation in whole
degrees: exact in JSON), so :func:`masks_from_attributes` re-renders any image's mask bit for bit.

Rasterisation is vectorised: every shape's inside test is evaluated on the pixel grid of a batch of images
at once (about 20k 32x32 images in a few seconds on 2 cores).

Random streams are separate per split and purpose (scene, background, captions), so changing the captions
(or their number) leaves the images unchanged, and changing n_train leaves the test split unchanged.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from pipeline.data.vision.bias import conflicting, draw_bias
from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.raster import pixel_centres, resize
from pipeline.data.vision.vocab import COLOUR_RGB, FULL_TEMPLATES, VOCAB, PARTIAL_TEMPLATES, fill, synonym, values

ATTRS = ("shape", "colour", "size", "position", "background")  # the attributes an image has one value of
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2, "oracle": 3}  # oracle: the debiasing track's held-out split
SIZE_FRACTION = {"small": 0.14, "medium": 0.21, "large": 0.30}  # circumradius / image side
RADIUS_JITTER = 0.08  # radius x U(1 - j, 1 + j)
POSITION_ANCHOR = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73),
                   "centre": (0.5, 0.5)}  # (x, y) / side
POSITION_JITTER = 0.05  # anchor + U(-j, j) x side on each axis
QUANTUM = 16  # centres and radii are multiples of 1/16 px
BACKGROUND_MAX = 130  # every background channel is <= this; every colour has a channel >= 200
CHUNK = 2048  # images rendered at once (bounds the float32 grids to ~8 MB each at 32x32)

# ----------------------------------------------------------------------------- inside tests
# (u, v): pixel centre in the shape's frame, in units of its circumradius, v pointing up; all fit the unit disc


def _regular(n: int, apothem_angle: float) -> Callable:
    """Regular n-gon of circumradius 1: inside iff its projection on every edge normal is <= cos(pi/n)."""
    normals = apothem_angle + 2 * np.pi * np.arange(n) / n
    c, s, limit = np.cos(normals).astype(np.float32), np.sin(normals).astype(np.float32), np.float32(np.cos(np.pi / n))

    def inside(u, v):
        return np.all(u[..., None] * c + v[..., None] * s <= limit, axis=-1)

    return inside


def _star(points: int = 5, inner: float = 0.45) -> Callable:
    """Star with outer vertices at radius 1 (one pointing up) and inner ones at ``inner``."""
    sector = np.float32(2 * np.pi / points)
    bx, by = np.float32(inner * np.cos(np.pi / points)), np.float32(inner * np.sin(np.pi / points))

    def inside(u, v):
        m = np.mod(np.arctan2(u, v), sector)  # angle from the nearest outer vertex clockwise
        beta = np.minimum(m, sector - m)  # folded into [0, pi/points]: outer vertex A=(1, 0), inner B=(bx, by)
        rho = np.sqrt(u * u + v * v)
        px, py = rho * np.cos(beta), rho * np.sin(beta)
        return (bx - 1) * py - by * (px - 1) >= 0  # on the origin's side of the edge AB

    return inside


def _heart(u, v):
    x, y = u * np.float32(1.1), v * np.float32(1.1) + np.float32(0.12)
    q = x * x + y * y - 1
    return q * q * q - x * x * y * y * y <= 0


INSIDE: dict[str, Callable] = {
    "circle": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.72,
    "triangle": _regular(3, -np.pi / 2),  # vertex up, flat base
    "diamond": lambda u, v: np.abs(u) / np.float32(0.62) + np.abs(v) <= 1,  # a tall rhombus, not a rotated square
    "star": _star(),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.92)) | ((np.abs(u) <= 0.92) & (np.abs(v) <= 0.3)),
    "hexagon": _regular(6, 0.0),  # vertices up and down
    "heart": _heart,
}
SHAPES = values("shape")
assert list(INSIDE) == SHAPES, "one inside test per shape of the vocabulary table, in its order"

# cos/sin of whole degrees by lookup, so a single image and a batch get the very same float32 values
_RAD = np.deg2rad(np.arange(360))
COS, SIN = np.cos(_RAD).astype(np.float32), np.sin(_RAD).astype(np.float32)


def render_masks(shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, rotation: np.ndarray,
                 size: int) -> np.ndarray:
    """uint8 [N, S, S] masks (1 = inside) of shapes given per image: shape index, centre (px), circumradius (px),
    rotation (whole degrees, counter-clockwise)."""
    x, y = pixel_centres(size)  # [1, S, S] each
    out = np.zeros((len(shape), size, size), dtype=np.uint8)
    for k, name in enumerate(SHAPES):
        idx = np.flatnonzero(shape == k)
        if len(idx) == 0:
            continue
        col = lambda a: np.asarray(a, dtype=np.float32)[idx, None, None]  # noqa: E731 - [B, 1, 1]
        r = col(radius)
        dx, dy = (x - col(cx)) / r, (col(cy) - y) / r  # [B, S, S]; dy points up
        c, s = COS[rotation[idx] % 360][:, None, None], SIN[rotation[idx] % 360][:, None, None]
        u, v = dx * c + dy * s, dy * c - dx * s  # rotate by -rotation into the shape's frame
        out[idx] = INSIDE[name](u, v)
    return out


def masks_from_attributes(attributes: list[dict], size: int) -> np.ndarray:
    """Re-render the masks of images from their stored attributes (uint8 [N, S, S])."""
    get = lambda key, dt: np.array([a[key] for a in attributes], dtype=dt)  # noqa: E731
    shape = np.array([SHAPES.index(a["shape"]) for a in attributes], dtype=np.int64)
    return render_masks(shape, get("cx", np.float64), get("cy", np.float64), get("radius", np.float64),
                        get("rotation", np.int64), size)


def render_backgrounds(kind: np.ndarray, kinds: list[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, S, S, 3] backgrounds, each channel in [0, BACKGROUND_MAX]: ``kinds[kind[i]]`` is plain (one
    dark colour), gradient (two dark colours along a random direction) or noise (smooth random blobs at 1/8 of
    the resolution, plus pixel noise)."""
    n = len(kind)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    x, y = pixel_centres(size)
    for k, name in enumerate(kinds):
        idx = np.flatnonzero(kind == k)
        b = len(idx)
        if b == 0:
            continue
        if name == "plain":
            out[idx] = rng.integers(0, 111, (b, 1, 1, 3))
        elif name == "gradient":
            c0, c1 = rng.integers(0, BACKGROUND_MAX + 1, (2, b, 1, 1, 3)).astype(np.float32)
            phi = rng.integers(0, 360, b)
            t = ((x - size / 2) * COS[phi][:, None, None] + (y - size / 2) * SIN[phi][:, None, None]) / size + 0.5
            t = np.clip(t, 0, 1)[..., None]  # [B, S, S, 1]
            out[idx] = np.rint(c0 + (c1 - c0) * t).astype(np.uint8)
        else:
            base = rng.integers(20, 91, (b, 1, 1, 3)).astype(np.float32)
            coarse = rng.integers(-35, 36, (b, size // 8 + 1, size // 8 + 1, 3))
            fine = rng.integers(-12, 13, (b, size, size, 3))
            out[idx] = np.clip(np.rint(base + resize(coarse, size, size)) + fine, 0, BACKGROUND_MAX).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- scenes and captions


def domains(cfg) -> dict[str, list[str]]:
    """The values each attribute takes in this corpus (index = the value's id)."""
    return {"shape": SHAPES, "colour": values("colour")[: cfg.n_colours], "size": values("size"),
            "position": values("position"), "background": list(cfg.backgrounds)}


def table(cfg) -> dict:
    """``attributes.json``: the vocabulary table, this corpus's values and its class and bias attributes."""
    dom = domains(cfg)
    ca, ba = cfg.class_attribute, cfg.bias_attribute
    return {**VOCAB, "domains": dom, "class_attribute": ca, "bias_attribute": ba, "rho": cfg.rho,
            "dominant_bias": {c: dom[ba][k % len(dom[ba])] for k, c in enumerate(dom[ca])}}


def sample_scenes(n: int, cfg, dom: dict, rho: Optional[float], size: int, rng: np.random.Generator) -> dict:
    """Attribute indices, labels, bias, aligned and geometry of ``n`` images (arrays of length n)."""
    ca, ba = cfg.class_attribute, cfg.bias_attribute
    idx = {a: rng.integers(0, len(dom[a]), n) for a in ATTRS}
    idx[ca] = rng.permutation(np.arange(n) % len(dom[ca]))  # balanced classes
    idx[ba], aligned = draw_bias(idx[ca], len(dom[ba]), rho, rng)
    frac = np.array([SIZE_FRACTION[s] for s in dom["size"]])[idx["size"]]
    radius = frac * size * rng.uniform(1 - RADIUS_JITTER, 1 + RADIUS_JITTER, n)
    anchor = np.array([POSITION_ANCHOR[p] for p in dom["position"]])[idx["position"]] * size  # [n, 2]
    centre = np.clip(anchor + rng.uniform(-POSITION_JITTER, POSITION_JITTER, (n, 2)) * size,
                     radius[:, None], size - radius[:, None])  # keep the whole shape in the image
    base = np.array([COLOUR_RGB[c] for c in dom["colour"]])[idx["colour"]]  # [n, 3]
    rgb = np.clip(base + rng.integers(-cfg.colour_jitter, cfg.colour_jitter + 1, (n, 3)), 0, 255)
    return {"idx": idx, "labels": idx[ca], "bias": idx[ba], "aligned": aligned,
            "radius": np.round(radius * QUANTUM) / QUANTUM, "cx": np.round(centre[:, 0] * QUANTUM) / QUANTUM,
            "cy": np.round(centre[:, 1] * QUANTUM) / QUANTUM, "rgb": rgb.astype(np.uint8),
            "rotation": rng.integers(-cfg.max_rotation, cfg.max_rotation + 1, n)}


def make_captions(attributes: list[dict], per_image: int, partial_share: float,
                  rng: np.random.Generator) -> list[list[str]]:
    """``per_image`` captions per image: a share ``partial_share`` from the partial templates (some attributes),
    the rest from the full ones; every slot takes a random synonym of the image's value."""
    n = len(attributes)
    partial = (rng.random((n, per_image)) < partial_share).tolist()
    picks = rng.integers(0, 1 << 30, (n, per_image, 1 + len(ATTRS))).tolist()  # template, then one per attribute
    out = []
    for a, part, pick in zip(attributes, partial, picks):
        caps = []
        for is_partial, p in zip(part, pick):
            pool = PARTIAL_TEMPLATES if is_partial else FULL_TEMPLATES
            words = {attr: synonym(attr, a[attr], p[1 + j]) for j, attr in enumerate(ATTRS)}
            words["position_name"] = a["position"]
            caps.append(fill(pool[p[0] % len(pool)], words))
        out.append(caps)
    return out


def make_split(cfg, split: str, n: int, seed: int, size: int, rho: Optional[float], progress: bool = False) -> ImageSet:
    """One split of ``n`` images (``rho`` None: the bias attribute independent of the class)."""
    from tqdm import tqdm

    rng = lambda stream: np.random.default_rng([seed, SPLIT_CODE[split], stream])  # noqa: E731
    dom = domains(cfg)
    sc = sample_scenes(n, cfg, dom, rho, size, rng(0))
    rng_bg = rng(1)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for start in tqdm(range(0, n, CHUNK), desc=f"shapes {split}", unit="chunk", disable=not progress, leave=False):
        sl = slice(start, min(start + CHUNK, n))
        masks[sl] = render_masks(sc["idx"]["shape"][sl], sc["cx"][sl], sc["cy"][sl], sc["radius"][sl],
                                 sc["rotation"][sl], size)
        bg = render_backgrounds(sc["idx"]["background"][sl], dom["background"], size, rng_bg)
        images[sl] = np.where(masks[sl, ..., None] == 1, sc["rgb"][sl, None, None, :], bg)  # [B, S, S, 3]
    attributes = [
        {**{a: dom[a][sc["idx"][a][i]] for a in ATTRS}, "rotation": int(sc["rotation"][i]), "cx": float(sc["cx"][i]),
         "cy": float(sc["cy"][i]), "radius": float(sc["radius"][i]), "rgb": sc["rgb"][i].tolist()}
        for i in range(n)
    ]
    captions = make_captions(attributes, cfg.captions_per_image, cfg.partial_caption_share, rng(2))
    ids = [f"shapes-{split}-{i:06d}" for i in range(n)]
    return ImageSet(images, sc["labels"].astype(np.int64), dom[cfg.class_attribute], ids, masks=masks,
                    bias=sc["bias"].astype(np.int64), captions=captions, attributes=attributes, aligned=sc["aligned"].tolist(),
                    extra={"rho": rho, "class_attribute": cfg.class_attribute, "bias_attribute": cfg.bias_attribute})


def make_shapes(cfg, seed: int, size: int, progress: bool = False) -> dict[str, ImageSet]:
    """train (bias-controlled by ``cfg.rho``), valid and test (unbiased) and test_conflicting."""
    out = {"train": make_split(cfg, "train", cfg.n_train, seed, size, cfg.rho, progress),
           "valid": make_split(cfg, "valid", cfg.n_valid, seed, size, None, progress),
           "test": make_split(cfg, "test", cfg.n_test, seed, size, None, progress)}
    out["test_conflicting"] = conflicting(out["test"])
    return out
