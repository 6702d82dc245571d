"""Generalised cross-entropy (GCE): the loss LfF's biased model minimises so that it latches onto the easy bias.

References:
    - Z. Zhang, M. R. Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
      Labels", NeurIPS 2018 (the L_q loss, Eq. 6).
    - LfF: J. Nam, H. Cha, S. Ahn, J. Lee, J. Shin, "Learning from Failure: Training Debiased Classifier from
      Biased Classifier", NeurIPS 2020 (GCE with q = 0.7 trains the intentionally biased model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_index_vector
from pipeline.losses._precision import float32_loss

REDUCTIONS = ("mean", "sum", "none")


def check_q(q: float) -> float:
    """``q`` as a float if it is a number in (0, 1], else ``ValueError``."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not (0.0 < float(q) <= 1.0):
        raise ValueError(f"q must be a number in (0, 1] (q -> 0 is cross-entropy, q = 1 is 1 - p_y; LfF: 0.7), "
                         f"got {q!r}")
    return float(q)


@float32_loss
def generalized_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, q: float = 0.7,
                              reduction: str = "mean") -> torch.Tensor:
    r"""GCE (Zhang & Sabuncu, NeurIPS 2018) of softmax probabilities ``p = softmax(logits)``:

    .. math::

        \mathrm{GCE}(p, y) = \frac{1 - p_y^{\,q}}{q}

    Its gradient is ``p_y^q`` times cross-entropy's (``d GCE = -p_y^q d log p_y``): samples the model already
    fits well (high ``p_y``, the bias-aligned ones) weigh more, which is why LfF's biased model amplifies the
    bias. ``q -> 0`` gives cross-entropy ``-log p_y``; ``q = 1`` gives ``1 - p_y``.

    Decision (documented): this is the formula itself. LfF's code computes ``CE * (p_y^q).detach() * q``,
    whose gradient is ``q`` times this one (same direction, a constant scale that Adam largely absorbs).
    ``p_y^q`` is computed as ``exp(q log_softmax)``, so large logits cannot overflow.

    Shapes:
        logits ``[B, K]`` float; targets ``[B]`` integer class indices in ``0..K-1``. Returns a scalar
        (``mean`` / ``sum``; an empty batch's mean is 0) or ``[B]`` (``none``).

    Raises:
        ValueError: q not in (0, 1]; logits not a floating-point 2-D tensor; targets not an integer ``[B]``
            tensor or outside ``0..K-1``; unknown reduction.
    """
    q = check_q(q)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor of shape [B, K], got {shape}")
    check_index_vector("targets", targets, logits.shape[0])
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must be class indices in 0..{logits.shape[1] - 1}")
    log_py = F.log_softmax(logits, dim=1).gather(1, targets.long()[:, None]).squeeze(1)  # [B]
    per_sample = (1.0 - torch.exp(q * log_py)) / q  # [B]
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.mean() if per_sample.numel() else logits.sum() * 0.0


class GCELoss(nn.Module):
    """:func:`generalized_cross_entropy` as a module (``q`` and ``reduction`` fixed at construction).

    Args:
        q: the exponent in (0, 1] (LfF: 0.7).
        reduction: ``mean`` (default), ``sum`` or ``none`` (per sample ``[B]``).

    Raises:
        ValueError: as :func:`generalized_cross_entropy`.
    """

    def __init__(self, q: float = 0.7, reduction: str = "mean") -> None:
        super().__init__()
        self.q = check_q(q)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"q={self.q}, reduction={self.reduction!r}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return generalized_cross_entropy(logits, targets, self.q, self.reduction)
