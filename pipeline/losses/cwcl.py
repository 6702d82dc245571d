"""Cross-modal transfer to a frozen tower: the CWCL loss and its one-hot contrastive (CL) baseline.

References:
    - CWCL: R. S. Srinivasa, J. Cho, C. Yang, Y. M. Saidutta, C.-H. Lee, Y. Shen, H. Jin, "CWCL: Cross-Modal
      Transfer with Continuously Weighted Contrastive Loss", NeurIPS 2023.
    - LiT: X. Zhai et al., "LiT: Zero-Shot Transfer with Locked-image text Tuning", CVPR 2022 (the locked
      tower with the ordinary contrastive loss: our CL baseline).
    - InfoNCE: A. van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018.

Both losses take the embeddings ``p`` of the modality being trained (``trainable``) and ``q`` of the frozen,
pretrained tower (``frozen``), one row per paired sample, and differ only in the targets ``W`` of the
trainable -> frozen direction: CWCL's continuous weights :func:`cwcl_weights`, or the identity.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_embeddings, check_same_shape, check_temperature
from pipeline.losses._precision import float32_loss


@float32_loss
def cwcl_weights(frozen: torch.Tensor) -> torch.Tensor:
    r"""CWCL's pair weights from the frozen modality's own similarity: ``w_ij = (1 + cos(q_i, q_j)) / 2``.

    The map is the paper's linear one (no sharpening, no threshold): ``w = 1`` for equal directions (also
    for two samples with the same frozen embedding, e.g. two utterances of one transcript), ``1/2`` for
    orthogonal rows, ``0`` for antipodal ones. The diagonal is set to exactly 1 and the rest clamped to
    [0, 1] against rounding. A zero frozen row has cosine 0 with every other row (``w = 1/2``).

    Computes in float32 also inside bf16 autocast (float64 stays float64). Does not detach: the losses
    below pass it the detached frozen embeddings.

    Shapes:
        frozen ``[B, D]`` float -> ``[B, B]`` (symmetric, same dtype as the float32-or-wider input).

    Raises:
        ValueError: ``frozen`` not a floating-point 2-D tensor.
    """
    check_embeddings("frozen", frozen)
    q = F.normalize(frozen, dim=1)
    weights = ((1.0 + q @ q.T) * 0.5).clamp(0.0, 1.0)
    eye = torch.eye(frozen.shape[0], dtype=torch.bool, device=frozen.device)
    return torch.where(eye, torch.ones_like(weights), weights)


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""``-1/N sum_i (1 / sum_j t_ij) sum_j t_ij log softmax_j(logits_ij)``: the cross-entropy of each row's
    softmax against its target row normalised to sum 1, averaged over the N rows. ``[N, M]``, ``[N, M]``
    -> scalar. Every target row must have a positive sum (true for CWCL's weights: ``w_ii = 1``)."""
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _check_scale(scale: Optional[torch.Tensor]) -> None:
    if scale is None:
        return
    if not isinstance(scale, torch.Tensor) or scale.dim() != 0:
        shape = tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__
        raise ValueError(
            f"scale must be None or a 0-d (scalar) tensor, got {shape} "
            "(e.g. log_scale.exp() with log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07))))"
        )
    if not scale.is_floating_point():
        raise ValueError(f"scale must be a floating-point tensor, got dtype {scale.dtype}")
    if not bool(torch.isfinite(scale)) or not bool(scale > 0):
        raise ValueError(
            f"scale must be a finite number > 0, got {scale.item()!r} "
            "(it multiplies the similarities; parametrise it as the exp of a learnable log-scale)"
        )


