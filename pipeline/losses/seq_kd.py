"""Sequence-level knowledge distillation (S-KD) towards stored teacher pseudo-transcripts.

References:
    - COCONUT: U. Cappellazzo, E. Falavigna, A. Brutti, M. Ravanelli, "Continual contrastive spoken
      language understanding", 2023/2024 (COCONUT + S-KD is its strongest combination).
    - Y. Kim, A. M. Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_bool_mask
from pipeline.losses._precision import float32_loss


class SequenceKDLoss(nn.Module):
    r"""Token cross-entropy of the student decoder towards the teacher's pseudo-transcripts.

    At the end of task t-1 the teacher decodes the rehearsal samples and the token sequences are stored;
    during task t the student, teacher-forced on those pseudo-targets, gets

    .. math::

        L_{SKD} = \frac{1}{|T|} \sum_{(b, l) \in T} -\log \operatorname{softmax}(z_{b,l})[\hat y_{b,l}],
        \qquad T = \{(b, l) : m_b \wedge \hat y_{b,l} \ne \mathrm{pad}\}

    i.e. the mean over all non-pad target tokens of the masked-in (rehearsal) samples -- exactly
    ``F.cross_entropy(z[m], y[m], ignore_index=pad)`` (token-level mean, no label smoothing: the targets
    are already the teacher's hard decisions). ``logits[b, l]`` must be the prediction for
    ``pseudo_targets[b, l]`` (shift for teacher forcing before calling). With no token left (no sample
    masked in, or all padding) the loss is a defined zero that keeps the graph.

    Args:
        pad_index: the padding token id in ``pseudo_targets`` (ignored positions).

    Shapes:
        logits ``[B, L, V]`` float; pseudo_targets ``[B, L]`` integer in ``[0, V)`` or ``pad_index``;
        sample_mask ``[B]`` bool (None: all samples). Returns a scalar tensor.

    Raises:
        ValueError: non-integer pad_index, wrong dims/dtypes, mismatched B/L, target ids outside [0, V).
    """

    def __init__(self, pad_index: int) -> None:
        super().__init__()
        if isinstance(pad_index, bool) or not isinstance(pad_index, int):
            raise ValueError(f"pad_index must be an integer token id, got {pad_index!r}")
        self.pad_index = pad_index

    def extra_repr(self) -> str:
        return f"pad_index={self.pad_index}"

    @float32_loss
    def forward(
        self,
        logits: torch.Tensor,
        pseudo_targets: torch.Tensor,
        sample_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        # --- checks
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or not logits.is_floating_point():
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits must be a float tensor of shape [B, L, V], got {shape}")
        batch, length, vocab = logits.shape
        if not isinstance(pseudo_targets, torch.Tensor) or pseudo_targets.shape != (batch, length):
            shape = tuple(pseudo_targets.shape) if isinstance(pseudo_targets, torch.Tensor) else "?"
            raise ValueError(
                f"pseudo_targets must have shape [B, L] = {(batch, length)} to match logits, got {shape} "
                "(pad the pseudo-transcripts to the decoder length)"
            )
        if pseudo_targets.is_floating_point() or pseudo_targets.dtype == torch.bool:
            raise ValueError(f"pseudo_targets must be an integer tensor (torch.long), got {pseudo_targets.dtype}")
        if sample_mask is not None:
            check_bool_mask("sample_mask", sample_mask, batch)
        real = pseudo_targets != self.pad_index
        if bool(((pseudo_targets < 0) | (pseudo_targets >= vocab))[real].any()):
            raise ValueError(
                f"pseudo_targets hold token ids outside [0, {vocab}) that are not pad_index={self.pad_index}: "
                "vocabulary or pad index mismatch between teacher and student"
            )

        # --- targets: masked-out samples become all padding, so ignore_index drops them, [B, L]
        targets = pseudo_targets.long()
        if sample_mask is not None:
            targets = targets.masked_fill(~sample_mask[:, None], self.pad_index)
        n_tokens = (targets != self.pad_index).sum()

        # --- summed token CE, then the mean over counted tokens ([B, L, V] -> [B*L, V])
        total = F.cross_entropy(
            logits.reshape(batch * length, vocab),
            targets.reshape(batch * length),
            ignore_index=self.pad_index,
            reduction="sum",
        )
        return total / n_tokens.clamp(min=1)
