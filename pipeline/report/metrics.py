"""Class-incremental metrics: load the train stages' ``eval.json`` rows, compute and aggregate.

Notation (reference.md section 2): T tasks; ``R[i][j]`` is the accuracy on task j's test classes after
training task i (only j <= i exists; the cells above the diagonal are NaN). ``A_i`` is the accuracy on
the test data of all classes seen up to task i, after task i; it is taken from the rows' ``acc_seen``,
which the train stage computes over the union of the seen tasks' test data, so it is sample-weighted:
``A_i = sum_{j<=i} n_j R[i][j] / sum_{j<=i} n_j`` with ``n_j`` test samples in task j (checked on load).

- Average accuracy (iCaRL, Rebuffi et al. 2017):   ``AvgAcc = 1/T sum_{i=0}^{T-1} A_i``
- Last accuracy:                                    ``LastAcc = A_{T-1}``
- Average forgetting (Chaudhry et al. 2018):        ``f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]`` for
  j < T-1, ``F = 1/(T-1) sum_j f_j``. Not clipped: a task that ends better than it ever was gets f_j < 0.
- Backward transfer (Lopez-Paz & Ranzato 2017):     ``BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])``

Decisions:

- T = 1: forgetting and BWT are ``None`` (JSON null): with no earlier task there is nothing that could be
  forgotten, and 0 would read as "measured, no forgetting". AvgAcc = LastAcc = A_0.
- Seeds: the mean and the *sample* standard deviation (ddof = 1) over seeds, the usual estimate of the
  run-to-run spread from a handful of independent runs (the population std understates it). With one
  seed there is no spread estimate: the std is ``None`` and the ``*_std`` keys are left out of
  ``metrics.json``.
- ``train_seconds`` of a run is the sum over its tasks; the strategy's value is the mean over seeds.
  ``buffer_size`` and ``wer_last`` are taken after the last task, averaged over seeds; ``wer_last`` is
  ``None`` when any seed has no WER (a partial mean would mislead).

A bad or missing row raises :class:`DataError` naming the file and the DVC stage that wrote it
(:func:`train_stage_name`, the single place that spells the stage name).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from pipeline.errors import DataError

# Tolerance when checking acc_seen against the test-size-weighted mean of acc_per_task: the two come from
# the same predictions, so they agree up to the rounding of the stored values (4 decimals give <= 1e-4).
ACC_SEEN_TOLERANCE = 2e-3


# ----------------------------------------------------------------------------- where rows come from


def train_stage_name(strategy: str, seed: int, task: int) -> str:
    """The DVC stage that writes ``models/<strategy>/s<seed>/task<task>/eval.json``.

    dvc.yaml generates the train stages with ``matrix: {strategy, seed, task}``; DVC 3.67 names them by
    joining the values with ``-`` and a dict value (a ``cil.tasks`` item) by key + index, giving
    ``train@coconut+skd-0-task2`` (checked with ``dvc stage list``). Change it here if dvc.yaml changes.
    """
    return f"train@{strategy}-{seed}-task{task}"


def eval_json_path(models_dir: str | Path, strategy: str, seed: int, task: int) -> Path:
    """Where the train stage for (strategy, seed, task) writes its evaluation row."""
    return Path(models_dir) / strategy / f"s{seed}" / f"task{task}" / "eval.json"


# ----------------------------------------------------------------------------- one row


@dataclass(frozen=True)
class EvalRow:
    """One validated ``eval.json``: the model after training ``task`` evaluated on every seen task."""

    strategy: str
    seed: int
    task: int
    n_tasks: int
    task_classes: list[list[str]]
    acc_per_task: list[float]  # R[task][j], j = 0..task
    acc_seen: float  # A_task
    acc_per_class: dict[str, float]
    n_test_per_task: list[int]
    wer_seen: Optional[float]
    buffer_size: int
    train_seconds: float
    epochs: Optional[int] = None
    final_loss: Optional[float] = None
    eval_split: str = "test"  # the split the row was measured on (train stage's eval_split; default test)
    shared_first_task: bool = False  # task 0 adopted stage first's training (its seconds are in first's timing.json)
    path: str = ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_frac(v: Any) -> bool:
    return _is_num(v) and 0.0 <= v <= 1.0


REQUIRED_KEYS = (
    "strategy", "seed", "task", "n_tasks", "task_classes", "acc_per_task", "acc_seen", "acc_per_class",
    "n_test_per_task", "wer_seen", "buffer_size", "train_seconds",
)  # fmt: skip


def parse_row(data: Any, *, path: str | Path, strategy: str, seed: int, task: int, n_tasks: int) -> EvalRow:
    """Validate the decoded JSON of one ``eval.json`` against what the pipeline expects there.

    ``strategy``, ``seed``, ``task`` and ``n_tasks`` are what the params say this file must hold; any
    mismatch (a stale or misplaced file) is an error. Raises :class:`DataError` with one line naming
    ``path``, the problem and the stage that produced the file.
    """
    stage = train_stage_name(strategy, seed, task)

    def bad(problem: str) -> DataError:
        return DataError(f"{path}: {problem} (file written by DVC stage {stage})")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise bad(f"missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

    expected = {"strategy": strategy, "seed": seed, "task": task, "n_tasks": n_tasks}
    for key, want in expected.items():
        got = data[key]
        if got != want or isinstance(got, bool) or type(got) is not type(want):
            raise bad(f"{key} is {got!r}, expected {want!r}")

    tc = data["task_classes"]
    if not (isinstance(tc, list) and len(tc) == n_tasks and all(
        isinstance(t, list) and t and all(isinstance(c, str) for c in t) for t in tc
    )):
        raise bad(f"task_classes: expected {n_tasks} non-empty lists of class names (one per task)")

    acc = data["acc_per_task"]
    if not isinstance(acc, list):
        raise bad(f"acc_per_task: expected a list of {task + 1} fractions (tasks 0..{task}), got {acc!r}")
    if len(acc) != task + 1:
        raise bad(f"acc_per_task has {len(acc)} values, expected {task + 1} (tasks 0..{task})")
    for j, v in enumerate(acc):
        if not _is_frac(v):
            raise bad(f"acc_per_task[{j}] is {v!r}, expected a fraction in [0, 1]")
    if not _is_frac(data["acc_seen"]):
        raise bad(f"acc_seen is {data['acc_seen']!r}, expected a fraction in [0, 1]")

    apc = data["acc_per_class"]
    if not isinstance(apc, dict):
        raise bad("acc_per_class: expected an object {class name: accuracy}")
    seen = {c for t in tc[: task + 1] for c in t}
    for name, v in apc.items():
        if name not in seen:
            raise bad(f"acc_per_class has class {name!r}, which is not among the classes of tasks 0..{task}")
        if not _is_frac(v):
            raise bad(f"acc_per_class[{name!r}] is {v!r}, expected a fraction in [0, 1]")

    nt = data["n_test_per_task"]
    if not (isinstance(nt, list) and len(nt) == task + 1 and all(_is_int(n) and n >= 0 for n in nt)):
        raise bad(f"n_test_per_task: expected {task + 1} positive integers (tasks 0..{task}), got {nt!r}")
    if 0 in nt:
        j = nt.index(0)
        raise bad(f"n_test_per_task[{j}] is 0: task {j} has no evaluation data, so its accuracy is undefined "
                  "(make the test split larger)")

    weighted = sum(n * a for n, a in zip(nt, acc)) / sum(nt)
    if abs(weighted - data["acc_seen"]) > ACC_SEEN_TOLERANCE:
        raise bad(
            f"acc_seen {data['acc_seen']:.4f} disagrees with the test-size-weighted mean of acc_per_task "
            f"({weighted:.4f}); both must come from the same predictions"
        )

    wer = data["wer_seen"]
    if wer is not None and not (_is_num(wer) and wer >= 0):
        raise bad(f"wer_seen is {wer!r}, expected null or a number >= 0")
    if not (_is_int(data["buffer_size"]) and data["buffer_size"] >= 0):
        raise bad(f"buffer_size is {data['buffer_size']!r}, expected an integer >= 0")
    if not (_is_num(data["train_seconds"]) and data["train_seconds"] >= 0):
        raise bad(f"train_seconds is {data['train_seconds']!r}, expected a number >= 0")
    epochs = data.get("epochs")
    if epochs is not None and not (_is_int(epochs) and epochs >= 0):
        raise bad(f"epochs is {epochs!r}, expected an integer >= 0")
    loss = data.get("final_loss")
    if loss is not None and not _is_num(loss):
        raise bad(f"final_loss is {loss!r}, expected a finite number or null")
    split = data.get("eval_split", "test")
    if not isinstance(split, str):
        raise bad(f"eval_split is {split!r}, expected a split name such as 'test'")
    shared = data.get("shared_first_task", False)
    if not isinstance(shared, bool):
        raise bad(f"shared_first_task is {shared!r}, expected true or false")

    return EvalRow(
        strategy=strategy, seed=seed, task=task, n_tasks=n_tasks,
        task_classes=[list(t) for t in tc], acc_per_task=[float(v) for v in acc],
        acc_seen=float(data["acc_seen"]), acc_per_class={k: float(v) for k, v in apc.items()},
        n_test_per_task=list(nt), wer_seen=None if wer is None else float(wer),
        buffer_size=data["buffer_size"], train_seconds=float(data["train_seconds"]),
        epochs=epochs, final_loss=None if loss is None else float(loss), eval_split=split,
        shared_first_task=shared, path=str(path),
    )  # fmt: skip


def load_json(path: str | Path, *, missing_hint: str, origin: str = "") -> Any:
    """Parse a JSON file; a missing or malformed one is a one-line :class:`DataError` naming it.

    ``missing_hint`` follows "file not found" (how to make the file); ``origin`` follows a parse error
    (who wrote it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found ({missing_hint})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})" + (f" ({origin})" if origin else "")) from None


