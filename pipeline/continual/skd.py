"""Sequence-level knowledge distillation on rehearsal samples (Cappellazzo et al., the COCONUT authors).

At the end of task t-1 the model (the next task's teacher) greedily decodes every rehearsal sample and
the token sequences are stored (saved with the checkpoint, keyed by the sample's index in the training
split). During task t the student gets an extra teacher-forced cross-entropy towards these
pseudo-transcripts, on rehearsal samples only: L = CE_seq2seq + lambda_skd * L_SKD.
"""

from __future__ import annotations

import torch

from pipeline.data.prepared import to_inputs
from pipeline.losses import SequenceKDLoss
from pipeline.models.slu import SLUModel, SLUOutput, trim_tokens


class SequenceKD:
    def __init__(self, lambda_skd: float, pad_id: int, length: int):
        self.loss = SequenceKDLoss(pad_id)
        self.lambda_skd, self.pad_id, self.length = lambda_skd, pad_id, length
        self.index = torch.zeros(0, dtype=torch.long)  # [N] training-split indices
        self.tokens = torch.zeros(0, length, dtype=torch.long)  # [N, length] pseudo-transcripts

    def lookup(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(found [B] bool, rows [B, length]) of stored pseudo-transcripts for the batch's sample indices."""
        index = index.cpu()
        pos = torch.searchsorted(self.index, index).clamp_max(max(len(self.index) - 1, 0))
        found = (self.index[pos] == index) if len(self.index) else torch.zeros_like(index, dtype=torch.bool)
        return found, self.tokens[pos] if len(self.index) else torch.zeros(len(index), self.length, dtype=torch.long)

    def penalty(self, model: SLUModel, out: SLUOutput, index, rehearsal: torch.Tensor, autocast) -> dict:
        """The S-KD term of a batch whose forward gave ``out``: the rehearsal samples' encoder states are
        decoded again, teacher-forced on their pseudo-transcripts (no second encoder pass)."""
        found, rows = self.lookup(index)
        sel = rehearsal.cpu() & found
        if not bool(sel.any()):
            return {}
        dev = out.memory.device
        pseudo = trim_tokens(rows[sel].to(dev), self.pad_id)  # [n, L]
        sel = sel.to(dev)
        with autocast():
            logits = model.teacher_forced(out.memory[sel], out.memory_pad[sel], out.audio_pooled[sel], pseudo)  # [n, L-1, V]
        return {"skd": self.lambda_skd * self.loss(logits, pseudo[:, 1:])}  # computed in float32 by SequenceKDLoss

    @torch.no_grad()
    def make_targets(self, model: SLUModel, samples: list[tuple], allowed: torch.Tensor, device, batch_size: int) -> None:
        """Decode ``samples`` (dataset items of the rehearsal buffer) with ``model`` and store the sequences."""
        was_training = model.training
        model.eval()
        index, rows = [], []
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            feats, lens = to_inputs(chunk, device)
            _, seq = model.predict(feats, lens, allowed.to(device), decode=True)
            padded = torch.full((len(chunk), self.length), self.pad_id, dtype=torch.long)
            padded[:, : seq.shape[1]] = seq[:, : self.length].cpu()
            rows.append(padded)
            index += [int(s[4]) for s in chunk]
        model.train(was_training)
        order = torch.tensor(index, dtype=torch.long).argsort()
        self.index = torch.tensor(index, dtype=torch.long)[order]
        self.tokens = torch.cat(rows)[order] if rows else self.tokens

    def state(self) -> dict[str, torch.Tensor]:
        return {"index": self.index, "tokens": self.tokens}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.index, self.tokens = state["index"].long(), state["tokens"].long()
