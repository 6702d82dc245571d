"""The M3CoL model (paper structure): one encoder per modality, unimodal classifier heads used only for
training, and a fusion head on the concatenated embeddings, the only head used at inference.

Encoders map a batch to the modality's embedding ``z`` [B, dim], the space the contrastive terms compare:

- cached frozen-tower embeddings -> :class:`FeatureEncoder` (an MLP; the default for images and captions);
- log-Mel features -> :class:`SpeechFeature` (the project's speech encoder from scratch, mean over time);
- pixels -> :class:`pipeline.models.convnet.ConvEncoder`, word ids -> :class:`pipeline.models.text.WordEncoder`
  (``m3col.image.encoders: end_to_end``).

Which heads exist follows the variant: a unimodal variant has its modality's encoder and head only; ``concat``
(UniConcat) the fusion head only; ``aux``, ``clip``, ``m3co`` and ``m3col`` the fusion head and both unimodal
heads.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.m3col.params import FUSION_VARIANTS


class FeatureEncoder(nn.Module):
    """A cached embedding [B, d_in] (``batch[key]``) -> [B, dim]: standardised by the training set's per-feature
    mean and std (fixed buffers), then Linear, GELU, dropout, Linear. Standardising matters: the towers' unit
    rows vary little per feature (EfficientNet-Lite0's 1280 features ~0.03 each), and an MLP on them as they
    are learns several times slower (the CWCL probe: 23 % raw against 54 % standardised)."""

    def __init__(self, key: str, train_features: torch.Tensor, hidden: int, dim: int, dropout: float):
        super().__init__()
        self.key = key
        self.register_buffer("mean", train_features.mean(0))
        self.register_buffer("std", train_features.std(0).clamp_min(1e-6))
        d_in = train_features.shape[1]
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net((batch[self.key] - self.mean) / self.std)


class SpeechFeature(nn.Module):
    """[B, T, n_mels] features + lengths -> [B, dim]: the speech encoder's states, mean over time, a Linear."""

    def __init__(self, cfg, n_mels: int, dim: int):
        super().__init__()
        from pipeline.models.encoder import SpeechEncoder

        self.encoder = SpeechEncoder(n_mels, cfg.d_model, cfg.layers, cfg.heads, cfg.ff_mult * cfg.d_model,
                                     cfg.dropout, cfg.subsample, cfg.conv_channels, cfg.utterance_norm,
                                     cfg.encoder, cfg.spec_augment, cfg.front)
        self.out = nn.Linear(cfg.d_model, dim)

    def forward(self, batch: dict) -> torch.Tensor:
        from pipeline.models.encoder import masked_mean

        lens = batch["lens"]
        feats = batch["feats"][:, : int(lens.max())]  # drop the batch's common padding
        states, _, pad = self.encoder(feats, lens)  # [B, T', d_model]
        return self.out(masked_mean(states, pad))  # [B, dim]


def classifier(d_in: int, hidden: int, n_classes: int, dropout: float) -> nn.Module:
    """A head: Linear, GELU, dropout, Linear to the class logits."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


class FusionModel(nn.Module):
    """Encoders and heads of one variant. ``forward(batch)`` -> ``{"z": {modality: [B, dim]}, "logits": {head:
    [B, C]}}`` with heads among the modalities and ``"fusion"``; :meth:`predict` gives the inference head's
    logits (``fusion``, or the modality's own head in a unimodal variant)."""

    def __init__(self, variant: str, modalities: tuple[str, str], encoders: dict[str, nn.Module], n_classes: int,
                 dim: int, hidden: int, dropout: float):
        super().__init__()
        fused = variant in FUSION_VARIANTS
        used = list(modalities) if fused else [variant]
        self.variant, self.modalities, self.used = variant, tuple(modalities), used
        self.encoders = nn.ModuleDict({m: encoders[m] for m in used})
        heads = {}
        if fused:
            heads["fusion"] = classifier(len(used) * dim, hidden, n_classes, dropout)
        if not fused or variant != "concat":
            heads.update({m: classifier(dim, hidden, n_classes, dropout) for m in used})
        self.heads = nn.ModuleDict(heads)
        self.inference_head = "fusion" if fused else variant

    def forward(self, batch: dict) -> dict:
        z = {m: self.encoders[m](batch) for m in self.used}
        logits = {}
        for name, head in self.heads.items():
            x = torch.cat([z[m] for m in self.used], dim=1) if name == "fusion" else z[name]  # [B, 2 dim] or [B, dim]
            logits[name] = head(x)
        return {"z": z, "logits": logits}

    def predict(self, batch: dict) -> torch.Tensor:
        """The inference head's logits [B, C] (the unimodal heads are never used here)."""
        z = {m: self.encoders[m](batch) for m in self.used}
        name = self.inference_head
        x = torch.cat([z[m] for m in self.used], dim=1) if name == "fusion" else z[name]
        return self.heads[name](x)