def load_row(path: str | Path, *, strategy: str, seed: int, task: int, n_tasks: int) -> EvalRow:
    """Read and validate one ``eval.json``; a missing or unreadable file is a :class:`DataError`."""
    stage = train_stage_name(strategy, seed, task)
    path = Path(path)
    data = load_json(path, missing_hint=f"run DVC stage {stage}: dvc repro {stage}", origin=f"file written by DVC stage {stage}")
    return parse_row(data, path=path, strategy=strategy, seed=seed, task=task, n_tasks=n_tasks)


def first_task_timing_path(models_dir: str | Path, seed: int) -> Path:
    """Where stage first@<seed> writes the seconds of each strategy's shared first task."""
    return Path(models_dir) / "first" / f"s{seed}" / "timing.json"


def first_task_timing(models_dir: str | Path, seed: int) -> dict[str, float]:
    """``models/first/s<seed>/timing.json`` (stage first): strategy -> seconds of its shared first task."""
    path = first_task_timing_path(models_dir, seed)
    if not path.is_file():
        return {}
    data = load_json(path, missing_hint=f"dvc repro first@{seed}", origin=f"file written by DVC stage first@{seed}")
    if not (isinstance(data, dict) and all(isinstance(k, str) and _is_num(v) and v >= 0 for k, v in data.items())):
        raise DataError(f"{path}: expected an object {{strategy: seconds >= 0}} (file written by DVC stage first@{seed})")
    return {k: float(v) for k, v in data.items()}


