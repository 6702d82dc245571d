"""COCONUT's extra loss terms (Cappellazzo, Falavigna, Brutti, Ravanelli: "Continual contrastive spoken
language understanding"): a supervised contrastive term on rehearsal samples against a frozen teacher
(NSPT; or the SupCon / NTPT forms for the ablation) and an audio-text InfoNCE term (MM) on the current
task's samples. Total: L = CE_seq2seq + lambda_c * L_contrastive + lambda_mm * L_MM.

Embeddings are the L2-normalised outputs of the projection heads: audio = head(mean of encoder states),
text = head(mean of the decoder's token embeddings of the transcript words). The teacher is the model as
it was at the end of the previous task (frozen); it gives the positives of NSPT/NTPT.

With a frozen text target (recipe ``mm_target: frozen_text``) the MM term's text side is instead the frozen
text tower's (MiniLM) embedding of each utterance's transcript, read from the embed stage's cache
(:func:`frozen_transcripts`), and the audio side goes through a projection head of its own into that space
(``model.frozen_text_head``, :func:`add_frozen_text_head`): L_MM = CWCL(head(audio pooled), frozen rows)
(``mm_loss: cwcl``, Srinivasa et al. 2023: paraphrases of one intent are soft positives by the frozen
tower's own similarity) or the one-hot InfoNCE against the same frozen rows (``infonce``, LiT-style; the
ablation that isolates the target from the loss). Both are summed over their two directions
(pipeline.losses.cwcl). The frozen rows are a fixed tensor, never a parameter.
"""

from __future__ import annotations

import copy

import torch

from pipeline.data.embeddings import EmbeddingSet
from pipeline.errors import DataError
from pipeline.losses import ContrastiveLoss, CWCLLoss, MultimodalInfoNCELoss, RehearsalContrastiveLoss
from pipeline.models.encoder import masked_mean
from pipeline.models.heads import projection_head
from pipeline.models.slu import SLUModel, SLUOutput

#: the embed stage's cached set that holds every transcript's frozen text embedding
FROZEN_TEXT = ("text", "transcripts")


def frozen_copy(model: SLUModel) -> SLUModel:
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def text_ids(tokens: torch.Tensor) -> torch.Tensor:
    """[B] id per distinct token row: utterances with the same transcript share an id (MM false negatives)."""
    return torch.unique(tokens, dim=0, return_inverse=True)[1]


def frozen_transcripts(cache: EmbeddingSet, meta: list[dict], where: str) -> torch.Tensor:
    """float32 [N, D]: row i is the cached frozen embedding of utterance i's transcript (``meta``: the
    prepared split's rows, in order; ``cache``: the transcripts set, whose ``refs["train"]`` gives each
    utterance's row). A cache made for other prepared data is one line naming ``where``."""
    refs = cache.refs.get("train")
    stale = f"{where}: made for other prepared data; re-run the embed stage (dvc repro embed)"
    if refs is None or len(refs) != len(meta):
        raise DataError(f"{stale} (it lists {len(refs or [])} training utterances, the prepared data {len(meta)})")
    texts = cache.texts or cache.ids
    bad = next((i for i, (r, m) in enumerate(zip(refs, meta)) if texts[r] != m["transcript"]), None)
    if bad is not None:
        raise DataError(f"{stale} (training utterance {bad}: {texts[refs[bad]]!r}, not {meta[bad]['transcript']!r})")
    return cache.emb[torch.tensor(refs, dtype=torch.long)].float()


def add_frozen_text_head(model: SLUModel, dim: int, seed: int) -> None:
    """Give ``model`` the projection head from the pooled audio states into the frozen text space
    (``model.frozen_text_head``, d_model -> ``dim``), initialised from ``seed`` alone: the global RNG is left
    as it was, so nothing else a run draws changes. A submodule, so it is optimised, clipped and
    checkpointed with the rest of the model; only recipes with ``mm_target: frozen_text`` have it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.frozen_text_head = projection_head(model.start_proj.in_features, dim)


class Coconut:
    def __init__(self, variant: str, tau: float, lambda_contrastive: float, mm: bool, tau_mm: float, lambda_mm: float,
                 mm_loss: str = "infonce", frozen_text: torch.Tensor | None = None):
        """``frozen_text``: float [N, D], row i the frozen text embedding of training utterance i (the MM term
        then aligns the audio to it through ``model.frozen_text_head``); None: the model's own text embedding."""
        self.contrastive = RehearsalContrastiveLoss(variant, tau) if variant != "none" else None
        if frozen_text is None:
            if mm_loss != "infonce":
                raise ValueError(f"COCONUT: mm_loss {mm_loss!r} needs the frozen text target (frozen_text)")
            self.mm = MultimodalInfoNCELoss(tau_mm) if mm else None
        else:
            self.mm = {"cwcl": CWCLLoss, "infonce": ContrastiveLoss}[mm_loss](tau_mm) if mm else None
        # a fixed tensor, never a parameter (no gradient, no optimiser state)
        self.frozen_text = None if frozen_text is None else frozen_text.detach().float().requires_grad_(False)
        self.lambda_contrastive, self.lambda_mm = lambda_contrastive, lambda_mm
        self.teacher: SLUModel | None = None

    @property
    def needs_teacher(self) -> bool:
        """NSPT and NTPT take their positives from the teacher; SupCon uses the student alone."""
        return self.contrastive is not None and self.contrastive.variant != "supcon"

    def start_task(self, model: SLUModel, has_past: bool) -> None:
        """Freeze a copy of the model as the teacher, if there was a previous task and the variant uses one."""
        self.teacher = frozen_copy(model) if has_past and self.needs_teacher else None

    def frozen_rows(self, index: torch.Tensor) -> torch.Tensor:
        """[B, D]: the frozen text embeddings of the training utterances at ``index`` [B]."""
        if self.frozen_text.device != index.device:
            self.frozen_text = self.frozen_text.to(index.device)
        return self.frozen_text[index]

    def penalty(self, model: SLUModel, out: SLUOutput, feats, feat_lens, tokens, y, rehearsal: torch.Tensor,
                index: torch.Tensor | None = None) -> dict:
        """The weighted extra terms for one mini-batch; ``rehearsal`` [B] marks buffer samples, ``index`` [B]
        the samples' positions in the training split (needed with a frozen text target). Both terms are
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
            if self.frozen_text is None:
                text = model.text_embedding(tokens)
                terms["mm"] = self.lambda_mm * self.mm(student, text, current, dedupe_by=text_ids(tokens))
            else:
                if index is None:
                    raise RuntimeError("COCONUT: the frozen text target needs the batch's sample indices")
                audio = model.frozen_text_head(out.audio_pooled[current])
                terms["mm"] = self.lambda_mm * self.mm(audio, self.frozen_rows(index[current]))
        return terms
