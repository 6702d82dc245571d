"""The Avalanche strategy for the seq2seq SLU model.

A mini-batch (``strategy.mbatch``) is ``[feats, y, feat_len, tokens, index, task_label]``
(see :mod:`pipeline.continual.data`); Avalanche's ``mb_x``/``mb_y``/``mb_task_id`` are its first, second
and last entries. ``forward`` runs the teacher-forced model and keeps the whole output in
``strategy.out`` (plugins read the pooled encoder states from there); ``mb_output`` holds the token
logits; ``criterion`` is the token cross-entropy plus the weighted intent step (both label-smoothed).
Plugins add their terms to ``strategy.loss`` in ``before_backward``.
"""

from __future__ import annotations

import math

import torch
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from pipeline.core import runtime
from pipeline.models.slu import SLUModel, SLUOutput


class Seq2SeqTemplate(SupervisedTemplate):
    def __init__(self, *, model: SLUModel, optimizer, train_mb_size: int, train_epochs: int, eval_mb_size: int,
                 device: torch.device, plugins: list, grad_clip: float, intent_weight: float,
                 label_smoothing: float = 0.0, lr_schedule: str = "constant", lr_final: float = 1.0):
        super().__init__(
            model=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(), train_mb_size=train_mb_size,
            train_epochs=train_epochs, eval_mb_size=eval_mb_size, device=device, plugins=plugins,
            evaluator=EvaluationPlugin(loggers=[]), eval_every=-1,
        )
        self.grad_clip, self.intent_weight, self.label_smoothing = grad_clip, intent_weight, label_smoothing
        self.lr_schedule, self.lr_final = lr_schedule, lr_final
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        # epochs of this task finished before this process: a resumed run is given only the rest as
        # train_epochs, and the schedule below continues where the killed run stopped
        self.epoch_offset = 0
        self.out: SLUOutput | None = None

    # -- mini-batch fields beyond Avalanche's mb_x / mb_y / mb_task_id
    @property
    def mb_feat_len(self) -> torch.Tensor:
        return self.mbatch[2]

    @property
    def mb_tokens(self) -> torch.Tensor:
        return self.mbatch[3]

    @property
    def mb_index(self) -> torch.Tensor:
        return self.mbatch[4]

    def autocast(self):
        """bf16 autocast on CUDA (mixed precision); a no-op on the CPU."""
        return runtime.autocast(self.device)

    def forward(self):
        with self.autocast():
            self.out = self.model(self.mb_x, self.mb_feat_len, self.mb_tokens)
        return self.out.token_logits

    def criterion(self):
        return self.model.seq2seq_loss(self.mb_output, self.mb_tokens, self.intent_weight, self.label_smoothing)

    def lr_factor(self) -> float:
        """This step's learning rate as a fraction of ``lr``, from the epoch and iteration counters only, so a
        resumed run takes exactly the steps of an uninterrupted one."""
        per_epoch = len(self.dataloader)
        step = (self.epoch_offset + self.clock.train_exp_epochs) * per_epoch + self.clock.train_epoch_iterations
        total = (self.epoch_offset + self.train_epochs) * per_epoch
        return lr_factor(self.lr_schedule, step, total, self.lr_final)

    def optimizer_step(self):
        factor = self.lr_factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()


def lr_factor(schedule: str, step: int, total_steps: int, final: float) -> float:
    """1 for ``constant``; for ``cosine``, 1 at step 0 down to ``final`` at the last step (total_steps - 1)."""
    if schedule == "constant":
        return 1.0
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
