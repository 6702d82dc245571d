"""Small argument checks shared by the loss modules (each raises ``ValueError`` with a hint)."""

from __future__ import annotations

import math

import torch


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float if it is a finite number > 0, else raise ``ValueError``."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r} "
            "(typical values are 0.05-0.5; it divides the cosine similarities)"
        )
    return float(temperature)


def check_embeddings(name: str, x: torch.Tensor) -> None:
    """``x`` must be a floating-point [B, D] tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(
            f"{name} must have shape [B, D], got {tuple(x.shape)} "
            "(pool over time and flatten before the loss)"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape "
            "(one row per sample, same projection size)"
        )


def check_index_vector(name: str, x: torch.Tensor, batch: int) -> None:
    """``x`` must be an integer [batch] tensor (class labels, text ids)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.shape[0] != batch:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 1-D tensor of length {batch} (one per sample), got {shape}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor (e.g. torch.long), got dtype {x.dtype}")


def check_bool_mask(name: str, x: torch.Tensor, batch: int) -> None:
    """``x`` must be a bool [batch] tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.shape[0] != batch:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 1-D bool tensor of length {batch} (one per sample), got {shape}")
    if x.dtype != torch.bool:
        raise ValueError(
            f"{name} must have dtype torch.bool, got {x.dtype} "
            "(an integer tensor would be read as indices, not as a mask: use `mask.bool()`)"
        )
