"""SimCLR's augmentations, batched on float images [B, 3, H, W] in [-1, 1], and the same geometry on auxiliary maps.

Reference: SimCLR (T. Chen et al., ICML 2020, Appendix A): random resized crop (area share in ``crop_scale``,
aspect ratio in [3/4, 4/3]) with a horizontal flip, colour jitter (brightness, contrast, saturation, hue) with
probability ``jitter_p``, greyscale with probability ``grey_p``.

Geometry is one affine ``theta`` [B, 2, 3] per sample (:func:`draw_theta`), mapping the output's normalised
coordinates (-1..1, ``align_corners=False``) into the input's: ``x_in = sx * x_out + tx`` (``sx < 0``: flipped),
``y_in = sy * y_out + ty``. :func:`warp` applies it with ``F.affine_grid`` + ``F.grid_sample`` (bilinear) at any
output size, so the same theta crops a 32x32 image, a generated view of another size, or a 4x4 token map
(:func:`warp_maps`) at the same place.

Every draw comes from the ``generator`` passed (default: torch's global one, which the trainer seeds and
checkpoints); each call draws the same number of values whatever the probabilities, so the stream a batch
consumes does not depend on its contents.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

#: random resized crop: aspect ratios (w / h) in [3/4, 4/3], drawn log-uniformly as torchvision does
RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: candidate crops per sample: the first that fits inside the image is taken (torchvision tries 10, then falls
#: back to the whole image)
ATTEMPTS = 10
#: ITU-R 601 luma weights (torchvision's rgb_to_grayscale)
LUMA = (0.299, 0.587, 0.114)


def _uniform(shape, low, high, generator: Optional[torch.Generator], device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def draw_theta(batch: int, crop_scale=(0.35, 1.0), flip: float = 0.5, generator: Optional[torch.Generator] = None,
               device=None) -> torch.Tensor:
    """Random resized crops and horizontal flips as affine thetas float32 [B, 2, 3].

    Per sample: ``ATTEMPTS`` candidates of area share ``s ~ U(crop_scale)`` and aspect ratio ``r`` log-uniform in
    [3/4, 4/3] give side fractions ``w = sqrt(s r)``, ``h = sqrt(s / r)``; the first with ``w, h <= 1`` is taken
    (none: the whole image). Its centre is uniform over the positions that keep it inside the image; it is
    flipped left-right with probability ``flip``. Draws: always ``2 * ATTEMPTS + 3`` values per sample,
    whatever is accepted.
    """
    lo, hi = float(crop_scale[0]), float(crop_scale[1])
    area = _uniform((batch, ATTEMPTS), lo, hi, generator, device)
    log_ratio = _uniform((batch, ATTEMPTS), math.log(RATIO[0]), math.log(RATIO[1]), generator, device)
    centre = torch.rand((batch, 2), generator=generator, device=device)
    flips = torch.rand((batch,), generator=generator, device=device) < flip
    ratio = torch.exp(log_ratio)
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= 1.0) & (h <= 1.0)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # the first fitting attempt (0 when none fits)
    any_fit = fits.any(dim=1)
    rows = torch.arange(batch, device=w.device)
    w = torch.where(any_fit, w[rows, first], torch.ones_like(w[:, 0]))
    h = torch.where(any_fit, h[rows, first], torch.ones_like(h[:, 0]))
    tx = (2.0 * centre[:, 0] - 1.0) * (1.0 - w)  # the crop [tx - w, tx + w] stays inside [-1, 1]
    ty = (2.0 * centre[:, 1] - 1.0) * (1.0 - h)
    sx = torch.where(flips, -w, w)
    theta = torch.zeros(batch, 2, 3, device=w.device)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = h, ty
    return theta


def identity_theta(batch: int, device=None) -> torch.Tensor:
    """The theta that returns its input unchanged (at the input's own size)."""
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device).expand(batch, 2, 3).clone()


