"""NT-Xent: SimCLR's normalized-temperature cross-entropy over the 2N views of a batch of N pairs.

Reference:
    - SimCLR: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive Learning of
      Visual Representations", ICML 2020 (Eq. 1, the NT-Xent loss, and Algorithm 1).

The pieces: :func:`ntxent_pair_losses` (one loss per pair, the mean of its two anchor terms, for callers that
weight pairs themselves) and :class:`NTXentLoss` (the mean over the 2N anchors, optionally with per-pair
weights, as GenView's quality-driven loss uses them).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_embeddings, check_same_shape, check_temperature
from pipeline.losses._precision import float32_loss


@float32_loss
def ntxent_pair_losses(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    r"""Per-pair NT-Xent losses (SimCLR, Chen et al., ICML 2020): ``[N]``, the mean of each pair's two anchor terms.

    With ``u_1..u_2N`` the L2-normalised rows of ``cat([z1, z2])`` (``u_i`` and ``u_{i+N}`` the two views of
    pair i), ``s_ab = u_a . u_b`` (cosine similarity) and ``pos(a)`` the other view of anchor a:

    .. math::

        \ell_a = -\log \frac{\exp(s_{a,\mathrm{pos}(a)} / \tau)}{\sum_{b \ne a} \exp(s_{ab} / \tau)},
        \qquad
        L_i = \frac{\ell_i + \ell_{i+N}}{2}

    The denominator runs over the 2N - 1 other embeddings: the positive and the 2N - 2 negatives (the anchor
    itself is excluded). It is a log-sum-exp, so small temperatures cannot overflow. ``mean(L)`` is SimCLR's
    loss (the mean over the 2N anchors).

    Degenerate batches: N = 1 gives exactly 0 (each anchor's denominator holds its positive only); N = 0 an
    empty ``[0]`` tensor. A zero row normalises to the zero vector (similarity 0 to everything).
    Gradients flow to both inputs. Computes in float32 also inside bf16 autocast (float64 stays float64).

    Shapes:
        z1 ``[N, D]`` float; z2 ``[N, D]`` float (same shape; row i of both are the two views of sample i).
        Returns ``[N]``.

    Raises:
        ValueError: temperature <= 0 or not finite; ``z1`` / ``z2`` not floating-point 2-D tensors of the
            same shape.
    """
    temperature = check_temperature(temperature)
    check_embeddings("z1", z1)
    check_embeddings("z2", z2)
    check_same_shape("z1", z1, "z2", z2)
    n = z1.shape[0]
    dtype = torch.promote_types(z1.dtype, z2.dtype)
    z = F.normalize(torch.cat([z1.to(dtype), z2.to(dtype)], dim=0), dim=1)  # [2N, D]
    logits = (z @ z.T) / temperature  # [2N, 2N]
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    # finite "minus infinity" (as the other losses): a masked entry never gives inf - inf
    logits = logits.masked_fill(eye, torch.finfo(logits.dtype).min)
    rows = torch.arange(2 * n, device=z.device)
    positives = torch.cat([rows[n:], rows[:n]])  # anchor a's positive: a + N for the first view, a - N else
    per_anchor = torch.logsumexp(logits, dim=1) - logits[rows, positives]  # [2N]
    return 0.5 * (per_anchor[:n] + per_anchor[n:])


def check_pair_weights(weights: torch.Tensor, n: int) -> None:
    """``weights`` must be a floating-point ``[n]`` tensor of finite values >= 0 that does not require grad."""
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1 or weights.shape[0] != n:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"weights must be a 1-D tensor of length {n} (one per pair), got {shape}")
    if not weights.is_floating_point():
        raise ValueError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if weights.requires_grad:
        raise ValueError(
            "weights must not require grad: they are constants of the loss (GenView detaches them); "
            "pass weights.detach() or compute them under torch.no_grad()"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must hold finite values >= 0 (one per pair)")


class NTXentLoss(nn.Module):
    r"""SimCLR's NT-Xent loss (Chen et al., ICML 2020), optionally weighting each positive pair.

    Unweighted, the mean over the 2N anchors of the anchor terms ``l_a`` of :func:`ntxent_pair_losses`
    (each anchor's positive is the other view of its pair, its negatives the 2N - 2 other embeddings, itself
    excluded; cosine similarities divided by ``tau``). With per-pair weights ``w`` (GenView's quality weights):

    .. math::

        L = \frac{1}{2N} \sum_{i=1}^{N} w_i (\ell_i + \ell_{i+N}) = \frac{1}{N} \sum_i w_i L_i

    i.e. both anchor terms of pair i are multiplied by ``w_i`` before the mean over the 2N anchors; the mean
    is NOT renormalised by ``sum(w)`` (GenView's weights already have mean 1, and ``w = 1`` gives the
    unweighted loss exactly).

    Decision (documented): the weights are constants of the loss. A ``weights`` tensor that requires grad
    raises ``ValueError`` instead of being detached silently, so that a caller who forgot to detach (and whose
    weights would otherwise be optimised towards the easy pairs) learns it at once; pass detached weights.

    Degenerate batches: N = 1 gives exactly 0 (no negatives); N = 0 the defined zero
    ``0 * (z1.sum() + z2.sum())`` that keeps the graph.

    Args:
        temperature: tau > 0 (SimCLR: 0.1-0.5 depending on the batch size; 0.2 here).

    Shapes:
        z1 ``[N, D]`` float; z2 ``[N, D]`` float (same shape); weights ``None`` or float ``[N]``, finite,
        >= 0, not requiring grad. Returns a scalar tensor (float32 also inside bf16 autocast; float64 inputs
        give float64).

    Raises:
        ValueError: temperature <= 0 or not finite; ``z1`` / ``z2`` not floating-point 2-D tensors of the
            same shape; ``weights`` not a floating-point ``[N]`` tensor of finite values >= 0, or requiring
            grad.
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    @float32_loss
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        pair = ntxent_pair_losses(z1, z2, self.temperature)  # checks z1, z2
        n = pair.shape[0]
        if weights is not None:
            check_pair_weights(weights, n)
        if n == 0:
            return (z1.sum() + z2.sum()) * 0.0
        if weights is None:
            return pair.mean()
        return (weights.to(device=pair.device, dtype=pair.dtype) * pair).mean()

