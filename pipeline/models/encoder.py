"""Speech encoder trained from scratch on log-Mel filterbanks.

Convolutional subsampling (two stride-2 convolutions, 4x fewer frames; or one, 2x) followed by a
pre-norm Transformer encoder with sinusoidal positions, the small from-scratch design of the FSC
SLU literature. Padded frames are masked in attention and in pooling.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """[length, dim] sinusoidal position table (Vaswani et al. 2017)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] bool, True at padded positions (PyTorch's key_padding_mask convention)."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class ConvSubsampler(nn.Module):
    def __init__(self, n_mels: int, d_model: int, factor: int, channels: int = 64):
        super().__init__()
        layers, freq = [], n_mels
        for i in range({2: 1, 4: 2}[factor]):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1), nn.GELU()]
            freq = (freq + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.factor = factor
        self.out = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # [B, 1, T, F] -> [B, C, T', F']
        b, c, t, f = x.shape
        x = self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f))  # [B, T', C*F'] -> [B, T', D]
        for _ in range({2: 1, 4: 2}[self.factor]):
            lengths = (lengths + 1) // 2  # same rounding as stride 2, padding 1, kernel 3
        return x, lengths


class SpeechEncoder(nn.Module):
    """[B, T, n_mels] features (+ lengths) -> [B, T', D] states (+ lengths)."""

    def __init__(self, n_mels: int, d_model: int, layers: int, heads: int, ff: int, dropout: float, subsample: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))
        self.front = ConvSubsampler(n_mels, d_model, subsample)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (feats - self.mean) / self.std
        x, lengths = self.front(x, lengths)
        x = self.drop(x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype))
        pad = lengths_to_mask(lengths, x.shape[1])
        x = self.norm(self.layers(x, src_key_padding_mask=pad))
        return x, lengths, pad


def masked_mean(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean over time of [B, T, D] ignoring padded steps (pad: [B, T] True = padding) -> [B, D]."""
    keep = (~pad).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
