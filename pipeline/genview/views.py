"""GenView's generated views, made once per training image (the ``genview-views`` stage's logic).

For each of the first ``genview.data.n_train`` training images of the corpus:

    * the frozen image tower's token maps (EfficientNet-Lite0 ``forward_features`` at ``views.tower_size``: 4x4
      tokens of 1280 channels at 128 px), no grad;
    * the foreground PCA (:class:`ForegroundPCA`) fitted ONCE on all real training images' tokens: the token mean
      and the C x C scatter accumulated in float64 over chunks, the top eigenvector with the sign rule of
      :func:`pipeline.losses.genview.foreground_ratio`, and the threshold that makes ``views.share`` of all
      tokens foreground. On one chunk it is :func:`foreground_ratio` exactly; the same fitted (mean, direction,
      threshold) is then applied to any image's tokens (the real images and their generated views);
    * the image's foreground ratio, its noise bin (:func:`pipeline.losses.genview.noise_bin`) and strength
      (level / 1000);
    * two views by SDEdit conditioned on the null class (SSL sees no labels), ``views.steps`` DDIM steps:
      ``fixed`` at ``views.fixed_strength``, ``adaptive`` at the image's bin strength. Both views of an image
      start from the SAME noise, drawn for that image alone from ``(views.seed, row)``, so the noise does not
      depend on ``batch_size`` (the UNet's float arithmetic may still differ in the last bits across batch
      sizes: oneDNN picks kernels by shape);
    * the soft foreground maps (:func:`soft_foreground` of the shifted projection) of the real image and of its
      adaptive view, and both token maps reduced to the top ``views.components`` principal components of the
      same scatter (float16), which is what the quality-driven weights pool.

The images are at the generator's size; a corpus of another size is resized (bilinear, antialiased:
:func:`pipeline.diffusion.train.to_unit`) first, and the real images' tokens are those of the resized images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from pipeline.diffusion.train import to_uint8, to_unit
from pipeline.losses.genview import noise_bin, soft_foreground

#: float64 bytes per chunk of the PCA's passes over the stored tokens
CHUNK_BYTES = 1 << 28


def as_tokens(features: torch.Tensor) -> torch.Tensor:
    """Token maps ``[B, C, h, w]`` -> tokens ``[B, h*w, C]`` (row-major over the grid)."""
    return features.flatten(2).transpose(1, 2)


@torch.no_grad()
def token_maps(tower, images: np.ndarray, batch_size: int, progress: bool = False,
               desc: str = "tower tokens") -> tuple[torch.Tensor, tuple[int, int]]:
    """The frozen tower's tokens of uint8 ``images`` [N, H, W, 3] in batches: float32 ``[N, h*w, C]`` on the CPU,
    and the grid ``(h, w)``."""
    from tqdm import tqdm

    out, grid = None, None
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress):
        f = tower.features(images[start : start + batch_size]).float().cpu()
        if out is None:
            grid = (f.shape[2], f.shape[3])
            out = torch.empty(len(images), grid[0] * grid[1], f.shape[1])
        out[start : start + len(f)] = as_tokens(f)
    if out is None:
        raise ValueError("token_maps: no images")
    return out, grid


def _orient(vectors: torch.Tensor) -> torch.Tensor:
    """Each column's largest-magnitude entry made positive (the first such entry on ties)."""
    idx = torch.argmax(vectors.abs(), dim=0)
    sign = torch.where(vectors[idx, torch.arange(vectors.shape[1])] < 0, -1.0, 1.0).to(vectors.dtype)
    return vectors * sign


