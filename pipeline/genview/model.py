"""The SSL network: a CNN encoder from scratch and SimCLR's projection head. The probes read the pooled encoder
features ``h``; the contrastive loss reads ``z``.

Encoders (``genview.ssl.encoder``), both with ``D = 8 * width`` pooled features:
    * ``pooled`` (default): :class:`PooledEncoder`, four blocks of a stride-1 3x3 convolution (BatchNorm,
      ReLU) at width x 1-2-4-8 channels, 2x2 max-pooling after the first three (32 -> 16 -> 8 -> 4 px), global
      average pooling; like the quality classifier's SmallCNN (pipeline/diffusion/quality.py) plus a fourth block.
      Full-resolution first convolutions keep the small objects' outlines: it learns shape.
    * ``strided``: :class:`pipeline.models.convnet.ConvEncoder`'s conv body (four stride-2 3x3 blocks, GELU);
      at width 16 ~4x cheaper per step than ``pooled`` at width 8 (1 CPU thread), but on the shapes corpus its
      SimCLR shape probe stays at the untrained level (the measurement is in the commit message).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.convnet import ConvEncoder
from pipeline.models.heads import projection_head

ENCODERS = ("pooled", "strided")


class PooledEncoder(nn.Module):
    """float [B, 3, H, W] in [-1, 1] -> [B, 8 * width] (``features``); ``head`` is the projection head.
    The same attribute names as ConvEncoder (``convs``, ``head``), so state_dict keys read the same."""

    def __init__(self, out_dim: int, width: int = 16):
        super().__init__()
        layers, c_in = [], 3
        for i in range(4):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.head = projection_head(c_in, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).mean(dim=(2, 3))  # [B, C, H', W'] -> [B, C]


class SSLNet(nn.Module):
    """float [B, 3, H, W] in [-1, 1] -> (h [B, D] pooled encoder features, z [B, proj_dim] projections).

    ``D = 8 * width`` for both encoders (the last block's width x 8 channels). ``steps`` (a buffer in the
    state_dict, so it survives a resume) counts the optimiser steps: the trainer's selection keeps the last
    weights by it.
    """

    def __init__(self, width: int = 32, proj_dim: int = 64, encoder: str = "pooled"):
        super().__init__()
        if encoder == "pooled":
            self.encoder = PooledEncoder(proj_dim, width=width)
        elif encoder == "strided":
            self.encoder = ConvEncoder(proj_dim, classifier=False, width=width)
        else:
            raise ValueError(f"encoder {encoder!r}: one of {', '.join(ENCODERS)}")
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
