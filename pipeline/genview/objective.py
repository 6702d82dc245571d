"""What each variant minimises: its two views of every training image and its contrastive loss.

    ==========  ===============================  ================================================
    variant     view 1 / view 2                  loss
    ==========  ===============================  ================================================
    simclr      aug(real) / aug(real)            NT-Xent
    fixed       aug(real) / aug(fixed view)      NT-Xent
    adaptive    aug(real) / aug(adaptive view)   NT-Xent
    genview     aug(real) / aug(adaptive view)   GenViewLoss: NT-Xent weighted per pair by the quality
                                                 of the tower's tokens and soft foreground maps, the real
                                                 image's warped by view 1's crop/flip, the adaptive
                                                 view's by view 2's (:func:`augment.warp_maps`)
    ==========  ===============================  ================================================

A training batch is a tensor of row positions only (:class:`TrainImages` holds the pixels and the views'
arrays; no label or bias ever reaches the training step). Every augmentation draws from torch's global
generator, which the trainer seeds and checkpoints, so a resumed run draws what an uninterrupted one drew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import TensorDataset

from pipeline.genview.augment import augment, warp_maps
from pipeline.losses.genview import GenViewLoss, quality_weights
from pipeline.losses.ntxent import NTXentLoss

#: the fixed draws of the valid loss (the same augmentations every epoch, so epochs compare)
VALID_SEED = 4321


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


@dataclass
class TrainImages:
    """The SSL training rows (CPU tensors, row i of each = training image i): the real pixels and what the
    views file holds for them. Deliberately without labels or bias."""

    real: torch.Tensor  # uint8 [N, H, W, 3]
    fixed: Optional[torch.Tensor] = None  # uint8 [N, S, S, 3]
    adaptive: Optional[torch.Tensor] = None  # uint8 [N, S, S, 3]
    tokens_real: Optional[torch.Tensor] = None  # [N, k, h, w]
    tokens_adaptive: Optional[torch.Tensor] = None
    fg_real: Optional[torch.Tensor] = None  # float [N, h, w] in [0, 1]
    fg_adaptive: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.real.shape[0]

    def dataset(self) -> TensorDataset:
        """The trainer's training dataset: the row positions 0..N-1, nothing else."""
        return TensorDataset(torch.arange(len(self), dtype=torch.int64))


class Objective:
    """The training step of one variant: ``step(model, (positions,)) -> terms`` (terms["loss"] is minimised;
    genview also logs its quality weights' std, min and max over each batch, averaged over the epoch)."""

    def __init__(self, variant: str, cfg, data: TrainImages):
        self.variant, self.cfg, self.data = variant, cfg, data
        self.size = tuple(data.real.shape[1:3])
        self.ntxent = NTXentLoss(cfg.temperature)
        self.genview = GenViewLoss(cfg.temperature, cfg.gamma)
        self.second = {"simclr": data.real, "fixed": data.fixed, "adaptive": data.adaptive,
                       "genview": data.adaptive}[variant]
        if self.second is None:
            raise ValueError(f"variant {variant}: its second view's images are missing")

    def views(self, pos: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(view 1, view 2, theta 1, theta 2) of the rows ``pos``."""
        real = to_unit(self.data.real[pos].to(device))
        second = to_unit(self.second[pos].to(device))
        x1, theta1 = augment(real, self.cfg.augment, self.size)
        x2, theta2 = augment(second, self.cfg.augment, self.size)
        return x1, x2, theta1, theta2

    def quality_inputs(self, pos: torch.Tensor, theta1: torch.Tensor, theta2: torch.Tensor):
        """(tokens_a [N, T, k], tokens_b, fg_a [N, T], fg_b): the real image's maps under view 1's geometry,
        the adaptive view's under view 2's."""
        d, device = self.data, theta1.device
        ta, fa = warp_maps(d.tokens_real[pos].to(device), d.fg_real[pos].to(device), theta1)
        tb, fb = warp_maps(d.tokens_adaptive[pos].to(device), d.fg_adaptive[pos].to(device), theta2)
        return ta, tb, fa, fb

    def __call__(self, model, batch) -> dict[str, torch.Tensor]:
        (pos,) = batch
        device = pos.device
        pos = pos.cpu()
        x1, x2, theta1, theta2 = self.views(pos, device)
        _, z = model(torch.cat([x1, x2]))  # one pass: BatchNorm sees both views together (SimCLR)
        z1, z2 = z.chunk(2)
        if self.variant != "genview":
            return {"loss": self.ntxent(z1, z2)}
        ta, tb, fa, fb = self.quality_inputs(pos, theta1, theta2)
        w = quality_weights(ta, tb, fa, fb, self.cfg.gamma)  # what GenViewLoss weights by (logged)
        return {"loss": self.genview(z1, z2, ta, tb, fa, fb), "w_std": w.std(), "w_min": w.min(), "w_max": w.max()}


class ValidLoss:
    """The trainer's ``evaluate``: NT-Xent of two SimCLR views of each valid image under fixed draws (a
    comparable unlabelled signal per epoch), and the optimiser steps done (selection keeps the last weights)."""

    def __init__(self, images: torch.Tensor, cfg):
        self.images, self.cfg = images, cfg
        self.ntxent = NTXentLoss(cfg.temperature)

    def __call__(self, model, loader) -> dict[str, float]:
        gen = torch.Generator().manual_seed(VALID_SEED)
        total, count = 0.0, 0
        size = tuple(self.images.shape[1:3])
        for (pos,) in loader:
            x = to_unit(self.images[pos.cpu()])
            x1, _ = augment(x, self.cfg.augment, size, generator=gen)
            x2, _ = augment(x, self.cfg.augment, size, generator=gen)
            _, z = model(torch.cat([x1, x2]).to(pos.device))
            z1, z2 = z.chunk(2)
            total += float(self.ntxent(z1, z2)) * len(pos)
            count += len(pos)
        return {"loss": total / max(count, 1), "steps": float(model.steps)}
