"""SoftCLIP: contrastive loss with soft targets from the target modality's own similarities (M3CoL's late phase).

References:
    - M3CoL: R. Kumar, R. Singhal, P. Kulkarni, D. Mehta, K. Jadhav, "Harnessing Shared Relations via
      Multimodal Mixup Contrastive Learning for Multimodal Classification" (M3CoL), TMLR 2025,
      arXiv:2409.17777 (M3Co for the first third of training, this loss afterwards).
    - MindEye: P. S. Scotti et al., "Reconstructing the Mind's Eye: fMRI-to-Image with Contrastive Learning
      and Diffusion Priors", NeurIPS 2023 (the same schedule, BiMixCo then SoftCLIP, and this loss's form).

One-hot InfoNCE calls every other sample of the batch a negative, however close it is. SoftCLIP replaces
the one-hot targets with the softmax of the target modality's own similarities at the same temperature: a
sample is asked to find its partner and, in proportion, the partner's near neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_embeddings, check_same_shape, check_temperature
from pipeline.losses._precision import float32_loss


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_j t_ij log softmax_j(logits_i)`` (targets rows already sum to 1)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@float32_loss
def soft_clip_term(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""One direction pair of SoftCLIP: ``pred`` against ``target``, with targets from ``target`` itself.

    With ``p_i``, ``t_j`` the L2-normalised rows of ``pred`` and ``target``:

    .. math::

        S_{ij} = \frac{p_i \cdot t_j}{\tau}, \qquad
        W_{ij} = \operatorname{softmax}_j\Big(\frac{t_i \cdot t_j}{\tau}\Big), \qquad
        L = \frac{1}{2}\Big(-\frac{1}{B}\sum_i \sum_j W_{ij} \log \operatorname{softmax}_j(S_{ij})
                           -\frac{1}{B}\sum_j \sum_i W_{ji} \log \operatorname{softmax}_i(S_{ij})\Big)

    i.e. the mean of the soft cross-entropies of the rows of ``S`` and of the rows of ``S^T``, both against
    the rows of ``W`` (row j of ``W`` is where target j's neighbours are, which serves both as pred i's
    targets over the targets and as target j's targets over the preds; ``W`` is row-stochastic, not
    symmetric in general).

    Decision (documented): the soft targets ``W`` are NOT detached. They are a function of ``target``, and
    gradient flows through them into ``target`` as in the reference code (in M3CoL both encoders train; in
    MindEye the target side is a frozen tower, where the question does not arise). To train against fixed
    soft targets, pass ``target.detach()`` (which also stops the gradient through ``S``).

    Computes in float32 also inside bf16 autocast (float64 stays float64).

    Shapes:
        pred ``[B, D]`` float; target ``[B, D]`` float (same shape) -> scalar.

    Raises:
        ValueError: temperature <= 0 or not finite; ``pred`` / ``target`` not floating-point 2-D tensors of
            the same shape.
    """
    temperature = check_temperature(temperature)
    check_embeddings("pred", pred)
    check_embeddings("target", target)
    check_same_shape("pred", pred, "target", target)
    if pred.shape[0] == 0:
        return (pred.sum() + target.sum()) * 0.0  # empty batch: a defined zero that keeps the graph

    dtype = torch.promote_types(pred.dtype, target.dtype)
    p = F.normalize(pred.to(dtype), dim=1)
    t = F.normalize(target.to(dtype), dim=1)
    logits = (p @ t.T) / temperature  # [B, B]: row = pred i, column = target j
    soft = F.softmax((t @ t.T) / temperature, dim=1)  # [B, B], rows sum to 1
    return 0.5 * (_soft_cross_entropy(logits, soft) + _soft_cross_entropy(logits.T, soft))


class SoftCLIPLoss(nn.Module):
    r"""SoftCLIP as M3CoL uses it after its M3Co phase: :func:`soft_clip_term` both ways, summed.

    .. math::

        L = \operatorname{soft\_clip\_term}(a, b) + \operatorname{soft\_clip\_term}(b, a)

    ``a`` and ``b`` are the two modalities' embeddings, row i of both from the same sample; each modality
    serves once as the prediction and once as the source of the soft targets. Symmetric in its arguments.
    With orthogonal target rows and a small temperature the soft targets tend to the identity and each
    term to symmetric InfoNCE (averaged over its two directions); with ``a == b`` each term is the mean row
    entropy of ``W`` (the lower bound of a cross-entropy against ``W``).

    Decisions (documented): summed over the two terms (each already the mean of its two directions), the
    scale of :class:`pipeline.losses.M3CoLoss`, so that switching from M3Co to SoftCLIP mid-training keeps
    the loss on the same footing; the soft targets are not detached (see :func:`soft_clip_term`).

    Args:
        temperature: tau > 0, for the logits and the soft targets alike (M3CoL: 0.125).

    Shapes:
        a ``[B, D]`` float; b ``[B, D]`` float (same shape). Returns a scalar tensor (float32 also inside
        bf16 autocast; float64 inputs give float64).

    Raises:
        ValueError: temperature <= 0 or not finite; ``a`` / ``b`` not floating-point 2-D tensors of the
            same shape.
    """

    def __init__(self, temperature: float = 0.125) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    @float32_loss
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_embeddings("a", a)
        check_embeddings("b", b)
        check_same_shape("a", a, "b", b)
        return soft_clip_term(a, b, self.temperature) + soft_clip_term(b, a, self.temperature)