def load_run(models_dir: str | Path, strategy: str, seed: int, n_tasks: int) -> list[EvalRow]:
    """The T rows of one (strategy, seed) run, checked to describe the same task split."""
    rows = [
        load_row(eval_json_path(models_dir, strategy, seed, k), strategy=strategy, seed=seed, task=k, n_tasks=n_tasks)
        for k in range(n_tasks)
    ]
    if rows[0].shared_first_task:  # the first task trained once in stage first: count its time for every strategy
        timing = first_task_timing(models_dir, seed)
        if strategy not in timing:
            raise DataError(f"{rows[0].path}: task 0 was adopted from stage first@{seed}, but "
                            f"{first_task_timing_path(models_dir, seed)} has no time for {strategy!r} "
                            f"(dvc repro first@{seed})")
        rows[0] = replace(rows[0], train_seconds=rows[0].train_seconds + timing[strategy])
    for row in rows[1:]:
        if row.task_classes != rows[0].task_classes:
            raise DataError(
                f"{row.path}: task_classes differ from those in {rows[0].path}; the run mixes two task splits "
                f"(file written by DVC stage {train_stage_name(strategy, seed, row.task)})"
            )
    return rows


def load_all(
    models_dir: str | Path, strategies: Sequence[str], seeds: Sequence[int], n_tasks: int
) -> dict[str, list[list[EvalRow]]]:
    """``{strategy: [rows of seed 0, rows of seed 1, ...]}`` for every strategy and seed of the params."""
    return {s: [load_run(models_dir, s, seed, n_tasks) for seed in seeds] for s in strategies}


