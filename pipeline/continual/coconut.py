"""COCONUT's extra loss terms (Cappellazzo, Falavigna, Brutti, Ravanelli: "Continual contrastive spoken
language understanding"): a supervised contrastive term on rehearsal samples against a frozen teacher
(NSPT; or the SupCon / NTPT forms for the ablation) and an audio-text InfoNCE term (MM) on the current
task's samples. Total: L = CE_seq2seq + lambda_c * L_contrastive + lambda_mm * L_MM.

Embeddings are the L2-normalised outputs of the projection heads: audio = head(mean of encoder states),
text = head(mean of the decoder's token embeddings of the transcript words). The teacher is the model as
it was at the end of the previous task (frozen); it gives the positives of NSPT/NTPT.
"""

from __future__ import annotations

import copy

import torch

from pipeline.losses import MultimodalInfoNCELoss, RehearsalContrastiveLoss
from pipeline.models.encoder import masked_mean
from pipeline.models.slu import SLUModel, SLUOutput


def frozen_copy(model: SLUModel) -> SLUModel:
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def text_ids(tokens: torch.Tensor) -> torch.Tensor:
    """[B] id per distinct token row: utterances with the same transcript share an id (MM false negatives)."""
    return torch.unique(tokens, dim=0, return_inverse=True)[1]


class Coconut:
    def __init__(self, variant: str, tau: float, lambda_contrastive: float, mm: bool, tau_mm: float, lambda_mm: float):
        self.contrastive = RehearsalContrastiveLoss(variant, tau) if variant != "none" else None
        self.mm = MultimodalInfoNCELoss(tau_mm) if mm else None
        self.lambda_contrastive, self.lambda_mm = lambda_contrastive, lambda_mm
        self.teacher: SLUModel | None = None

    @property
    def needs_teacher(self) -> bool:
        """NSPT and NTPT take their positives from the teacher; SupCon uses the student alone."""
        return self.contrastive is not None and self.contrastive.variant != "supcon"

    def start_task(self, model: SLUModel, has_past: bool) -> None:
        """Freeze a copy of the model as the teacher, if there was a previous task and the variant uses one."""
        self.teacher = frozen_copy(model) if has_past and self.needs_teacher else None

    def penalty(self, model: SLUModel, out: SLUOutput, feats, feat_lens, tokens, y, rehearsal: torch.Tensor) -> dict:
        """The weighted extra terms for one mini-batch; ``rehearsal`` [B] marks buffer samples. Both terms are
        computed in float32 (the losses leave autocast)."""
        terms: dict[str, torch.Tensor] = {}
        student = model.audio_embedding(out.audio_pooled)  # [B, P]
        if self.contrastive is not None and bool(rehearsal.any()):
            teacher = None
            if self.needs_teacher:
                if self.teacher is None:  # rehearsal samples exist only after a previous task, which set the teacher
                    raise RuntimeError(f"COCONUT {self.contrastive.variant}: a batch holds rehearsal samples but there is "
                                       "no teacher (start_task was not called with has_past=True)")
                with torch.no_grad():
                    memory, _, pad = self.teacher.encode(feats, feat_lens)
                    teacher = self.teacher.audio_embedding(masked_mean(memory, pad))
            terms["contrastive"] = self.lambda_contrastive * self.contrastive(student, teacher, y, rehearsal)
        if self.mm is not None:
            current = ~rehearsal
            text = model.text_embedding(tokens)
            terms["mm"] = self.lambda_mm * self.mm(student, text, current, dedupe_by=text_ids(tokens))
        return terms
