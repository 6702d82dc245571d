"""The prepared splits as Avalanche datasets (task label 0); one experience per task is built from them
in :mod:`pipeline.continual.run`. The datasets themselves live in :mod:`pipeline.data.prepared`."""

from __future__ import annotations

from torch.utils.data import Dataset


def as_avalanche(ds: Dataset, indices: list[int] | None = None):
    """An Avalanche classification dataset (task label 0) over ``ds`` or a subset of it."""
    from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_classification_dataset

    full = _make_taskaware_classification_dataset(ds, targets=ds.targets, task_labels=0)
    return full if indices is None else full.subset(indices)