@dataclass
class ForegroundPCA:
    """A one-component foreground PCA fitted on a large set of tokens in chunks, applied to any tokens.

    ``mean`` [C] and ``vectors`` [C, C] (the scatter's eigenvectors, columns in decreasing eigenvalue order,
    each oriented so its largest-magnitude entry is positive; the first then flipped if the third moment of the
    fitted projections is negative), ``values`` the eigenvalues (decreasing), ``threshold`` on the projection
    (the midpoint of the k-th and (k+1)-th largest fitted projections, k = round(share * n) clamped to
    [1, n - 1]). All float64."""

    mean: torch.Tensor
    vectors: torch.Tensor
    values: torch.Tensor
    threshold: float
    share: float
    n_tokens: int
    extra: dict = field(default_factory=dict)

    @property
    def direction(self) -> torch.Tensor:
        return self.vectors[:, 0]

    @property
    def explained(self) -> float:
        """The first component's share of the total variance."""
        total = float(self.values.clamp(min=0).sum())
        return float(self.values[0]) / total if total > 0 else 0.0

    @staticmethod
    def chunk_rows(tokens: torch.Tensor, chunk: Optional[int] = None) -> int:
        per_row = tokens.shape[1] * tokens.shape[2] * 8
        return max(1, chunk if chunk is not None else CHUNK_BYTES // per_row)

    @classmethod
    @torch.no_grad()
    def fit(cls, tokens: torch.Tensor, share: float = 0.4, chunk: Optional[int] = None) -> "ForegroundPCA":
        """Fit on ``tokens`` [N, T, C] (any float dtype), ``chunk`` images (rows of N) at a time in float64:
        pass 1 the mean, pass 2 the centred scatter, eigh, pass 3 the projections (kept: N * T float64) for the
        sign's third moment and the threshold. ``chunk >= N`` computes exactly what
        :func:`pipeline.losses.genview.foreground_ratio` computes on the whole batch."""
        if tokens.dim() != 3 or tokens.shape[0] * tokens.shape[1] < 2:
            raise ValueError(f"ForegroundPCA.fit: tokens must be [N, T, C] with N * T >= 2, got {tuple(tokens.shape)}")
        if not 0 < share < 1:
            raise ValueError(f"ForegroundPCA.fit: share must be in (0, 1), got {share!r}")
        rows = cls.chunk_rows(tokens, chunk)
        channels = tokens.shape[2]
        n = tokens.shape[0] * tokens.shape[1]

        def chunks():
            for start in range(0, tokens.shape[0], rows):
                x = tokens[start : start + rows].detach().to(torch.float64).reshape(-1, channels)
                if not bool(torch.isfinite(x).all()):
                    raise ValueError("ForegroundPCA.fit: tokens must hold finite values")
                yield x

        total = torch.zeros(channels, dtype=torch.float64)
        for x in chunks():
            total += x.sum(dim=0)
        mean = total / n
        scatter = torch.zeros(channels, channels, dtype=torch.float64)
        for x in chunks():
            xc = x - mean
            scatter += xc.T @ xc
        values, vectors = torch.linalg.eigh(scatter)  # ascending
        values, vectors = values.flip(0), _orient(vectors.flip(1))
        p = torch.cat([(x - mean) @ vectors[:, 0] for x in chunks()])
        if bool((p**3).mean() < 0):
            p = -p
            vectors[:, 0] = -vectors[:, 0]
        k = min(max(int(round(share * n)), 1), n - 1)
        top = torch.sort(p, descending=True).values
        threshold = 0.5 * (top[k - 1] + top[k])
        return cls(mean, vectors, values, float(threshold), float(share), n)

    @torch.no_grad()
    def apply(self, tokens: torch.Tensor, chunk: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ratio [B], proj [B, T])`` of ``tokens`` [B, T, C] under the fitted mean, direction and threshold:
        ``proj`` is the projection shifted by the threshold (foreground iff > 0), ``ratio`` the share of an
        image's tokens above it. float32 (float64 for float64 tokens), as :func:`foreground_ratio`."""
        out_dtype = torch.promote_types(tokens.dtype, torch.float32)
        rows = self.chunk_rows(tokens, chunk)
        ratios, projs = [], []
        for start in range(0, tokens.shape[0], rows):
            t = tokens[start : start + rows].detach()
            b, length, channels = t.shape
            x = t.to(torch.float64).reshape(b * length, channels)
            proj = ((x - self.mean) @ self.direction - self.threshold).reshape(b, length)
            ratios.append((proj > 0).to(torch.float64).mean(dim=1).to(out_dtype))
            projs.append(proj.to(out_dtype))
        return torch.cat(ratios), torch.cat(projs)

    @torch.no_grad()
    def reduce(self, tokens: torch.Tensor, components: int, chunk: Optional[int] = None) -> torch.Tensor:
        """The centred tokens [B, T, C] on the top ``components`` eigenvectors: float64 ``[B, T, components]``
        (component 0 is the foreground direction, oriented as in :meth:`apply`)."""
        if not 1 <= components <= self.vectors.shape[1]:
            raise ValueError(f"reduce: components must be in [1, {self.vectors.shape[1]}], got {components}")
        basis = self.vectors[:, :components]
        rows = self.chunk_rows(tokens, chunk)
        out = []
        for start in range(0, tokens.shape[0], rows):
            t = tokens[start : start + rows].detach()
            out.append((t.to(torch.float64) - self.mean) @ basis)
        return torch.cat(out)


def image_noise(seed: int, rows, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise ``[len(rows), *shape]``, image i's from its own generator seeded by
    ``SeedSequence([seed, rows[i]])``: the same whatever the batches."""
    out = torch.empty(len(rows), *shape)
    for j, row in enumerate(rows):
        state = np.random.SeedSequence([int(seed), int(row)]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        out[j] = torch.randn(shape, generator=g)
    return out


def bin_index(ratio: torch.Tensor, edges) -> torch.Tensor:
    """The noise bin of each ratio (0 .. len(edges)), by :func:`noise_bin`'s own rule."""
    return noise_bin(ratio, edges, list(range(len(edges) + 1)))


@dataclass
class Views:
    """What :func:`make_views` computes: the tensors of ``views.safetensors``, facts for ``views.json``, and
    wall seconds per phase."""

    tensors: dict
    info: dict
    seconds: dict


def _reduced(pca: ForegroundPCA, tokens: torch.Tensor, components: int, grid: tuple[int, int]) -> torch.Tensor:
    r = pca.reduce(tokens, components)  # [B, T, k]
    return r.transpose(1, 2).reshape(len(tokens), components, *grid).to(torch.float16)


@torch.no_grad()
def make_views(images: np.ndarray, generator, tower, cfg, tower_batch: int, progress: bool = False) -> Views:
    """The views of uint8 ``images`` [N, H, W, 3] (``cfg``: :class:`pipeline.genview.params.ViewsConfig`;
    ``generator``: a :class:`pipeline.diffusion.generator.Generator`; ``tower``: an ImageTower at
    ``cfg.tower_size``): see the module's docstring and the stage's output format."""
    from tqdm import tqdm

    seconds = {"tower_real": 0.0, "pca": 0.0, "sdedit_fixed": 0.0, "sdedit_adaptive": 0.0, "tower_views": 0.0}
    t = time.time()
    size = generator.cfg.unet.image_size
    n = len(images)
    resized = tuple(images.shape[1:3]) != (size, size)
    real = to_uint8(to_unit(images, size)) if resized else np.ascontiguousarray(images)

    tokens, grid = token_maps(tower, real, tower_batch, progress, "tower: real images")
    seconds["tower_real"] = time.time() - t
    t = time.time()
    pca = ForegroundPCA.fit(tokens, cfg.share)
    ratio, proj = pca.apply(tokens)
    tokens_real = _reduced(pca, tokens, cfg.components, grid)
    del tokens
    fg_real = soft_foreground(proj).reshape(n, *grid)
    levels = noise_bin(ratio, cfg.edges, cfg.levels)
    strength = torch.tensor([v / 1000.0 for v in levels.tolist()], dtype=torch.float64)
    bins = bin_index(ratio, cfg.edges)
    seconds["pca"] = time.time() - t

    fixed = np.empty((n, size, size, 3), dtype=np.uint8)
    adaptive = np.empty_like(fixed)
    fg_adaptive = torch.empty(n, *grid)
    tokens_adaptive = torch.empty(n, cfg.components, *grid, dtype=torch.float16)
    ratio_adaptive = torch.empty(n)
    device = generator.device
    for start in tqdm(range(0, n, cfg.batch_size), desc="SDEdit views", unit="batch", disable=not progress):
        rows = range(start, min(start + cfg.batch_size, n))
        b = slice(rows.start, rows.stop)
        x0 = to_unit(real[b]).to(device)
        noise = image_noise(cfg.seed, rows, tuple(x0.shape[1:])).to(device)
        t = time.time()
        fixed[b] = to_uint8(generator.sdedit(x0, cfg.fixed_strength, steps=cfg.steps, noise=noise))
        seconds["sdedit_fixed"] += time.time() - t
        t = time.time()
        adaptive[b] = to_uint8(generator.sdedit(x0, strength[b], steps=cfg.steps, noise=noise))
        seconds["sdedit_adaptive"] += time.time() - t
        t = time.time()
        view_tokens, _ = token_maps(tower, adaptive[b], tower_batch)
        r, p = pca.apply(view_tokens)
        ratio_adaptive[b] = r
        fg_adaptive[b] = soft_foreground(p).reshape(len(rows), *grid)
        tokens_adaptive[b] = _reduced(pca, view_tokens, cfg.components, grid)
        seconds["tower_views"] += time.time() - t

    counts = torch.bincount(bins, minlength=len(cfg.levels)).tolist()
    tensors = {"fixed": torch.from_numpy(fixed), "adaptive": torch.from_numpy(adaptive),
               "ratio": ratio.float().contiguous(), "strength": strength.float().contiguous(),
               "fg_real": fg_real.float().contiguous(), "fg_adaptive": fg_adaptive.contiguous(),
               "tokens_real": tokens_real.contiguous(), "tokens_adaptive": tokens_adaptive.contiguous(),
               "index": torch.arange(n, dtype=torch.int64)}
    info = {"n": n, "image_size": size, "corpus_size": list(images.shape[1:3]), "resized": resized,
            "token_grid": list(grid), "pca": {"explained_first": pca.explained, "threshold": pca.threshold,
                                              "tokens": pca.n_tokens},
            "bin_counts": counts, "ratio_mean": float(ratio.double().mean()),
            "ratio_adaptive_mean": float(ratio_adaptive.double().mean())}
    return Views(tensors, info, seconds)
