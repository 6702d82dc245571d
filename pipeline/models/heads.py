"""The projection head every track puts between an encoder and a contrastive space."""

from __future__ import annotations

from torch import nn


def projection_head(d_in: int, d_out: int) -> nn.Module:
    """An MLP ``d_in -> d_in -> d_out`` with a GELU (SimCLR's projection head, Chen et al. 2020)."""
    return nn.Sequential(nn.Linear(d_in, d_in), nn.GELU(), nn.Linear(d_in, d_out))