def warp(x: torch.Tensor, theta: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """``x`` [B, C, H, W] float sampled through ``theta`` [B, 2, 3] at ``size`` (default: H, W): bilinear,
    ``align_corners=False``, border padding (a crop never leaves the image, so the border is rounding only)."""
    h, w = size if size is not None else x.shape[-2:]
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def warp_maps(tokens: torch.Tensor, foreground: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The auxiliary maps of a view with the SAME crop and flip as its image, each at its own resolution.

    ``tokens`` [B, C, h, w] (the frozen tower's token maps) and ``foreground`` [B, h, w] or [B, 1, h, w] (soft
    foreground maps in [0, 1]) -> (tokens [B, h*w, C], foreground [B, h*w] clamped to [0, 1]): the flattened
    token sequences :func:`pipeline.losses.genview.quality_weights` reads, in row-major order.

    Approximation (documented): the tower's tokens were computed once, on the un-augmented image (or generated
    view), so only the geometry follows the view; the colour jitter and greyscale of the view are ignored, and
    a crop of a coarse 4x4 map is a bilinear resampling of it, not the tower's tokens of the cropped pixels.
    """
    if foreground.dim() == 3:
        foreground = foreground.unsqueeze(1)
    tokens = warp(tokens.float(), theta)
    foreground = warp(foreground.float(), theta).clamp(0.0, 1.0)
    return tokens.flatten(2).transpose(1, 2), foreground.flatten(1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> its luma [B, 1, H, W]."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


#: RGB <-> YIQ (the hue is an angle in the IQ plane: a rotation there shifts it, leaving the luma Y unchanged)
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shift`` [B] turns (a YIQ rotation: linear, cheap; close to an HSV hue
    shift for moderate angles)."""
    yiq = _YIQ.to(x)
    angle = 2.0 * math.pi * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(yiq) @ rot @ yiq  # [B, 3, 3] in RGB
    return torch.einsum("bij,bjhw->bihw", m, x)


def colour(x: torch.Tensor, strength: float = 0.4, jitter_p: float = 0.8, grey_p: float = 0.2,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Colour jitter with probability ``jitter_p`` (brightness, contrast, saturation factors uniform in
    [1 - strength, 1 + strength], hue shift uniform in +-strength/4 turns, in that fixed order), then greyscale
    with probability ``grey_p``; on [B, 3, H, W] in [-1, 1], clipped to [-1, 1] after each step. Always draws
    ``6`` values per sample."""
    b = x.shape[0]
    dev = x.device
    factors = _uniform((b, 3), 1.0 - strength, 1.0 + strength, generator, dev)
    hue = _uniform((b,), -strength / 4.0, strength / 4.0, generator, dev)
    jitter = torch.rand((b,), generator=generator, device=dev) < jitter_p
    grey = torch.rand((b,), generator=generator, device=dev) < grey_p
    y = (x + 1.0) * 0.5
    j = y * factors[:, 0].view(b, 1, 1, 1)
    j = j.clamp(0.0, 1.0)
    mean = _grey(j).mean(dim=(1, 2, 3), keepdim=True)
    j = ((j - mean) * factors[:, 1].view(b, 1, 1, 1) + mean).clamp(0.0, 1.0)
    g = _grey(j)
    j = ((j - g) * factors[:, 2].view(b, 1, 1, 1) + g).clamp(0.0, 1.0)
    j = _hue(j, hue).clamp(0.0, 1.0)
    y = torch.where(jitter.view(b, 1, 1, 1), j, y)
    y = torch.where(grey.view(b, 1, 1, 1), _grey(y).expand_as(y), y)
    return y * 2.0 - 1.0


def augment(x: torch.Tensor, cfg, size: tuple[int, int], generator: Optional[torch.Generator] = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """One SimCLR view of each image: (view [B, 3, *size] in [-1, 1], its theta [B, 2, 3]). ``x`` [B, 3, H, W]
    float in [-1, 1] (any H, W: a generated view of another size is resampled to ``size`` by the crop);
    ``cfg`` an :class:`pipeline.genview.params.AugmentConfig`."""
    theta = draw_theta(x.shape[0], cfg.crop_scale, cfg.flip, generator, x.device)
    view = warp(x, theta, size)
    return colour(view, cfg.jitter, cfg.jitter_p, cfg.grey_p, generator), theta
