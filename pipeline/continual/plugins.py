"""Avalanche plugins: each wires one algorithm (a plain class elsewhere in this package) to the hooks.

Avalanche leaves implicit which strategy fields a hook reads or changes; each plugin lists them.
Plugins run in list order at every hook, so ``ReplayPlugin`` must come before ``SKDPlugin`` (the
pseudo-transcripts are made for the buffer as updated at the end of the task).
"""

from __future__ import annotations

import time

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import ReplayPlugin

from pipeline.continual.coconut import Coconut
from pipeline.continual.regularizers import IntentLwF, OnlineEWC
from pipeline.continual.skd import SequenceKD


def _add_terms(strategy, terms: dict) -> None:
    for name, value in terms.items():
        strategy.loss = strategy.loss + value
        strategy.loss_terms[name] = strategy.loss_terms.get(name, 0.0) + float(value.detach())


class BufferReplayPlugin(ReplayPlugin):
    """Avalanche's ReplayPlugin, updating the storage policy through ``post_adapt`` (its own
    ``after_training_exp`` calls the deprecated ``update``). before_training_exp (inherited): replaces
    strategy.dataloader by a ReplayDataLoader (current batch + rehearsal batch). after_training_exp: reads
    strategy.experience; updates the buffer."""

    def after_training_exp(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)


class PastClasses:
    """Which classes belong to previous tasks; a sample of one of them in a class-incremental batch
    is a rehearsal sample (``torch.isin(mb_y, past)``, exact in class-incremental learning)."""

    def __init__(self, past: list[int]):
        self.past = torch.tensor(sorted(past), dtype=torch.long)

    def mask(self, y: torch.Tensor) -> torch.Tensor:
        return torch.isin(y, self.past.to(y.device))


class CoconutPlugin(SupervisedPlugin):
    """before_training_exp: reads strategy.model, sets the algorithm's teacher.
    before_backward: reads strategy.model, .out, .mb_x, .mb_feat_len, .mb_tokens, .mb_y, .mb_index (the samples'
    positions in the training split: a frozen text target's rows); adds to strategy.loss."""

    def __init__(self, algo: Coconut, past: PastClasses):
        super().__init__()
        self.algo, self.past = algo, past

    def before_training_exp(self, strategy, **kwargs):
        self.algo.start_task(strategy.model, has_past=len(self.past.past) > 0)

    def before_backward(self, strategy, **kwargs):
        with strategy.autocast():
            terms = self.algo.penalty(strategy.model, strategy.out, strategy.mb_x, strategy.mb_feat_len,
                                      strategy.mb_tokens, strategy.mb_y, self.past.mask(strategy.mb_y),
                                      strategy.mb_index)
        _add_terms(strategy, terms)


class SKDPlugin(SupervisedPlugin):
    """before_backward: reads strategy.model, .out (encoder states), .mb_index, .mb_y; adds to strategy.loss.
    after_training_exp: reads the replay plugin's updated buffer and strategy.model; stores pseudo-transcripts."""

    def __init__(self, algo: SequenceKD, past: PastClasses, storage_policy, seen: list[int]):
        super().__init__()
        self.algo, self.past, self.policy, self.seen = algo, past, storage_policy, seen

    def before_backward(self, strategy, **kwargs):
        terms = self.algo.penalty(strategy.model, strategy.out, strategy.mb_index, self.past.mask(strategy.mb_y),
                                  strategy.autocast)
        _add_terms(strategy, terms)

    def after_training_exp(self, strategy, **kwargs):
        samples = [item for item in self.policy.buffer]
        allowed = torch.tensor(self.seen, dtype=torch.long)
        self.algo.make_targets(strategy.model, samples, allowed, strategy.device, strategy.eval_mb_size)


class LwFPlugin(SupervisedPlugin):
    """before_training_exp: reads strategy.model (teacher copy). before_backward: reads strategy.model, .out,
    .mb_x, .mb_feat_len, .mb_tokens; adds to strategy.loss."""

    def __init__(self, algo: IntentLwF, past: PastClasses):
        super().__init__()
        self.algo, self.past = algo, past

    def before_training_exp(self, strategy, **kwargs):
        self.algo.start_task(strategy.model, self.past.past)

    def before_backward(self, strategy, **kwargs):
        with strategy.autocast():
            terms = self.algo.penalty(strategy.model, strategy.out, strategy.mb_x, strategy.mb_feat_len, strategy.mb_tokens)
        _add_terms(strategy, terms)


class EWCPlugin(SupervisedPlugin):
    """before_backward: reads strategy.model; adds to strategy.loss.
    after_training_exp: reads strategy.model, .experience.dataset, .train_mb_size; accumulates the Fisher."""

    def __init__(self, algo: OnlineEWC):
        super().__init__()
        self.algo = algo

    def before_backward(self, strategy, **kwargs):
        _add_terms(strategy, self.algo.penalty(strategy.model))

    def after_training_exp(self, strategy, **kwargs):
        loader = torch.utils.data.DataLoader(strategy.experience.dataset, batch_size=strategy.train_mb_size, shuffle=False)
        self.algo.end_task(strategy.model, loader, strategy.device)


class ProgressPlugin(SupervisedPlugin):
    """A tqdm bar per epoch; per-epoch loss and accuracy history in ``self.history``.

    before_training_epoch / after_training_iteration / after_training_epoch: read strategy.loss, .mb_output,
    .mb_y, .model, .clock; reset strategy.loss_terms.
    """

    def __init__(self, total_epochs: int, first_epoch: int, enabled: bool, label: str):
        super().__init__()
        self.total, self.epoch, self.enabled, self.label = total_epochs, first_epoch, enabled, label
        self.history: list[dict] = []

    def before_training_epoch(self, strategy, **kwargs):
        from tqdm import tqdm

        strategy.loss_terms = {}
        self.n = self.loss_sum = self.correct = 0
        self.t0 = time.time()
        self.bar = tqdm(total=len(strategy.dataloader), desc=f"{self.label} epoch {self.epoch + 1}/{self.total}",
                        unit="batch", disable=not self.enabled, leave=False)

    def after_training_iteration(self, strategy, **kwargs):
        b = len(strategy.mb_y)
        pred = strategy.model.class_logits(strategy.mb_output.detach()).argmax(1)
        self.correct += int((pred == strategy.mb_y).sum())
        self.loss_sum += float(strategy.loss.detach()) * b
        self.n += b
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.loss_sum / self.n:.3f}", acc=f"{self.correct / self.n:.3f}")

    def after_training_epoch(self, strategy, **kwargs):
        self.bar.close()
        terms = {k: v / max(len(strategy.dataloader), 1) for k, v in strategy.loss_terms.items()}
        self.history.append({"epoch": self.epoch + 1, "loss": self.loss_sum / max(self.n, 1),
                             "train_acc": self.correct / max(self.n, 1), "seconds": time.time() - self.t0, **terms})
        self.epoch += 1
