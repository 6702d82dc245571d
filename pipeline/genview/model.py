"""The SSL network: the shared CNN from scratch (:class:`pipeline.models.convnet.ConvEncoder`'s conv body) and
SimCLR's projection head. The probes read the pooled encoder features ``h``; the contrastive loss reads ``z``."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.convnet import ConvEncoder


class SSLNet(nn.Module):
    """float [B, 3, H, W] in [-1, 1] -> (h [B, D] pooled encoder features, z [B, proj_dim] projections).

    ``D = 8 * width`` (four stride-2 blocks of width x 1-2-4-8 channels). ``steps`` (a buffer in the state_dict,
    so it survives a resume) counts the optimiser steps: the trainer's selection keeps the last weights by it.
    """

    def __init__(self, width: int = 32, proj_dim: int = 64):
        super().__init__()
        self.encoder = ConvEncoder(proj_dim, classifier=False, width=width)
        self.dim = 8 * width
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder.features(x)
        return h, self.encoder.head(h)

    @torch.no_grad()
    def count_step(self) -> None:
        self.steps += 1
