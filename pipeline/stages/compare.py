"""``python -m pipeline compare``: one table and one figure across DVC experiments.

Reads the output of ``dvc exp show --json`` (runs it, or reads ``--input``), takes from every experiment
its params (``params.yaml``) and the evaluate stage's ``reports/cil/metrics.json``, and writes to ``--out``
(default ``reports/compare``):

- ``compare.md`` (also printed): one row per (experiment, strategy) with Avg Acc, Last Acc, forgetting
  and BWT (mean ± std over seeds, %), each experiment named by its name and the params that differ
  between the experiments shown (e.g. ``buf462: recipes.replay.buffer_size=462``);
- ``compare.png``: Avg Acc and Last Acc per experiment (groups) and strategy (bars);
- ``compare.json``: the same rows, machine-readable.

The JSON shape read here is DVC 3.67's (captured in ``tests/fixtures/exp_show.json``): a list of
baseline commits, the first being the ``workspace``; each is ``{"rev", "name", "data": {"params":
{file: {"data": {...}}}, "metrics": {file: {"data": {...}} or {"error": ...}}}, "error", "experiments":
[{"name", "executor": null or {"state": "queued"|"running"|"failed"|...}, "revs": [<same as a
commit>]}]}``. DVC drops null metric values (e.g. ``wer_last: null``). Entries without metrics (queued,
running or failed experiments, or a baseline whose metrics were never committed) are listed as skipped.
The workspace is kept only when its params and metrics differ from every other entry (after
``dvc exp run`` it repeats the last experiment).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError, UserError
from pipeline.report.render import flatten

METRIC_COLUMNS = [("avg_acc", "Avg Acc (%)"), ("last_acc", "Last Acc (%)"), ("forgetting", "Forgetting (pp)"), ("bwt", "BWT (pp)")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=None, help="a saved `dvc exp show --json` output (default: run dvc)")
    parser.add_argument("--out", default="reports/compare", help="output folder (default: reports/compare)")
    parser.add_argument("--metrics-file", default="reports/cil/metrics.json", help="the evaluate stage's metrics file")
    parser.add_argument("--all-commits", action="store_true", help="pass -A to dvc exp show (experiments of all commits)")


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict[str, Any]  # flattened: {"recipes.replay.buffer_size": 462, ...}
    metrics: dict[str, dict[str, float]]  # {strategy: {avg_acc: ..., ...}}
    differing: list[str] = field(default_factory=list)  # "key=value" of the params that differ

    @property
    def label(self) -> str:
        return f"{self.name}: {', '.join(self.differing)}" if self.differing else self.name


# ----------------------------------------------------------------------------- reading


def run_dvc_exp_show(all_commits: bool = False) -> list[dict[str, Any]]:
    """``dvc exp show --json`` in the current folder, decoded."""
    if shutil.which("dvc") is None:
        raise UserError("compare: the dvc command is not on PATH; install dvc or pass --input exp_show.json")
    cmd = ["dvc", "exp", "show", "--json"] + (["-A"] if all_commits else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"compare: `{' '.join(cmd)}` failed (exit {proc.returncode}): {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise DataError(f"compare: `{' '.join(cmd)}` printed invalid JSON ({exc})") from None


def read_exp_show(path: str | Path) -> list[dict[str, Any]]:
    from pipeline.report.rows import load_json

    path = Path(path)
    data = load_json(path, missing_hint=f"write it with: dvc exp show --json > {path}")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected the list printed by `dvc exp show --json`, got {type(data).__name__}")
    return data


def _entries(data: list[dict[str, Any]]):
    """Yield (name, rev, data, state) for every baseline commit and every experiment."""
    for commit in data:
        if not isinstance(commit, dict):
            continue
        rev = str(commit.get("rev", "?"))
        name = commit.get("name") or (rev if rev == "workspace" else rev[:7])
        yield name, rev, commit.get("data") or {}, ("error" if commit.get("error") else None)
        # DVC lists experiments newest first; show them in the order they were made.
        exps = sorted(commit.get("experiments") or [], key=lambda e: str(((e.get("revs") or [{}])[0].get("data") or {}).get("timestamp") or ""))
        for exp in exps:
            executor = exp.get("executor") or {}
            for r in exp.get("revs") or []:
                state = executor.get("state") if isinstance(executor, dict) else None
                if r.get("error"):
                    state = "error"
                yield exp.get("name") or r.get("name") or str(r.get("rev", "?"))[:7], str(r.get("rev", "?")), r.get("data") or {}, state


def parse_experiments(data: list[dict[str, Any]], metrics_file: str) -> tuple[list[Experiment], list[str]]:
    """The experiments that have metrics, and one line per skipped entry."""
    exps, skipped = [], []
    for name, rev, d, state in _entries(data):
        m = (d.get("metrics") or {}).get(metrics_file) or {}
        metrics = m.get("data")
        if not isinstance(metrics, dict) or not metrics or (state not in (None, "success", "finished")):
            why = state or (m.get("error", {}).get("msg") if isinstance(m.get("error"), dict) else None) or "no metrics"
            skipped.append(f"{name} ({why})")
            continue
        params: dict[str, Any] = {}
        for pfile, pdata in (d.get("params") or {}).items():
            flat = flatten((pdata or {}).get("data") or {})
            prefix = "" if pfile == "params.yaml" else f"{pfile}:"
            params.update({prefix + k: v for k, v in flat.items()})
        per_strategy = {s: v for s, v in metrics.items() if isinstance(v, dict)}
        exps.append(Experiment(name=name, rev=rev, params=params, metrics=per_strategy))
    # The workspace usually repeats an experiment (dvc exp run applies its result): drop the duplicate.
    ws = [e for e in exps if e.rev == "workspace"]
    if ws and any(e is not ws[0] and e.params == ws[0].params and e.metrics == ws[0].metrics for e in exps):
        exps.remove(ws[0])
    mark_differing(exps)
    return exps, skipped


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _clip(s: str, limit: int) -> str:
    """Shorten a long ``key=value`` label (e.g. a list of eight strategies) with an ellipsis."""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def mark_differing(exps: list[Experiment]) -> list[str]:
    """Fill ``Experiment.differing`` with ``key=value`` for the param keys whose values are not all equal."""
    keys = sorted({k for e in exps for k in e.params})
    diff = [k for k in keys if len({_show(e.params[k]) if k in e.params else "<unset>" for e in exps}) > 1]
    for e in exps:
        e.differing = [f"{k}={_show(e.params[k]) if k in e.params else '<unset>'}" for k in diff]
    return diff


# ----------------------------------------------------------------------------- output


def _pct(entry: dict[str, Any], key: str) -> str:
    v = entry.get(key)
    if not isinstance(v, (int, float)):
        return "n/a"
    s = f"{100 * v:.2f}"
    sd = entry.get(f"{key}_std")
    return s + (f" ± {100 * sd:.2f}" if isinstance(sd, (int, float)) else "")


def table_rows(exps: list[Experiment]) -> list[dict[str, Any]]:
    rows = []
    for e in exps:
        for strategy, m in e.metrics.items():
            rows.append({"experiment": e.name, "rev": e.rev, "differing_params": e.differing, "strategy": strategy,
                         **{k: m.get(k) for k, _ in METRIC_COLUMNS}, **{f"{k}_std": m.get(f"{k}_std") for k, _ in METRIC_COLUMNS},
                         "n_seeds": m.get("n_seeds")})  # fmt: skip
    return rows


def markdown_table(exps: list[Experiment], skipped: list[str]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [
        "| Experiment | Differing params | Strategy | " + " | ".join(h for _, h in METRIC_COLUMNS) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in METRIC_COLUMNS) + " |",
    ]
    for e in exps:
        for strategy, m in e.metrics.items():
            cells = [esc(e.name), esc(", ".join(_clip(d, 60) for d in e.differing) or "-"), esc(strategy)] + [_pct(m, k) for k, _ in METRIC_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if skipped:
        out += "\n\nSkipped (no metrics): " + ", ".join(skipped)
    return out


def plot_compare(exps: list[Experiment], path: Path, dpi: int = 120) -> None:
    """Two panels (Avg Acc, Last Acc): one group of bars per experiment, one bar per strategy (±std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pipeline.report.figures import colours

    strategies: list[str] = []
    for e in exps:
        strategies += [s for s in e.metrics if s not in strategies]
    ub_name = exps[0].params.get("evaluate.upper_bound", "joint") if exps else "joint"
    col = colours(strategies, ub_name)
    n_e, n_s = len(exps), len(strategies)
    width = 0.8 / max(n_s, 1)
    # Avg Acc above Last Acc, sharing the experiment axis; wide enough for every bar group.
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 0.9 * n_e + 0.22 * n_e * n_s + 2.5), 7.6), sharex=True)
    x = np.arange(n_e)
    for ax, (key, title) in zip(axes, METRIC_COLUMNS[:2]):
        for k, s in enumerate(strategies):
            vals = [100 * e.metrics.get(s, {}).get(key, np.nan) for e in exps]
            errs = [100 * (e.metrics.get(s, {}).get(f"{key}_std") or 0.0) for e in exps]
            ub = s == ub_name
            ax.bar(x - 0.4 + width * (k + 0.5), vals, width, yerr=errs, capsize=2, color="white" if ub else col[s],
                   edgecolor=col[s], hatch="//" if ub else None, label=f"{s} (upper bound)" if ub else s,
                   error_kw={"elinewidth": 0.8})  # fmt: skip
        ax.set_ylabel(f"{title.replace(' (%)', '')} (%)")
        ax.set_ylim(0, 100)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(["\n".join([e.name] + [_clip(d, 34) for d in e.differing]) for e in exps], fontsize=8)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.suptitle("Accuracy per experiment and strategy (mean ± std over seeds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def main(args: argparse.Namespace) -> None:
    data = read_exp_show(args.input) if args.input else run_dvc_exp_show(args.all_commits)
    exps, skipped = parse_experiments(data, args.metrics_file)
    if not exps:
        raise DataError(
            f"compare: no experiment has {args.metrics_file}"
            + (f" (skipped: {', '.join(skipped)})" if skipped else "")
            + "; run `dvc exp run` first or check --metrics-file"
        )
    from pipeline.core.atomic import atomic_dir

    out = Path(args.out)
    md = markdown_table(exps, skipped)
    with atomic_dir(out, owner="compare", legacy=("compare.md", "compare.json", "compare.png")) as tmp:
        (tmp / "compare.md").write_text("# Comparison across experiments\n\n" + md + "\n", encoding="utf-8")
        (tmp / "compare.json").write_text(json.dumps({"rows": table_rows(exps), "skipped": skipped}, indent=2) + "\n")
        plot_compare(exps, tmp / "compare.png")
    print(md)
    print(f"\ncompare: {len(exps)} experiments -> {out / 'compare.md'}, {out / 'compare.png'}")

