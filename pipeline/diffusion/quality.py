"""The generator's measured quality: class consistency, a Fréchet distance in a frozen tower's features, grids.

- **Class consistency**: an independent small CNN classifier, trained here on the REAL training images (never on
  generated ones), names the class of ``per_class`` samples generated for each conditioning class; the share it
  names as the conditioning class. Its accuracy on the real test images is reported beside it (the
  classifier's own ceiling).
- **Fréchet distance in EfficientNet-Lite0 features** (not FID: not Inception, not 50k images): the Fréchet
  distance between Gaussians fitted to the frozen image tower's pooled features of generated images and of
  real test images, with its floor: the same distance between a real training subset and the real test
  subset of the same size (what sampling alone costs at that size).
- **Sample grid**: one row per class.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- Fréchet distance


def gaussian(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of feature rows [N, D], in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"gaussian: need [N >= 2, D] features, got {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)); the trace of the square root as the sum of the square
    roots of the eigenvalues of C1^(1/2) C2 C1^(1/2) (symmetric PSD: stable, no complex parts)."""
    mu1, mu2, cov1, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, cov1, cov2))
    w, v = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ cov2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * cross)


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to feature rows ``a`` and ``b``."""
    return frechet(*gaussian(a), *gaussian(b))


def tower_features(tower, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """The frozen image tower's pooled features (not normalised) of uint8 [N, H, W, 3] images, float64 [N, D]."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(tower.pooled(images[start : start + batch_size]).double().cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------- class consistency


class SmallCNN(torch.nn.Module):
    """Three conv blocks (width w, 2w, 4w; BatchNorm, ReLU, the first two max-pooled), global average pool,
    a linear layer: an independent classifier of [-1, 1] images."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()

        def block(i: int, o: int) -> list[torch.nn.Module]:
            return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]

        self.net = torch.nn.Sequential(*block(3, width), torch.nn.MaxPool2d(2), *block(width, 2 * width),
                                       torch.nn.MaxPool2d(2), *block(2 * width, 4 * width),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(4 * width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int, batch_size: int,
                     lr: float, width: int, seed: int) -> SmallCNN:
    """A :class:`SmallCNN` trained on ``images`` [N, 3, H, W] in [-1, 1] (Adam, one-cycle learning rate, no
    augmentation); its init and shuffling come from ``seed`` alone."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(n_classes, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * max(1, len(labels) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    done = 0
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done < steps:
                sched.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The classifier's predicted class of each image (eval mode)."""
    classifier.eval()
    return torch.cat([classifier(images[s : s + batch_size]).argmax(-1) for s in range(0, len(images), batch_size)])


def class_consistency(predicted: torch.Tensor, conditioned: torch.Tensor, n_classes: int) -> dict:
    """The share of samples whose predicted class is their conditioning class, overall and per class (a class
    without samples: NaN)."""
    predicted, conditioned = torch.as_tensor(predicted).long(), torch.as_tensor(conditioned).long()
    hit = (predicted == conditioned).double()
    per_class = [float(hit[conditioned == c].mean()) if bool((conditioned == c).any()) else float("nan")
                 for c in range(n_classes)]
    return {"accuracy": float(hit.mean()) if hit.numel() else float("nan"), "per_class": per_class}


# ----------------------------------------------------------------------------- sampling and grids


def sample_per_class(sample: Callable[[torch.Tensor, torch.Generator], torch.Tensor], n_classes: int, per_class: int,
                     batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class (labels 0,0,..,1,1,..), in batches; ``sample(labels, generator)``
    draws one image per label. One CPU generator seeded from ``seed`` feeds every batch in order."""
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    images = [sample(labels[s : s + batch_size], gen).float().cpu() for s in range(0, len(labels), batch_size)]
    return torch.cat(images), labels


def grid(images: np.ndarray, rows: int, pad: int = 2) -> np.ndarray:
    """uint8 [rows * cols, H, W, 3] in row order -> one uint8 image with ``pad`` grey pixels between tiles."""
    n, h, w, _ = images.shape
    cols = n // rows
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 128, dtype=np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[i]
    return out


def write_png(path, image: np.ndarray, scale: int = 1) -> None:
    """Save a uint8 [H, W, 3] image as PNG (nearest-neighbour upscaled by ``scale``); no timestamps: same pixels,
    same bytes."""
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(image).save(path, format="PNG")