# ----------------------------------------------------------------------------- metrics of one matrix


def accuracy_matrix(rows: Sequence[EvalRow]) -> np.ndarray:
    """``R`` (T x T) from the rows of one run ordered by task; NaN above the diagonal."""
    n = len(rows)
    R = np.full((n, n), np.nan)
    for i, row in enumerate(rows):
        R[i, : i + 1] = row.acc_per_task
    return R


def _check_matrix(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got shape {R.shape}")
    if not np.all(np.isfinite(R[np.tril_indices(R.shape[0])])):
        raise ValueError("accuracy matrix has NaN/inf on or below the diagonal")
    return R


def average_accuracy(acc_seen: Sequence[float]) -> float:
    """iCaRL average incremental accuracy: ``1/T sum_i A_i``."""
    return float(np.mean(np.asarray(acc_seen, dtype=float)))


def last_accuracy(acc_seen: Sequence[float]) -> float:
    """``A_{T-1}``: accuracy on all classes after the last task."""
    return float(acc_seen[-1])


def forgetting_per_task(R: np.ndarray) -> np.ndarray:
    """Chaudhry et al. 2018: ``f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]`` for j = 0..T-2 (shape (T-1,))."""
    R = _check_matrix(R)
    T = R.shape[0]
    return np.array([R[j : T - 1, j].max() - R[T - 1, j] for j in range(T - 1)])


def average_forgetting(R: np.ndarray) -> Optional[float]:
    """Mean of :func:`forgetting_per_task`; ``None`` when T = 1 (no earlier task to forget)."""
    f = forgetting_per_task(R)
    return float(f.mean()) if f.size else None


def bwt_per_task(R: np.ndarray) -> np.ndarray:
    """``R[T-1][j] - R[j][j]`` for j = 0..T-2 (shape (T-1,)): how much task j gained (>0) or lost (<0)."""
    R = _check_matrix(R)
    T = R.shape[0]
    return np.array([R[T - 1, j] - R[j, j] for j in range(T - 1)])


def backward_transfer(R: np.ndarray) -> Optional[float]:
    """Lopez-Paz & Ranzato 2017 BWT, the mean of :func:`bwt_per_task`; ``None`` when T = 1."""
    b = bwt_per_task(R)
    return float(b.mean()) if b.size else None


def final_task_accuracies(R: np.ndarray) -> np.ndarray:
    """``R[T-1][j]`` for every task j: the per-task accuracy of the final model (shape (T,))."""
    return _check_matrix(R)[-1].copy()


# ----------------------------------------------------------------------------- one run, then seeds


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