class _FrozenTowerContrastive(nn.Module):
    """The part both losses share: settings, checks, logits, and the one-hot frozen -> trainable term.
    A subclass says what the trainable -> frozen targets are (:meth:`_targets`)."""

    def __init__(self, temperature: float = 0.07, normalize: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.normalize = bool(normalize)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"

    def _targets(self, frozen: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` detached frozen embeddings -> ``[B, B]`` targets of the trainable -> frozen term."""
        raise NotImplementedError

    @float32_loss
    def forward(
        self, trainable: torch.Tensor, frozen: torch.Tensor, scale: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        # --- checks
        check_embeddings("trainable", trainable)
        check_embeddings("frozen", frozen)
        check_same_shape("trainable", trainable, "frozen", frozen)
        _check_scale(scale)

        # --- embeddings: one dtype; the frozen side detached (no gradient reaches the frozen tower, whatever
        #     the caller's requires_grad); both sides L2-normalised when asked
        dtype = torch.promote_types(trainable.dtype, frozen.dtype)
        trainable, q_raw = trainable.to(dtype), frozen.detach().to(dtype)
        p = F.normalize(trainable, dim=1) if self.normalize else trainable
        q = F.normalize(q_raw, dim=1) if self.normalize else q_raw

        # --- logits, [B, B]: row = trainable i, column = frozen j
        logits = (p @ q.T) * (1.0 / self.temperature if scale is None else scale)
        batch = logits.shape[0]
        if batch == 0:
            return logits.sum() * 0.0  # empty batch: a defined zero that keeps the graph

        # --- targets: the subclass's for trainable -> frozen (rows), the identity for frozen -> trainable
        targets = self._targets(q_raw)
        eye = torch.eye(batch, dtype=logits.dtype, device=logits.device)

        # --- the two directions, summed: softmax over j (row i), then softmax over i (column j)
        return _soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.T, eye)


class CWCLLoss(_FrozenTowerContrastive):
    r"""Continuously weighted contrastive loss for transfer to a frozen tower (CWCL, Srinivasa et al. 2023).

    ``p`` are the embeddings of the modality being trained (``trainable``), ``q`` those of the frozen,
    pretrained tower (``frozen``); row i of both comes from the same paired sample. With
    ``S_ij = s * p_hat_i . q_hat_j`` (``p_hat``, ``q_hat`` L2-normalised when ``normalize``; ``s`` the
    logit scale) and the weights of :func:`cwcl_weights`, ``w_ij = (1 + cos(q_i, q_j)) / 2``:

    .. math::

        L_{p \to q} = -\frac{1}{N} \sum_i \frac{1}{\sum_j w_{ij}} \sum_j w_{ij}
                      \log \operatorname{softmax}_j(S_{ij}), \qquad
        L_{q \to p} = -\frac{1}{N} \sum_j \log \operatorname{softmax}_i(S_{ij}) \big|_{i = j}

    and ``L = L_{p->q} + L_{q->p}``. The frozen side's similarity tells the trainable side which other
    samples of the batch are partly positive, instead of treating them all as negatives. With ``W = I``
    it is :class:`ContrastiveLoss` exactly.

    Decisions (the paper leaves these open; each is ours, stated):
        1. Summed, not averaged: ``L_{p->q} + L_{q->p}`` as in the published recipe (CWCL in the
           trainable -> frozen direction, plain one-hot InfoNCE in the other). The CL baseline is summed
           too, so CWCL and CL differ only in ``W`` and their values and gradients are on the same scale.
        2. The weights are the cosine of the frozen embeddings also when ``normalize=False`` (the raw
           dot product would leave [0, 1]); ``normalize`` only concerns the logits.
        3. The frozen side is detached inside (``frozen.detach()``, for the logits and the weights): the
           tower is frozen in CWCL, and the detach keeps it so even if a caller forgets
           ``requires_grad_(False)``. Only ``trainable`` and ``scale`` receive gradients.
        4. ``w_ij`` is used as it is: not sharpened, thresholded or renormalised by a temperature (the
           paper's linear map from cosine to [0, 1]).
        5. Each row's weights are normalised by ``sum_j w_ij`` (a target distribution over j), so a
           row's loss is a cross-entropy and ``W = I`` gives InfoNCE.

    Degenerate batches: a batch of 1 gives exactly 0 (one column, ``log softmax = 0``), an empty batch the
    defined zero ``0 * logits.sum()``; both finite, with finite (zero) gradients. Duplicate frozen rows
    get ``w = 1`` between them (each row of W still sums to >= 1). The loss is invariant to permuting the
    batch (the same permutation on both sides).

    Args:
        temperature: tau > 0; the logit scale is ``1 / tau`` when ``forward`` gets no ``scale``.
        normalize: L2-normalise both embeddings along D for the logits (default).

    Shapes:
        trainable ``[B, D]`` float; frozen ``[B, D]`` float; scale ``None`` or a 0-d float tensor > 0
        (e.g. ``log_scale.exp()`` of a learnable log-scale owned by the model; its gradient flows).
        Returns a scalar tensor (float32 also inside bf16 autocast; float64 inputs give float64).

    Raises:
        ValueError: temperature <= 0 or not finite; ``trainable`` / ``frozen`` not 2-D, not floating
            point, or of different shapes; ``scale`` not a 0-d floating-point tensor, or <= 0 / not finite.
    """

    def _targets(self, frozen: torch.Tensor) -> torch.Tensor:
        return cwcl_weights(frozen)


class ContrastiveLoss(_FrozenTowerContrastive):
    r"""The CL baseline of CWCL: symmetric one-hot InfoNCE with a locked (frozen) tower (LiT-style).

    Same inputs, logits ``S_ij = s * p_hat_i . q_hat_j`` and reduction as :class:`CWCLLoss`, with the
    identity as the targets of both directions:

    .. math::

        L = -\frac{1}{N} \sum_i \log \operatorname{softmax}_j(S_{ij}) \big|_{j = i}
            -\frac{1}{N} \sum_j \log \operatorname{softmax}_i(S_{ij}) \big|_{i = j}

    Summed, not averaged (the scale of :class:`CWCLLoss`, which equals this loss exactly when its weights
    are the identity). Note that this is twice :class:`MultimodalInfoNCELoss` (which averages the two
    directions) on the same logits. The frozen side is detached inside, as in :class:`CWCLLoss`.

    Args:
        temperature: tau > 0; the logit scale is ``1 / tau`` when ``forward`` gets no ``scale``.
        normalize: L2-normalise both embeddings along D for the logits (default).

    Shapes:
        trainable ``[B, D]`` float; frozen ``[B, D]`` float; scale ``None`` or a 0-d float tensor > 0.
        Returns a scalar tensor.

    Raises:
        ValueError: as :class:`CWCLLoss`.
    """

    def _targets(self, frozen: torch.Tensor) -> torch.Tensor:
        batch = frozen.shape[0]
        return torch.eye(batch, dtype=frozen.dtype, device=frozen.device)
