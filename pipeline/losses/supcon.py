"""Supervised contrastive losses on rehearsal samples: NSPT, SupCon and NTPT.

References:
    - COCONUT: U. Cappellazzo, E. Falavigna, A. Brutti, M. Ravanelli, "Continual contrastive spoken
      language understanding", 2023/2024 (the NSPT loss and its SupCon / NTPT ablations).
    - SupCon: P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (the L_out form).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import (
    check_bool_mask,
    check_embeddings,
    check_index_vector,
    check_same_shape,
    check_temperature,
)
from pipeline.losses._precision import float32_loss

VARIANTS = ("nspt", "supcon", "ntpt")


class RehearsalContrastiveLoss(nn.Module):
    r"""Supervised contrastive loss whose anchors are the rehearsal samples (COCONUT, Cappellazzo et al.).

    ``s`` are the student embeddings (the model being trained), ``t`` the teacher embeddings (a frozen
    copy of the model taken at the end of the previous task), ``y`` the class labels and ``a`` the
    anchor mask (True for rehearsal-buffer samples). For each anchor ``i`` (``a_i`` True):

    .. math::

        L_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log
              \frac{\exp(s_i \cdot u_p / \tau)}
                   {\sum_{p' \in P(i)} \exp(s_i \cdot u_{p'} / \tau) + \sum_{n \in N(i)} \exp(s_i \cdot v_n / \tau)}

    with ``P(i)`` the batch samples with label ``y_i`` and ``N(i)`` those with another label (the whole
    batch: rehearsal AND current-task samples), and the positive / negative banks ``u`` / ``v``:

    ========  ===========  ===========  ==================================================
    variant   positives u  negatives v  P(i) contains i itself?
    ========  ===========  ===========  ==================================================
    nspt      teacher t    student s    yes by default (``include_self_positive``)
    supcon    student s    student s    never (s_i . s_i = 1 is the anchor itself)
    ntpt      teacher t    teacher t    yes by default (``include_self_positive``)
    ========  ===========  ===========  ==================================================

    ``supcon`` is therefore exactly Khosla et al.'s L_out: the denominator runs over all other samples
    ``k != i`` of the batch, restricted here to anchors in the mask.

    Decisions (documented because the paper text does not settle them):
        * Self positive. In NSPT/NTPT the teacher embedding ``t_i`` of the anchor's own utterance is a
          different "view" (the frozen model's) of the same sample, so it is a natural positive, and it
          pulls the student towards where the old model put this sample -- the distillation effect the
          loss exists for. It also matters in practice: the buffer is small and class-balanced, so a
          rehearsal class often appears only once in a minibatch; without ``t_i`` such an anchor has no
          positive at all and would drop out. Hence ``include_self_positive`` defaults to True for
          nspt/ntpt. For supcon it must be False (the pair (i, i) would be the anchor with itself, a
          constant logit 1/tau that only inflates the loss).
        * Normalisation. ``s`` and ``t`` are L2-normalised inside (``normalize=True``), so any projection
          output can be passed; the dot products are cosine similarities.
        * The teacher is detached inside: no gradient ever reaches it (it is frozen in COCONUT).

    Reduction: mean of ``L_i`` over the anchors with ``|P(i)| >= 1``. Degenerate batches (no anchor, no
    anchor with a positive, batch of one) return ``0 * s.sum()``: a zero that is finite, keeps the graph
    and backpropagates zeros. A single-class batch (no negatives) is still defined, since the positives
    are in the denominator. The denominator is a log-sum-exp, so tiny temperatures cannot overflow.

    Args:
        variant: "nspt", "supcon" or "ntpt".
        temperature: tau > 0 (the paper's value is not published; tune it).
        include_self_positive: whether ``t_i`` belongs to P(i) (nspt/ntpt); None picks the default above.
        normalize: L2-normalise ``s`` and ``t`` along D before the dot products.

    Shapes:
        student ``[B, D]`` float; teacher ``[B, D]`` (may be None for supcon, where it is ignored);
        labels ``[B]`` integer; anchor_mask ``[B]`` bool (None: every sample is an anchor).
        Returns a scalar tensor.

    Raises:
        ValueError: unknown variant, temperature <= 0, ``include_self_positive=True`` with supcon,
            wrong dims/dtypes or mismatched shapes, missing teacher for nspt/ntpt.
    """

    def __init__(
        self,
        variant: str = "nspt",
        temperature: float = 0.1,
        include_self_positive: Optional[bool] = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.temperature = check_temperature(temperature)
        if include_self_positive is None:
            include_self_positive = variant != "supcon"
        if variant == "supcon" and include_self_positive:
            raise ValueError(
                "include_self_positive=True is not allowed with variant 'supcon': the self pair would be the "
                "anchor with itself; use variant 'nspt' or 'ntpt' for a teacher self-positive"
            )
        self.include_self_positive = bool(include_self_positive)
        self.normalize = bool(normalize)

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, temperature={self.temperature}, "
            f"include_self_positive={self.include_self_positive}, normalize={self.normalize}"
        )

    @float32_loss
    def forward(
        self,
        student: torch.Tensor,
        teacher: Optional[torch.Tensor],
        labels: torch.Tensor,
        anchor_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        # --- checks
        check_embeddings("student", student)
        batch = student.shape[0]
        if self.variant != "supcon":
            if teacher is None:
                raise ValueError(f"variant {self.variant!r} needs the teacher embeddings, got teacher=None")
            check_embeddings("teacher", teacher)
            check_same_shape("student", student, "teacher", teacher)
        check_index_vector("labels", labels, batch)
        if anchor_mask is None:
            anchor_mask = torch.ones(batch, dtype=torch.bool, device=student.device)
        check_bool_mask("anchor_mask", anchor_mask, batch)

        # --- embeddings: normalised student, normalised + detached teacher
        s = F.normalize(student, dim=1) if self.normalize else student
        if self.variant == "supcon":
            pos_bank, neg_bank = s, s
        else:
            t = teacher.detach()
            t = F.normalize(t, dim=1) if self.normalize else t
            pos_bank = t
            neg_bank = t if self.variant == "ntpt" else s

        # --- positive / negative masks over the whole batch, [B, B] (row = anchor, column = candidate)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(batch, dtype=torch.bool, device=student.device)
        pos_mask = same if self.include_self_positive else same & ~eye
        neg_mask = ~same  # the anchor itself has its own label, so it is never a negative

        # --- anchors that count: in the mask and with >= 1 positive
        rows = anchor_mask & pos_mask.any(dim=1)
        if not bool(rows.any()):
            return student.sum() * 0.0

        # --- logits of the kept anchors against both banks, [A, B] each
        s_anchor = s[rows]
        pos_logits = s_anchor @ pos_bank.T / self.temperature
        neg_logits = s_anchor @ neg_bank.T / self.temperature
        pos_mask, neg_mask = pos_mask[rows], neg_mask[rows]

        # --- log of the denominator: log-sum-exp over positives and negatives, [A, 2B] -> [A, 1]
        minus_inf = torch.finfo(pos_logits.dtype).min  # finite, so masked entries never give inf - inf
        denom_logits = torch.cat(
            [pos_logits.masked_fill(~pos_mask, minus_inf), neg_logits.masked_fill(~neg_mask, minus_inf)], dim=1
        )
        log_denominator = torch.logsumexp(denom_logits, dim=1, keepdim=True)

        # --- per-anchor mean of -log p over its positives, then the mean over anchors
        log_prob = pos_logits - log_denominator  # [A, B]
        n_pos = pos_mask.sum(dim=1)  # >= 1 for every kept anchor
        per_anchor = -torch.where(pos_mask, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / n_pos
        return per_anchor.mean()
