"""``python -m pipeline evaluate``: accuracy matrices, forgetting, BWT, figures and the report.

Reads ``models/<strategy>/s<seed>/task<k>/eval.json`` for every strategy in ``cil.strategies``, every
seed in ``seeds`` and every task k < T = len(cil.tasks), plus ``data/prepared/tasks.json`` (the split),
and writes under ``--out`` (default ``reports/cil``):

- ``metrics.json``: ``{strategy: {avg_acc, last_acc, forgetting, bwt, [*_std], wer_last, train_seconds,
  buffer_size, n_seeds}}`` (DVC metrics; see :func:`pipeline.report.aggregate.metrics_json`);
- ``plots/acc_vs_tasks.json`` and ``plots/forgetting_per_task.json`` (DVC plots data);
- ``details.json``: the mean accuracy matrix, curves and per-run values of every strategy;
- ``figures/*.png``, ``report.md`` and ``report.html`` (self-contained).

Everything is written into a temporary sibling folder that replaces ``--out`` only once complete, so a
failure never leaves a report that looks finished. The metric definitions are documented in
:mod:`pipeline.report.cil_metrics`, the seed aggregation in :mod:`pipeline.report.aggregate`.

params.yaml section ``evaluate`` (all optional)::

    evaluate:
      upper_bound: joint   # strategy drawn dashed and left out of the "best" marks (null: none)
      dpi: 120             # figure resolution
      title: Class-incremental learning report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from pipeline.errors import DataError, ParamsError, UserError

STRATEGY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
EVALUATE_DEFAULTS: dict[str, Any] = {"upper_bound": "joint", "dpi": 120, "title": "Class-incremental learning report"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", default="models", help="where the train stages write (default: models)")
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

    ``cil`` goes through :class:`pipeline.config.CilConfig` and ``seeds`` defaults to ``[0]``, exactly as
    for the train stages (:func:`pipeline.config.load_train`), so both read the same runs.
    """
    from pipeline.config import CilConfig, read_yaml, section

    raw = read_yaml(path)
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            and len(set(seeds)) == len(seeds)):  # fmt: skip
        raise ParamsError(f"params: seeds: expected a non-empty list of distinct integers, got {seeds!r}")
    if "cil" in raw and not isinstance(raw["cil"], dict):
        raise ParamsError(f"params: cil: expected a mapping with strategies and tasks, got {raw['cil']!r}")
    cil = section(raw, CilConfig, "cil")
    strategies = list(cil.strategies)
    for s in strategies:
        if not STRATEGY_NAME.match(s):
            raise ParamsError(f"params: cil.strategies: {s!r} is not a valid name (letters, digits, _ . + - only)")
    tasks = cil.tasks

    ev = raw.get("evaluate") or {}
    if not isinstance(ev, dict):
        raise ParamsError(f"params: evaluate: expected a mapping, got {ev!r}")
    unknown = sorted(set(ev) - set(EVALUATE_DEFAULTS))
    if unknown:
        raise ParamsError(f"params: evaluate.{unknown[0]}: unknown key; allowed keys: {', '.join(EVALUATE_DEFAULTS)}")
    opts = {**EVALUATE_DEFAULTS, **ev}
    ub = opts["upper_bound"]
    if ub is not None and not isinstance(ub, str):
        raise ParamsError(f"params: evaluate.upper_bound: expected a strategy name or null, got {ub!r}")
    # An upper bound that is not run (e.g. joint dropped from cil.strategies to save time) is simply not drawn.
    dpi = opts["dpi"]
    if not (isinstance(dpi, int) and not isinstance(dpi, bool) and 50 <= dpi <= 600):
        raise ParamsError(f"params: evaluate.dpi: expected an integer in [50, 600], got {dpi!r}")
    if not isinstance(opts["title"], str) or not opts["title"].strip():
        raise ParamsError(f"params: evaluate.title: expected a non-empty string, got {opts['title']!r}")
    return EvalParams(
        seeds=seeds, strategies=strategies, n_tasks=len(tasks), upper_bound=ub if ub in strategies else None,
        dpi=dpi, title=opts["title"], raw=raw, text=Path(path).read_text(encoding="utf-8"), path=str(path),
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


# What the stage writes at the top of --out; plus the .gitignore files DVC keeps next to cached outputs.
REPORT_ENTRIES = {"metrics.json", "details.json", "report.md", "report.html", "plots", "figures", ".gitignore"}


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``out``; on success it replaces ``out``, on failure it is removed.

    Refuses to replace an existing folder that holds anything the stage does not write (a mistyped
    ``--out`` must not wipe an unrelated folder). The ``.gitignore`` files that DVC writes next to
    cached outputs (``reports/cil/.gitignore``, ``reports/cil/plots/.gitignore``) are carried over, so
    git keeps ignoring the outputs.
    """
    out = Path(out)
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_ENTRIES) if out.is_dir() else [out.name]
        if foreign:
            raise UserError(
                f"--out {out}: exists and is not a report folder (it holds {foreign[0]!r}, which evaluate "
                "does not write); choose another path or remove it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        old = None
        if out.exists():
            for ign in out.rglob(".gitignore"):
                dest = tmp / ign.relative_to(out)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ign, dest)
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "report")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_data(tmp: Path, summaries) -> None:
    """metrics.json, the two plot files and details.json."""
    from pipeline.report.aggregate import acc_vs_tasks_rows, forgetting_rows, metrics_json

    (tmp / "plots").mkdir()
    _dump(tmp / "metrics.json", metrics_json(summaries))
    _dump(tmp / "plots" / "acc_vs_tasks.json", acc_vs_tasks_rows(summaries))
    _dump(tmp / "plots" / "forgetting_per_task.json", forgetting_rows(summaries))
    _dump(tmp / "details.json", details_json(summaries))


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


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    from pipeline.report.aggregate import compute

    p = read_params(args.params)
    tasks_info = read_tasks(args.prepared, p.n_tasks)
    rows = build_rows(args, p, tasks_info)
    summaries = compute(rows)
    splits = sorted({r.eval_split for runs in rows.values() for run in runs for r in run})
    with atomic_directory(args.out) as tmp:
        write_data(tmp, summaries)
        figures = write_figures(tmp, summaries, p)
        write_report(tmp, summaries, p, tasks_info, figures, splits)
    best = max((s for n, s in summaries.items() if n != p.upper_bound), key=lambda s: s.avg_acc[0], default=None)
    msg = f"evaluate: {len(summaries)} strategies x {len(p.seeds)} seeds x {p.n_tasks} tasks -> {args.out}/report.html"
    if best is not None:
        msg += f" (best Avg Acc: {best.strategy} {100 * best.avg_acc[0]:.2f} %)"
    print(msg)
