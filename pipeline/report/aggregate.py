"""One run's metrics, their aggregation over seeds, and the files DVC reads (metrics.json, plot data).

Decisions:

- Seeds: the mean and the *sample* standard deviation (ddof = 1) over seeds, the usual estimate of the
  run-to-run spread from a handful of independent runs (the population std understates it). With one
  seed there is no spread estimate: the std is ``None`` and the ``*_std`` keys are left out of
  ``metrics.json``.
- ``train_seconds`` of a run is the sum over its tasks; the strategy's value is the mean over seeds.
  ``buffer_size`` and ``wer_last`` are taken after the last task, averaged over seeds; ``wer_last`` is
  ``None`` when any seed has no WER (a partial mean would mislead).

The metric definitions are in :mod:`pipeline.report.cil_metrics`, the rows in :mod:`pipeline.report.rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from pipeline.report.cil_metrics import (
    accuracy_matrix,
    average_accuracy,
    average_forgetting,
    backward_transfer,
    final_task_accuracies,
    forgetting_per_task,
    last_accuracy,
)
from pipeline.report.rows import EvalRow


@dataclass
class RunResult:
    """The metrics of one (strategy, seed) run."""

    strategy: str
    seed: int
    R: np.ndarray  # (T, T), NaN above the diagonal
    acc_seen: np.ndarray  # (T,): A_0..A_{T-1}
    avg_acc: float
    last_acc: float
    forgetting: Optional[float]
    bwt: Optional[float]
    forgetting_per_task: np.ndarray  # (T-1,)
    final_per_task: np.ndarray  # (T,)
    final_per_class: dict[str, float]
    wer_last: Optional[float]
    train_seconds: float  # sum over tasks
    buffer_size: int  # after the last task


def run_result(rows: Sequence[EvalRow]) -> RunResult:
    """Compute every metric of one run from its T rows (ordered by task)."""
    R = accuracy_matrix(rows)
    acc_seen = np.array([r.acc_seen for r in rows])
    last = rows[-1]
    return RunResult(
        strategy=last.strategy, seed=last.seed, R=R, acc_seen=acc_seen,
        avg_acc=average_accuracy(acc_seen), last_acc=last_accuracy(acc_seen),
        forgetting=average_forgetting(R), bwt=backward_transfer(R),
        forgetting_per_task=forgetting_per_task(R), final_per_task=final_task_accuracies(R),
        final_per_class=dict(last.acc_per_class), wer_last=last.wer_seen,
        train_seconds=float(sum(r.train_seconds for r in rows)), buffer_size=last.buffer_size,
    )  # fmt: skip


def mean_std(values: Iterable[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample std (ddof=1) of ``values``; std is ``None`` for one value; (None, None) if any is None."""
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None, None
    arr = np.asarray(vals, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def _mean_std_arrays(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    stack = np.stack(arrays)  # (n_seeds, ...)
    mean = stack.mean(axis=0)
    return mean, (stack.std(axis=0, ddof=1) if len(arrays) > 1 else None)


@dataclass
class StrategySummary:
    """One strategy aggregated over seeds: scalars as (mean, std) and curves/matrices as mean (+ std)."""

    strategy: str
    seeds: list[int]
    task_classes: list[list[str]]
    avg_acc: tuple[float, Optional[float]]
    last_acc: tuple[float, Optional[float]]
    forgetting: tuple[Optional[float], Optional[float]]
    bwt: tuple[Optional[float], Optional[float]]
    acc_seen: np.ndarray  # (T,) mean over seeds
    acc_seen_std: Optional[np.ndarray]
    R: np.ndarray  # (T, T) mean over seeds, NaN above the diagonal
    forgetting_per_task: np.ndarray  # (T-1,)
    forgetting_per_task_std: Optional[np.ndarray]
    final_per_task: np.ndarray  # (T,)
    final_per_task_std: Optional[np.ndarray]
    final_per_class: dict[str, float]  # mean over seeds
    wer_last: Optional[float]
    train_seconds: float
    buffer_size: float
    runs: list[RunResult] = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def summarize(runs: Sequence[RunResult], task_classes: list[list[str]]) -> StrategySummary:
    """Aggregate the runs (one per seed) of one strategy; see the module docstring for the choices."""
    if not runs:
        raise ValueError("summarize needs at least one run")
    acc_seen, acc_seen_std = _mean_std_arrays([r.acc_seen for r in runs])
    f_pt, f_pt_std = _mean_std_arrays([r.forgetting_per_task for r in runs])
    fin, fin_std = _mean_std_arrays([r.final_per_task for r in runs])
    classes = [c for t in task_classes for c in t]
    per_class = {
        c: float(np.mean([r.final_per_class[c] for r in runs]))
        for c in classes
        if all(c in r.final_per_class for r in runs)
    }
    buffers = [r.buffer_size for r in runs]
    return StrategySummary(
        strategy=runs[0].strategy, seeds=[r.seed for r in runs], task_classes=task_classes,
        avg_acc=mean_std(r.avg_acc for r in runs), last_acc=mean_std(r.last_acc for r in runs),
        forgetting=mean_std(r.forgetting for r in runs), bwt=mean_std(r.bwt for r in runs),
        acc_seen=acc_seen, acc_seen_std=acc_seen_std,
        R=np.mean(np.stack([r.R for r in runs]), axis=0),  # NaN stays NaN above the diagonal
        forgetting_per_task=f_pt, forgetting_per_task_std=f_pt_std,
        final_per_task=fin, final_per_task_std=fin_std, final_per_class=per_class,
        wer_last=mean_std(r.wer_last for r in runs)[0],
        train_seconds=float(np.mean([r.train_seconds for r in runs])),
        buffer_size=buffers[0] if len(set(buffers)) == 1 else float(np.mean(buffers)),
        runs=list(runs),
    )  # fmt: skip


def compute(rows: dict[str, list[list[EvalRow]]]) -> dict[str, StrategySummary]:
    """``{strategy: summary}`` in the order of ``rows`` (the params' strategy order)."""
    return {s: summarize([run_result(r) for r in runs], runs[0][0].task_classes) for s, runs in rows.items()}


# ----------------------------------------------------------------------------- the files DVC reads


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 6)


def metrics_json(summaries: dict[str, StrategySummary]) -> dict[str, dict[str, Any]]:
    """The ``metrics.json`` interface: ``{strategy: {avg_acc, last_acc, forgetting, bwt, [*_std],
    wer_last, train_seconds, buffer_size, n_seeds}}``; accuracies as fractions, means over seeds; the
    ``*_std`` keys only with two seeds or more."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in summaries.items():
        entry: dict[str, Any] = {}
        for key in ("avg_acc", "last_acc", "forgetting", "bwt"):
            entry[key] = _r(getattr(s, key)[0])
        if s.n_seeds > 1:
            for key in ("avg_acc", "last_acc", "forgetting", "bwt"):
                entry[f"{key}_std"] = _r(getattr(s, key)[1])
        entry["wer_last"] = _r(s.wer_last)
        entry["train_seconds"] = round(s.train_seconds, 3)
        entry["buffer_size"] = s.buffer_size
        entry["n_seeds"] = s.n_seeds
        out[name] = entry
    return out


def acc_vs_tasks_rows(summaries: dict[str, StrategySummary]) -> list[dict[str, Any]]:
    """Plot data: ``{strategy, tasks_learned, acc_seen}`` (A_{k}, mean over seeds, tasks_learned = k + 1)."""
    return [
        {"strategy": name, "tasks_learned": k + 1, "acc_seen": _r(a)}
        for name, s in summaries.items()
        for k, a in enumerate(s.acc_seen)
    ]


def forgetting_rows(summaries: dict[str, StrategySummary]) -> list[dict[str, Any]]:
    """Plot data: ``{strategy, task, forgetting}`` (f_j for j < T-1, mean over seeds)."""
    return [
        {"strategy": name, "task": j, "forgetting": _r(f)}
        for name, s in summaries.items()
        for j, f in enumerate(s.forgetting_per_task)
    ]
