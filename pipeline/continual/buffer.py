"""The rehearsal buffer: Avalanche storage policies, saved and restored as sample indices.

``random``: Avalanche's ClassBalancedBuffer (reservoir sampling per class, memory split evenly over the
classes seen so far). ``herding``: Avalanche's ParametricBuffer grouped by class with iCaRL herding on
the model's pooled encoder states, a class's exemplars kept in herding order and shrunk to a prefix of it. Either is written to the checkpoint as, per class, the indices of its
samples in the training split (plus the reservoir weights), and rebuilt from the training dataset.
"""

from __future__ import annotations

import torch
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    HerdingSelectionStrategy,
    ParametricBuffer,
    ReservoirSamplingBuffer,
    _ParametricSingleBuffer,
)
from torch.utils.data import DataLoader

from pipeline.models.encoder import masked_mean


def buffer_capacity(size: float, n_train: int) -> int:
    """A fraction (< 1) of the training set or a count."""
    return max(1, round(size * n_train)) if size < 1 else int(size)


class EncoderHerding(HerdingSelectionStrategy):
    """iCaRL herding on the mean-pooled encoder states of our model (Avalanche's feature extractor
    would call the model with the input alone)."""

    def __init__(self, model):  # no FeatureExtractorBackbone: we pool the encoder ourselves
        self.model = model

    @torch.no_grad()
    def make_sorted_indices(self, strategy, data) -> list[int]:
        if len(data) == 0:
            return []
        was_training = self.model.training
        self.model.eval()
        feats = []
        for batch in DataLoader(data, batch_size=strategy.eval_mb_size, collate_fn=getattr(data, "collate_fn", None)):
            memory, _, pad = self.model.encode(batch[0].to(strategy.device), batch[2].to(strategy.device))
            feats.append(masked_mean(memory, pad).float().cpu())
        self.model.train(was_training)
        return self.make_sorted_indices_from_features(torch.cat(feats))


class HerdingBuffer(ParametricBuffer):
    """iCaRL's exemplar management (Rebuffi et al. 2017, Algorithms 4 and 5) on Avalanche's ParametricBuffer
    grouped by class: a new class's samples are herded once, around the mean of all of them, and the first
    ones of that order kept; a class that must give room keeps a prefix of its order (ReduceExemplarSet).

    ParametricBuffer.post_adapt would herd each class's kept samples again at every resize, around their
    own mean: the order changes after the first task and a later shrink may keep other samples.
    after_training_exp (via post_adapt): reads exp.dataset, strategy.eval_mb_size, .device.
    """

    def post_adapt(self, agent, exp):
        new_groups = self._make_groups(agent, exp.dataset)
        self.seen_groups.update(new_groups.keys())
        sizes = dict(zip(self.seen_groups, self.get_group_lengths(len(self.seen_groups))))
        for c, data in new_groups.items():
            if c in self.buffer_groups:  # a class seen again (joint): herd its kept and new samples together
                data = self.buffer_groups[c].buffer.concat(data)
            group = _ParametricSingleBuffer(sizes[c], self.selection_strategy)
            group.buffer = data.subset(self.selection_strategy.make_sorted_indices(agent, data)[: sizes[c]])
            self.buffer_groups[c] = group
        for c, group in self.buffer_groups.items():
            group.max_size = sizes[c]
            group.buffer = group.buffer.subset(list(range(min(sizes[c], len(group.buffer)))))


def make_storage_policy(selection: str, capacity: int, model):
    if selection == "herding":
        return HerdingBuffer(capacity, groupby="class", selection_strategy=EncoderHerding(model))
    return ClassBalancedBuffer(capacity, adaptive_size=True)


def buffer_state(policy) -> dict[str, torch.Tensor]:
    """{"c<class>.index": [n] training-split indices, "c<class>.weight": [n] reservoir weights}."""
    state = {}
    for c, group in sorted(policy.buffer_groups.items()):
        state[f"c{c}.index"] = torch.tensor([int(item[4]) for item in group.buffer], dtype=torch.long)
        weights = getattr(group, "_buffer_weights", None)
        state[f"c{c}.weight"] = weights.clone() if weights is not None else torch.zeros(len(group.buffer))
    return state


def load_buffer_state(policy, state: dict[str, torch.Tensor], train_dataset) -> None:
    """Rebuild ``policy``'s groups from :func:`buffer_state` output; ``train_dataset`` is the Avalanche
    dataset of the whole training split (item index = position)."""
    classes = sorted({int(k.split(".")[0][1:]) for k in state})
    for c in classes:
        index, weight = state[f"c{c}.index"], state[f"c{c}.weight"]
        if isinstance(policy, ClassBalancedBuffer):
            group = ReservoirSamplingBuffer(len(index))
            group._buffer_weights = weight.clone()
        else:
            group = _ParametricSingleBuffer(len(index), policy.selection_strategy)
        group.buffer = train_dataset.subset(index.tolist())
        policy.buffer_groups[c] = group
    seen = policy.seen_classes if isinstance(policy, ClassBalancedBuffer) else policy.seen_groups
    seen.update(classes)
