"""Regularisation baselines adapted to the seq2seq model: LwF and EWC.

Avalanche's own LwF and EWC call ``model(x)`` with the input alone; our model also needs the
feature lengths and the teacher-forcing tokens, so the algorithms are written here and wired to
Avalanche's hooks by plugins (pipeline.continual.plugins).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.continual.coconut import frozen_copy
from pipeline.losses import float32_loss
from pipeline.models.slu import SLUModel, SLUOutput


class IntentLwF:
    """Learning without Forgetting (Li & Hoiem 2017) on the intent step.

    L_LwF = alpha * T^2 * KL( softmax(z_teacher / T) || softmax(z_student / T) ), with z the first-step
    class logits restricted to the classes of previous tasks, on every sample of the batch.
    """

    def __init__(self, alpha: float, temperature: float):
        self.alpha, self.temperature = alpha, temperature
        self.teacher: SLUModel | None = None
        self.old_classes = torch.zeros(0, dtype=torch.long)

    def start_task(self, model: SLUModel, old_classes: torch.Tensor) -> None:
        self.old_classes = old_classes
        self.teacher = frozen_copy(model) if len(old_classes) else None

    def penalty(self, model: SLUModel, out: SLUOutput, feats, feat_lens, tokens) -> dict:
        if self.teacher is None:
            return {}
        old = self.old_classes.to(feats.device)
        with torch.no_grad():
            t = self.teacher.class_logits(self.teacher(feats, feat_lens, tokens).token_logits)[:, old]
        s = model.class_logits(out.token_logits)[:, old]
        return {"lwf": self.alpha * self.temperature**2 * softened_kl(s, t, self.temperature)}


@float32_loss
def softened_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL( softmax(teacher / T) || softmax(student / T) ), mean over the batch, in float32 (also under autocast)."""
    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean")


@contextlib.contextmanager
def deterministic_with_grad(model: nn.Module):
    """Eval mode (no dropout, no SpecAugment) for a pass that backpropagates, with the RNN modules in training
    mode and their inter-layer ``dropout`` set to 0: cuDNN's RNN backward refuses a module in eval mode
    ("cudnn RNN backward can only be called in training mode"), and an RNN without dropout computes the same
    function in either mode. Every module's training flag and every RNN's dropout are restored on exit."""
    flags = [(m, m.training) for m in model.modules()]
    rnns = [(m, m.dropout) for m in model.modules() if isinstance(m, nn.RNNBase)]
    model.eval()
    try:
        for rnn, _ in rnns:
            rnn.dropout = 0.0
            rnn.train()
        yield model
    finally:
        for rnn, dropout in rnns:
            rnn.dropout = dropout
        for m, training in flags:
            m.training = training


class OnlineEWC:
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017), online form (Schwarz et al. 2018) with decay 1.

    After each task: F <- F + F_task, theta* <- theta, where F_task is the diagonal empirical Fisher
    (mean over mini-batches of the squared gradients of the token cross-entropy). During later tasks:
    L_EWC = lambda / 2 * sum_k F_k (theta_k - theta*_k)^2.
    """

    def __init__(self, ewc_lambda: float):
        self.ewc_lambda = ewc_lambda
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def penalty(self, model: SLUModel) -> dict:
        if not self.fisher:
            return {}
        total = sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum() for n, p in model.named_parameters() if n in self.fisher)
        return {"ewc": self.ewc_lambda / 2 * total}

    def end_task(self, model: SLUModel, batches, device) -> None:
        """Accumulate the Fisher of this task from ``batches`` (an iterable of dataset mini-batches)."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        count = 0
        with deterministic_with_grad(model):  # the Fisher of the deterministic model
            for batch in batches:
                feats, _, lens, tokens = (b.to(device) for b in batch[:4])
                model.zero_grad()
                out = model(feats, lens, tokens)
                model.token_loss(out.token_logits, tokens).backward()
                for n, p in params.items():
                    if p.grad is not None:
                        fisher[n] += p.grad.detach() ** 2
                count += 1
        model.zero_grad()
        for n in fisher:
            self.fisher[n] = self.fisher.get(n, 0) + fisher[n] / max(count, 1)
            self.anchor[n] = params[n].detach().clone()

    def state(self) -> dict[str, torch.Tensor]:
        return {**{f"fisher.{n}": t for n, t in self.fisher.items()}, **{f"anchor.{n}": t for n, t in self.anchor.items()}}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.fisher = {k[len("fisher."):]: v for k, v in state.items() if k.startswith("fisher.")}
        self.anchor = {k[len("anchor."):]: v for k, v in state.items() if k.startswith("anchor.")}
