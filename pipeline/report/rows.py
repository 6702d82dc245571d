"""The train stages' ``eval.json`` rows: where they live, their validation, and loading a whole run.

One row is the model after training task ``task`` of one (strategy, seed) run, evaluated on the test
data of every task seen so far: ``acc_per_task`` (``R[task][j]`` for j <= task), ``acc_seen`` (``A_task``,
the accuracy over the union of the seen tasks' test data, so sample-weighted: checked on load against
the test-size-weighted mean of ``acc_per_task``), per-class accuracies, WER, buffer size and timing.

A bad or missing row raises :class:`DataError` with one line naming the file and the DVC stage that wrote
it (:func:`train_stage_name`, the single place that spells the stage name). A run whose task 0 was
adopted from stage ``first@<seed>`` gets that stage's seconds added (:func:`first_task_timing`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from pipeline.errors import DataError

# Tolerance when checking acc_seen against the test-size-weighted mean of acc_per_task: the two come from
# the same predictions, so they agree up to the rounding of the stored values (4 decimals give <= 1e-4).
ACC_SEEN_TOLERANCE = 2e-3


# ----------------------------------------------------------------------------- where rows come from


def train_stage_name(strategy: str, seed: int, task: int) -> str:
    """The DVC stage that writes ``models/cil/<strategy>/s<seed>/task<task>/eval.json``.

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
    """``models/cil/first/s<seed>/timing.json`` (stage first): strategy -> seconds of its shared first task."""
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
