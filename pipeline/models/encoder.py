"""Speech encoder trained from scratch on log-Mel filterbanks.

A front end that shortens time 2x, 4x or 8x (``model.front``: ``stack``, the default, puts consecutive
frames side by side and projects them; ``conv``: stride-2 1-D convolutions), then the encoder layers
(``model.encoder``: ``gru``, the default, a bidirectional GRU, which learns fastest on small corpora;
``conv``, ConvNeXt-style 1-D blocks; ``transformer``, pre-norm self-attention with sinusoidal
positions). Padded frames are zero before the front end and masked in attention and pooling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """log2(factor) stride-2 1-D convolutions over time (the Mel bins are the input channels).

    1-D rather than 2-D convolutions: on a CPU the 2-D front end of ASR recipes cost more than the
    whole rest of a small model here, for no accuracy gain on spoken commands.
    """

    def __init__(self, n_mels: int, d_model: int, factor: int, channels: int):
        super().__init__()
        self.n_convs = {2: 1, 4: 2, 8: 3}[factor]
        convs, width = [], n_mels
        for i in range(self.n_convs):
            out = d_model if i == self.n_convs - 1 else channels
            convs.append(nn.Conv1d(width, out, 5, stride=2, padding=2))
            width = out
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.transpose(1, 2)  # [B, T, F] -> [B, F, T]: Mel bins are channels
        for conv in self.convs:
            x = F.gelu(conv(x))  # [B, C, T] -> [B, C', ceil(T / 2)]
            lengths = (lengths - 1) // 2 + 1  # output length of kernel 5, stride 2, padding 2
            # zero the steps past each utterance's end: the next convolution must see the same zeros
            # there whatever the batch's padding, or outputs would depend on the batch
            x = x * (~lengths_to_mask(lengths, x.shape[2])).unsqueeze(1).to(x.dtype)
        return x.transpose(1, 2), lengths  # [B, T', D]


class StackSubsampler(nn.Module):
    """Frame stacking: ``factor`` consecutive frames concatenated, then one linear layer + GELU.

    The low-frame-rate front end of large-vocabulary systems; a single matrix product, several times
    cheaper than strided convolutions on a CPU (their backward pass dominated a training step here).
    Each output step sees only its own frames, so it cannot depend on the batch's padding.
    """

    def __init__(self, n_mels: int, d_model: int, factor: int):
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(factor * n_mels, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, f = x.shape
        t_out = -(-t // self.factor)
        x = F.pad(x, (0, 0, 0, t_out * self.factor - t))  # [B, T, F] -> [B, T_out * factor, F]
        x = x.reshape(b, t_out, self.factor * f)  # [B, T_out, factor * F]: consecutive frames side by side
        return F.gelu(self.proj(x)), -(-lengths // self.factor)


class SpeechEncoder(nn.Module):
    """[B, T, n_mels] features (+ lengths) -> [B, T', D] states (+ lengths)."""

    def __init__(self, n_mels: int, d_model: int, layers: int, heads: int, ff: int, dropout: float, subsample: int,
                 channels: int, utterance_norm: bool = True, kind: str = "transformer", spec_augment: bool = True,
                 front: str = "conv"):
        super().__init__()
        self.utterance_norm, self.kind, self.spec_augment = utterance_norm, kind, spec_augment
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))
        if front == "stack":
            self.front = StackSubsampler(n_mels, d_model, subsample)
        else:
            self.front = ConvSubsampler(n_mels, d_model, subsample, channels)
        if kind == "conv":
            self.layers = nn.ModuleList(ConvBlock(d_model, ff, dropout) for _ in range(layers))
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
            self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:  # bidirectional GRU: learns faster than self-attention on small corpora
            self.layers = nn.GRU(d_model, d_model // 2, layers, batch_first=True, bidirectional=True,
                                 dropout=dropout if layers > 1 else 0.0)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = (~lengths_to_mask(lengths, feats.shape[1])).unsqueeze(-1).to(feats.dtype)  # [B, T, 1]
        x = (feats - self.mean) / self.std
        if self.utterance_norm:  # per-utterance mean over real frames: removes gain and channel offsets
            x = x - (x * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp_min(1.0)
        x = x * real  # padding is exactly zero, so results do not depend on how much of it a batch has
        if self.training and self.spec_augment:
            x = spec_augment(x, lengths)
        x, lengths = self.front(x, lengths)
        pad = lengths_to_mask(lengths, x.shape[1])
        if self.kind == "conv":
            keep = (~pad).unsqueeze(-1).to(x.dtype)  # [B, T', 1]
            for block in self.layers:
                x = block(x, keep)
        elif self.kind == "transformer":
            x = self.drop(x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype))
            x = self.layers(x, src_key_padding_mask=pad)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = nn.utils.rnn.pad_packed_sequence(self.layers(packed)[0], batch_first=True, total_length=x.shape[1])
        x = self.norm(x)
        return x, lengths, pad


class ConvBlock(nn.Module):
    """A 1-D ConvNeXt block (Liu et al. 2022): depthwise conv over time, LayerNorm, pointwise MLP, residual.

    Every step is parallel over time, so unlike a GRU the backward pass costs about twice the forward
    on a CPU. Padded steps are zeroed before the convolution so that outputs do not depend on the padding.
    """

    def __init__(self, d_model: int, ff: int, dropout: float, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: [B, T, D]; keep: [B, T, 1], 1 at real steps."""
        h = self.depthwise((x * keep).transpose(1, 2)).transpose(1, 2)  # [B, D, T] conv, back to [B, T, D]
        return (x + self.drop(self.mlp(self.norm(h)))) * keep


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, freq_masks: int = 2, freq_width: int = 6,
                 time_masks: int = 2, time_width: int = 10) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) without time warping: zero ``freq_masks`` bands of up to ``freq_width``
    bins and ``time_masks`` spans of up to ``time_width`` frames per utterance. x: [B, T, F], normalised."""
    b, t, f = x.shape
    dev = x.device
    keep = torch.ones(b, t, f, device=dev, dtype=x.dtype)
    bins = torch.arange(f, device=dev).view(1, 1, f)
    frames = torch.arange(t, device=dev).view(1, t, 1)
    for _ in range(freq_masks):
        width = torch.randint(0, freq_width + 1, (b, 1, 1), device=dev)
        start = (torch.rand(b, 1, 1, device=dev) * (f - width + 1)).long()
        keep = keep * ~((bins >= start) & (bins < start + width))
    for _ in range(time_masks):
        width = torch.randint(0, time_width + 1, (b, 1, 1), device=dev)
        start = (torch.rand(b, 1, 1, device=dev) * (lengths.view(b, 1, 1) - width + 1).clamp_min(1)).long()
        keep = keep * ~((frames >= start) & (frames < start + width))
    return x * keep


def masked_mean(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean over time of [B, T, D] ignoring padded steps (pad: [B, T] True = padding) -> [B, D]."""
    keep = (~pad).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
