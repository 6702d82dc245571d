"""The audio-text contrastive "MM" loss of COCONUT (InfoNCE / CLIP form).

References:
    - COCONUT: U. Cappellazzo, E. Falavigna, A. Brutti, M. Ravanelli, "Continual contrastive spoken
      language understanding", 2023/2024 (the multimodal loss on the current task's samples).
    - InfoNCE: A. van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018;
      CLIP: A. Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021.
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


class MultimodalInfoNCELoss(nn.Module):
    r"""Symmetric audio-text InfoNCE over the B x B similarity matrix (COCONUT's MM loss).

    With L2-normalised audio embeddings ``a`` and text embeddings ``x`` (the text of utterance i is its
    own transcript) and the logits ``S_ij = a_i . x_j / tau``:

    .. math::

        L_{a \to x} = -\frac{1}{B} \sum_i \sum_j Y_{ij} \log \operatorname{softmax}_j(S_{ij}), \qquad
        L_{x \to a} = -\frac{1}{B} \sum_j \sum_i Y_{ij} \log \operatorname{softmax}_i(S_{ij})

    and ``L = (L_{a->x} + L_{x->a}) / 2`` when ``symmetric`` (else ``L_{a->x}``). ``Y`` is the identity
    (plain InfoNCE: the diagonal pairs are the positives, every other transcript in the batch a negative).

    Duplicate transcripts: two utterances of the same phrase in one batch (frequent on FSC, 248
    phrases) are false negatives of each other. With ``dedupe_by`` (one integer text id per sample,
    e.g. the transcript's index), ``Y_ij = [id_i = id_j] / #{k : id_k = id_i}``: a uniform soft target
    over all columns with the same text. Note that the soft cross-entropy is then bounded below by the
    target entropy (mean log of the group sizes), not by 0; its gradient is what matters.

    Sample mask: only the masked-in samples (COCONUT: the current task's) take part; the rows AND
    columns of the others are removed before the similarity matrix is built, so they are neither
    anchors nor negatives. With fewer than 2 samples left there is no negative, and the loss is the
    defined zero ``0 * (a.sum() + x.sum())`` (finite, backpropagates zeros).

    Args:
        temperature: tau > 0 (fixed; no learnable temperature).
        symmetric: average both directions (default) or use audio -> text only.
        normalize: L2-normalise both embeddings along D inside (default; then any projection output
            can be passed).

    Shapes:
        audio ``[B, D]``, text ``[B, D]`` float; sample_mask ``[B]`` bool or None; dedupe_by ``[B]``
        integer or None. Returns a scalar tensor.

    Raises:
        ValueError: temperature <= 0, wrong dims/dtypes, mismatched shapes.
    """

    def __init__(self, temperature: float = 0.07, symmetric: bool = True, normalize: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.symmetric = bool(symmetric)
        self.normalize = bool(normalize)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}, normalize={self.normalize}"

    @float32_loss
    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        sample_mask: Optional[torch.Tensor] = None,
        dedupe_by: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        # --- checks
        check_embeddings("audio", audio)
        check_embeddings("text", text)
        check_same_shape("audio", audio, "text", text)
        batch = audio.shape[0]
        if sample_mask is not None:
            check_bool_mask("sample_mask", sample_mask, batch)
        if dedupe_by is not None:
            check_index_vector("dedupe_by", dedupe_by, batch)

        # --- keep the masked-in samples only (rows and columns), [B, D] -> [n, D]
        a, x, ids = audio, text, dedupe_by
        if sample_mask is not None:
            a, x = a[sample_mask], x[sample_mask]
            ids = ids[sample_mask] if ids is not None else None
        n = a.shape[0]
        if n < 2:
            return (audio.sum() + text.sum()) * 0.0

        # --- logits, [n, n]: row = audio i, column = text j
        if self.normalize:
            a, x = F.normalize(a, dim=1), F.normalize(x, dim=1)
        logits = a @ x.T / self.temperature

        # --- targets, [n, n]: the diagonal, or uniform over same-text columns
        if ids is None:
            targets = torch.eye(n, dtype=logits.dtype, device=logits.device)
        else:
            same = (ids[:, None] == ids[None, :]).to(logits.dtype)
            targets = same / same.sum(dim=1, keepdim=True)  # symmetric: same-id groups are cliques

        # --- cross-entropy with probability targets, one or both directions
        loss = F.cross_entropy(logits, targets)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T, targets.T))
        return loss
