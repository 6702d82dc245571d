"""A small CNN on raw pixels, from scratch (CWCL's mirrored image side, M3CoL's end-to-end image side)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.heads import projection_head


class ConvEncoder(nn.Module):
    """uint8 [B, H, W, 3] images (``batch[key]``) -> [B, out_dim]. Four stride-2 3x3 convolution blocks
    (width x 1-2-4-8 channels, BatchNorm, GELU), global average pooling, then a head (an MLP, or a linear
    classifier with ``classifier=True``)."""

    def __init__(self, out_dim: int, classifier: bool = False, width: int = 32, key: str = "image"):
        super().__init__()
        self.key = key
        blocks, c_in = [], 3
        for i in range(4):
            c_out = width * 2**i
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, out_dim) if classifier else projection_head(c_in, out_dim)

    def pooled(self, batch: dict) -> torch.Tensor:
        x = batch[self.key].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, H, W, 3] uint8 -> [B, 3, H, W] in [-1, 1]
        return self.features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] in [-1, 1] (e.g. augmented views) -> the pooled conv features [B, C]."""
        return self.convs(x).mean(dim=(2, 3))  # [B, C, H', W'] -> [B, C]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.pooled(batch))
