"""Process topology for :mod:`pipeline.core.trainer`: the one module that changes when training runs under
``torchrun``.

Today every function is the single-process implementation (world size 1, rank 0): the model is not
wrapped, the training sampler is a seeded random permutation, evaluation walks the valid split in order,
and metrics need no reduction. The trainer calls nothing else about processes, so a multi-process version
replaces the bodies below (``init_process_group``, ``DistributedDataParallel``, ``DistributedSampler``,
``all_reduce``) and leaves the trainer as it is.

Contract the trainer relies on (a multi-process version must keep it):

- :func:`is_main` alone writes checkpoints and shows progress; every rank reads a partial state to resume.
- :func:`train_sampler` depends only on the dataset and the seed it is given (the trainer passes one seed
  per epoch), so the order of an epoch is the same after a resume.
- :func:`reduce_metrics` returns the same numbers on every rank, so every rank selects the same epoch.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, RandomSampler, Sampler, SequentialSampler


def rank() -> int:
    return 0


def world_size() -> int:
    return 1


def is_main() -> bool:
    """The process that writes files and shows progress."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (after the main one wrote a checkpoint that the others may read)."""


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the training step runs (under torchrun: DistributedDataParallel around ``model``)."""
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside :func:`wrap`'s result (state_dicts and evaluation use it)."""
    return getattr(model, "module", model)


def train_sampler(dataset: Dataset, seed: int) -> Sampler:
    """This rank's share of a training epoch, shuffled by ``seed`` alone (a fresh generator, never torch's
    global one, so drawing the order does not move the RNG stream that dropout and augmentations use)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return RandomSampler(dataset, generator=generator)


def eval_sampler(dataset: Dataset) -> Sampler:
    """This rank's share of an evaluation split, in order."""
    return SequentialSampler(dataset)


def reduce_metrics(metrics: dict[str, float], count: int) -> dict[str, float]:
    """Metrics of every rank's share combined into the metrics of the whole split: the mean weighted by
    ``count``, the samples this rank evaluated (one rank: its own metrics)."""
    return dict(metrics)
