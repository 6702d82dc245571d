"""``python -m pipeline evaluate``: accuracy matrices, forgetting, BWT, figures and the report.

Reads ``models/cil/<strategy>/s<seed>/task<k>/eval.json`` for every strategy in ``cil.strategies``, every
seed in ``seeds`` and every task k < T = len(cil.tasks), plus ``data/prepared/tasks.json`` (the split),
and writes under ``--out`` (default ``reports/cil``):

- ``metrics.json``: ``{strategy: {avg_acc, last_acc, forgetting, bwt, [*_std], wer_last, train_seconds,
  buffer_size, n_seeds}}`` (DVC metrics; see :func:`pipeline.report.aggregate.metrics_json`);
- ``plots/acc_vs_tasks.json`` and ``plots/forgetting_per_task.json`` (DVC plots data);
- ``details.json``: the mean accuracy matrix, curves and per-run values of every strategy;
- ``figures/*.png``, ``report.md`` and ``report.html`` (self-contained).

Everything is written through :func:`pipeline.core.atomic.atomic_dir` (owner ``evaluate``): into
``<out>.tmp``, which replaces ``--out`` only once complete, so a failure never leaves a report that looks
finished, and a ``--out`` that holds anything else than an earlier report is refused. The metric
definitions are documented in :mod:`pipeline.report.cil_metrics`, the seed aggregation in
:mod:`pipeline.report.aggregate`.

params.yaml section ``evaluate`` (all optional; :class:`pipeline.config.EvaluateConfig`)::

    evaluate:
      upper_bound: joint   # strategy drawn dashed and left out of the "best" marks (null: none)
      dpi: 120             # figure resolution
      title: Class-incremental learning report
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pipeline.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", default="models/cil", help="where the train stages write (default: models/cil)")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's output (default: data/prepared)")
    parser.add_argument("--out", default="reports/cil", help="report folder, replaced as a whole (default: reports/cil)")


# ----------------------------------------------------------------------------- params


@dataclass
class EvalParams:
    seeds: list[int]
    strategies: list[str]
    n_tasks: int
    upper_bound: Optional[str]
    dpi: int
    title: str
    raw: dict[str, Any]
    text: str
    path: str


def read_params(path: str | Path) -> EvalParams:
    """Read and check ``seeds``, ``cil.strategies``, ``cil.tasks`` and the ``evaluate`` section.

    Every section goes through the shared core (:mod:`pipeline.core.params`): ``seeds`` by its one rule
    (default ``[0]``), ``cil`` by :class:`pipeline.config.CilConfig` (whose strategy names pass
    :func:`~pipeline.core.params.check_name`), ``evaluate`` by :class:`pipeline.config.EvaluateConfig`,
    exactly as for the train stages, so both read the same runs.
    """
    from pipeline.config import CilConfig, EvaluateConfig
    from pipeline.core.params import parse_seeds, read_yaml, section

    raw = read_yaml(path)
    seeds = parse_seeds(raw)
    cil = section(raw, CilConfig, "cil")
    ev = section(raw, EvaluateConfig, "evaluate")
    strategies = list(cil.strategies)
    # An upper bound that is not run (e.g. joint dropped from cil.strategies to save time) is simply not drawn.
    return EvalParams(
        seeds=seeds, strategies=strategies, n_tasks=len(cil.tasks),
        upper_bound=ev.upper_bound if ev.upper_bound in strategies else None, dpi=ev.dpi, title=ev.title,
        raw=raw, text=Path(path).read_text(encoding="utf-8"), path=str(path),
    )  # fmt: skip


def read_tasks(prepared: str | Path, n_tasks: int) -> dict[str, Any]:
    """``tasks.json`` of the prepare stage, checked to have as many tasks as ``cil.tasks``."""
    path = Path(prepared) / "tasks.json"
    from pipeline.report.rows import load_json

    info = load_json(path, missing_hint="run DVC stage prepare: dvc repro prepare", origin="file written by DVC stage prepare")
    if not isinstance(info, dict) or not isinstance(info.get("task_names"), list):
        raise DataError(f"{path}: expected an object with a 'task_names' list (file written by DVC stage prepare)")
    if len(info["task_names"]) != n_tasks:
        raise DataError(
            f"{path}: describes {len(info['task_names'])} tasks but params cil.tasks has {n_tasks} entries; "
            "make the split (split.*) and cil.tasks agree, then rerun prepare"
        )
    return info


# ----------------------------------------------------------------------------- steps


def build_rows(args: argparse.Namespace, p: EvalParams, tasks_info: dict[str, Any]):
    """Load and validate every eval.json; the runs must use the split in tasks.json."""
    from pipeline.report.rows import load_all

    rows = load_all(args.models_dir, p.strategies, p.seeds, p.n_tasks)
    want = tasks_info["task_names"]
    for runs in rows.values():
        for run in runs:
            if run[0].task_classes != want:
                raise DataError(
                    f"{run[0].path}: task_classes differ from task_names in {Path(args.prepared) / 'tasks.json'}; "
                    "the model was trained on another split (rerun the train stages: dvc repro)"
                )
    return rows


# What the stage writes at the top of --out: a folder holding only these (and DVC's .gitignore files) is
# an earlier report written before core.atomic's owner marker existed, and may be replaced.
REPORT_ENTRIES = ("metrics.json", "details.json", "report.md", "report.html", "plots", "figures")


def write_data(tmp: Path, summaries) -> None:
    """metrics.json, the two plot files and details.json."""
    from pipeline.report.aggregate import acc_vs_tasks_rows, forgetting_rows, metrics_json
    from pipeline.report.render import write_json

    (tmp / "plots").mkdir()
    write_json(tmp / "metrics.json", metrics_json(summaries))
    write_json(tmp / "plots" / "acc_vs_tasks.json", acc_vs_tasks_rows(summaries))
    write_json(tmp / "plots" / "forgetting_per_task.json", forgetting_rows(summaries))
    write_json(tmp / "details.json", details_json(summaries))


def write_figures(tmp: Path, summaries, p: EvalParams):
    from pipeline.report.figures import write_figures as _write

    return _write(summaries, tmp / "figures", p.upper_bound, p.dpi)


def write_report(tmp: Path, summaries, p: EvalParams, tasks_info: dict[str, Any], figures, splits: list[str]) -> None:
    from pipeline.report.render import ReportContext, provenance, render_html, render_markdown

    ctx = ReportContext(
        title=p.title, summaries=summaries, upper_bound=p.upper_bound, seeds=p.seeds, tasks_info=tasks_info,
        params=p.raw, params_text=p.text, params_path=p.path, provenance=provenance(p.path), figures=figures,
        eval_splits=splits,
    )  # fmt: skip
    (tmp / "report.md").write_text(render_markdown(ctx), encoding="utf-8")
    (tmp / "report.html").write_text(render_html(ctx, tmp / "figures"), encoding="utf-8")


def details_json(summaries) -> dict[str, Any]:
    """Everything behind the report, for scripts: mean matrices, curves and per-run scalars."""

    def lst(a):  # ndarray -> nested lists, NaN (above the diagonal) -> null
        if a is None:
            return None
        if isinstance(a, (list, tuple)) or getattr(a, "ndim", 0) > 0:
            return [lst(x) for x in a]
        return None if a != a else round(float(a), 6)

    return {
        name: {
            "seeds": s.seeds, "task_classes": s.task_classes,
            "acc_matrix_mean": lst(s.R), "acc_seen_mean": lst(s.acc_seen), "acc_seen_std": lst(s.acc_seen_std),
            "forgetting_per_task_mean": lst(s.forgetting_per_task), "final_per_task_mean": lst(s.final_per_task),
            "final_per_class_mean": {c: round(v, 6) for c, v in s.final_per_class.items()},
            "runs": [
                {"seed": r.seed, "avg_acc": r.avg_acc, "last_acc": r.last_acc, "forgetting": r.forgetting,
                 "bwt": r.bwt, "acc_matrix": lst(r.R), "train_seconds": r.train_seconds, "buffer_size": r.buffer_size}
                for r in s.runs
            ],
        }  # fmt: skip
        for name, s in summaries.items()
    }


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    from pipeline.core.atomic import atomic_dir
    from pipeline.report.aggregate import compute

    p = read_params(args.params)
    tasks_info = read_tasks(args.prepared, p.n_tasks)
    rows = build_rows(args, p, tasks_info)
    summaries = compute(rows)
    splits = sorted({r.eval_split for runs in rows.values() for run in runs for r in run})
    with atomic_dir(args.out, owner="evaluate", legacy=REPORT_ENTRIES) as tmp:
        write_data(tmp, summaries)
        figures = write_figures(tmp, summaries, p)
        write_report(tmp, summaries, p, tasks_info, figures, splits)
    best = max((s for n, s in summaries.items() if n != p.upper_bound), key=lambda s: s.avg_acc[0], default=None)
    msg = f"evaluate: {len(summaries)} strategies x {len(p.seeds)} seeds x {p.n_tasks} tasks -> {args.out}/report.html"
    if best is not None:
        msg += f" (best Avg Acc: {best.strategy} {100 * best.avg_acc[0]:.2f} %)"
    print(msg)
