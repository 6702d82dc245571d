"""The losses' precision: every loss computes in (at least) float32, also when called inside bf16 autocast.

On CUDA the forward pass runs in bf16 autocast (pipeline.core.runtime); a softmax over similarities divided
by a temperature of 0.1 (or over logits) keeps about 3 significant digits in bf16. :func:`float32_loss`
leaves autocast for the call and upcasts its bf16/fp16 tensor arguments to float32 (float64 stays float64),
so a loss gives the float32 value and a float32 result wherever it is called from.
"""

from __future__ import annotations

import functools

import torch

from pipeline.core.runtime import float32


def _upcast(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(torch.promote_types(x.dtype, torch.float32))
    return x


def float32_loss(fn):
    """Decorate a loss function or a loss module's ``forward``: run it outside autocast (for the device of its
    first tensor argument) on float32-or-wider copies of its floating-point tensor arguments."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), "cpu")
        with float32(device):
            return fn(*(_upcast(a) for a in args), **{k: _upcast(v) for k, v in kwargs.items()})

    return wrapper
