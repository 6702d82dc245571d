"""The human report: ``report.md`` (figures linked) and ``report.html`` (self-contained, offline).

Both are rendered from the same table model (:class:`Table`), so they always show the same numbers.
The HTML embeds every PNG as a base64 ``data:`` URI and carries its CSS inline: it has no external
reference at all (no CDN, no web font, no link), so it opens from a copied file or an e-mail attachment.

Display conventions: accuracies in %, forgetting and BWT in percentage points, ``mean ± std`` over
seeds (sample std; no ``±`` with one seed). In the comparison table the best value among the strategies
other than the upper bound is bold (higher is better for Avg Acc, Last Acc and BWT; lower for forgetting
and WER; buffer size and training time are costs, not scores, and are not marked). Ties at the displayed
precision are all bold; a column where all of them tie has no bold.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.report.figures import Figure
from pipeline.report.aggregate import StrategySummary

# ----------------------------------------------------------------------------- table model


@dataclass
class Cell:
    text: str
    bold: bool = False
    italic: bool = False
    numeric: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass
class SeedsReport:
    """What a track's report.md and report.html show (both rendered from the same blocks): its summary over
    seeds (metrics.json), the seeds, the params file it came from and its figures."""

    summary: dict
    seeds: list[int]
    params_path: str
    figures: list[Figure] = field(default_factory=list)


def write_json(path: Path, obj: Any) -> None:
    """A report's JSON file (metrics, plot data): indented, NaN refused, one trailing newline."""
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def seeds_word(n: int) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} seed{'s' * (n != 1)}"


@dataclass
class ReportContext:
    """Everything the report shows; built by the evaluate stage."""

    title: str
    summaries: dict[str, StrategySummary]
    upper_bound: Optional[str]
    seeds: list[int]
    tasks_info: dict[str, Any]  # data/prepared/tasks.json
    params: dict[str, Any]  # the whole params.yaml, for display only
    params_text: str
    params_path: str
    provenance: dict[str, str]
    figures: list[Figure] = field(default_factory=list)
    eval_splits: list[str] = field(default_factory=lambda: ["test"])  # the data split(s) the rows measured


# ----------------------------------------------------------------------------- formatting


def fmt_pct(mean: Optional[float], std: Optional[float] = None, digits: int = 2) -> str:
    """A fraction as percent (or percentage points), ``"76.46 ± 1.20"``; ``"n/a"`` for None."""
    if mean is None or (isinstance(mean, float) and not np.isfinite(mean)):
        return "n/a"
    s = f"{100 * mean:.{digits}f}"
    if std is not None:
        s += f" ± {100 * std:.{digits}f}"
    return s


def fmt_duration(seconds: float) -> str:
    """``"12.3 s"``, ``"4.5 min"`` or ``"1.25 h"``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fmt_count(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1f}"


def provenance(params_path: str | Path) -> dict[str, str]:
    """Git commit (``git rev-parse HEAD``, ``"unknown"`` outside a repo or before the first commit),
    sha256 of the params file and the UTC date of the report."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        commit = proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        digest = hashlib.sha256(Path(params_path).read_bytes()).hexdigest()
    except OSError:
        digest = "unknown"
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return {"git_commit": commit, "params_sha256": digest, "date": date}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _short(v: Any, limit: int = 90) -> str:
    s = v if isinstance(v, str) else json.dumps(v, separators=(", ", ": "))
    return s if len(s) <= limit else s[: limit - 1] + "…"


# ----------------------------------------------------------------------------- the tables

# (header, attribute of StrategySummary, direction: +1 higher is better, -1 lower, 0 not ranked)
_COLUMNS = [
    ("Avg Acc (%)", "avg_acc", +1),
    ("Last Acc (%)", "last_acc", +1),
    ("Forgetting (pp)", "forgetting", -1),
    ("BWT (pp)", "bwt", +1),
]


def comparison_table(ctx: ReportContext) -> Table:
    """Strategy x (Avg Acc, Last Acc, forgetting, BWT, WER, buffer, training time); best non-UB bold."""
    cells: dict[str, list[Cell]] = {}
    for name, s in ctx.summaries.items():
        row = [Cell(f"{name} (upper bound)" if name == ctx.upper_bound else name, italic=name == ctx.upper_bound)]
        for _, attr, _ in _COLUMNS:
            mean, std = getattr(s, attr)
            row.append(Cell(fmt_pct(mean, std), numeric=True))
        row.append(Cell(fmt_pct(s.wer_last), numeric=True))
        row.append(Cell(fmt_count(s.buffer_size), numeric=True))
        row.append(Cell(fmt_duration(s.train_seconds), numeric=True))
        cells[name] = row
    ranked = _COLUMNS + [("WER (%)", "wer_last", -1)]
    for col, (_, attr, direction) in enumerate(ranked, start=1):
        vals = {}
        for name, s in ctx.summaries.items():
            v = getattr(s, attr)
            v = v[0] if isinstance(v, tuple) else v
            if name != ctx.upper_bound and v is not None:
                vals[name] = round(100 * v, 2)  # compare at the displayed precision
        # No mark when every candidate ties (e.g. one strategy, or the same WER everywhere): no winner.
        if vals and (len(vals) == 1 or len(set(vals.values())) > 1):
            best = max(vals.values()) if direction > 0 else min(vals.values())
            for name, v in vals.items():
                if v == best:
                    cells[name][col].bold = True
    n_seeds = sorted({s.n_seeds for s in ctx.summaries.values()})
    if n_seeds == [1]:
        spread = f"One seed ({ctx.seeds[0]}): no spread over seeds is shown."
    else:
        spread = f"Mean ± sample std over {'/'.join(map(str, n_seeds))} seeds."
    note = (
        f"{spread} Avg Acc: mean over tasks of the accuracy on all seen "
        "classes; Last Acc: the same after the last task; forgetting: mean over tasks j < T-1 of "
        "max_l R[l][j] − R[T-1][j]; BWT: mean of R[T-1][j] − R[j][j]; WER: greedy transcripts on all seen "
        "test data after the last task. Bold: best value among the strategies other than the upper bound. "
        "Buffer: rehearsal samples held after the last task; training time: sum over tasks, mean over seeds."
    )
    header = ["Strategy"] + [h for h, _, _ in _COLUMNS] + ["WER (%)", "Buffer", "Training time"]
    return Table(header, list(cells.values()), note)


def per_task_table(ctx: ReportContext) -> Table:
    """Final accuracy R[T-1][j] per task j (%), mean ± std over seeds."""
    T = len(next(iter(ctx.summaries.values())).final_per_task)
    rows = []
    for name, s in ctx.summaries.items():
        std = s.final_per_task_std
        rows.append([Cell(name, italic=name == ctx.upper_bound)] + [
            Cell(fmt_pct(float(s.final_per_task[j]), None if std is None else float(std[j]), 1), numeric=True)
            for j in range(T)
        ])  # fmt: skip
    return Table(["Strategy"] + [f"task {j}" for j in range(T)], rows,
                 "Accuracy (%) of the final model on each task's test classes (last row of the accuracy matrix).")  # fmt: skip


def per_class_table(ctx: ReportContext) -> Table:
    """Final accuracy (%) of every class, grouped by task, one column per strategy (mean over seeds)."""
    first = next(iter(ctx.summaries.values()))
    names = list(ctx.summaries)
    rows = []
    for j, classes in enumerate(first.task_classes):
        for c in classes:
            row = [Cell(str(j), numeric=True), Cell(c)]
            for n in names:
                v = ctx.summaries[n].final_per_class.get(c)
                row.append(Cell(fmt_pct(v, None, 1), numeric=True))
            rows.append(row)
    return Table(["Task", "Class"] + names, rows, "Accuracy (%) per class after the last task, mean over seeds.")


def tasks_table(ctx: ReportContext) -> Table:
    info = ctx.tasks_info
    names = info.get("task_names") or next(iter(ctx.summaries.values())).task_classes
    ntr, nte = info.get("n_train_per_task") or [], info.get("n_test_per_task") or []
    rows = []
    for j, classes in enumerate(names):
        rows.append([
            Cell(str(j), numeric=True), Cell(str(len(classes)), numeric=True), Cell(", ".join(classes)),
            Cell(str(ntr[j]) if j < len(ntr) else "?", numeric=True), Cell(str(nte[j]) if j < len(nte) else "?", numeric=True),
        ])  # fmt: skip
    return Table(["Task", "Classes", "Class names", "Train", "Test"], rows)


def params_table(ctx: ReportContext) -> Table:
    flat = flatten(ctx.params)
    return Table(["Parameter", "Value"], [[Cell(k), Cell(_short(v))] for k, v in flat.items()])


def setting_items(ctx: ReportContext) -> list[tuple[str, str]]:
    info = ctx.tasks_info
    T = len(next(iter(ctx.summaries.values())).final_per_task)
    return [
        ("Data source", str(info.get("source", "unknown"))),
        ("Split preset", str(info.get("preset") or "custom")),
        ("Tasks", str(T)),
        ("Evaluated on", ", ".join(ctx.eval_splits) + " split"),
        ("Class order", _short(info.get("class_order", "unknown"), 200)),
        ("Seeds", ", ".join(map(str, ctx.seeds))),
        ("Strategies", ", ".join(ctx.summaries)),
        ("Upper bound", ctx.upper_bound if ctx.upper_bound in ctx.summaries else "none"),
    ]


def provenance_items(ctx: ReportContext) -> list[tuple[str, str]]:
    p = ctx.provenance
    return [
        ("Git commit", p.get("git_commit", "unknown")),
        (f"sha256 of {ctx.params_path}", p.get("params_sha256", "unknown")),
        ("Report date (UTC)", p.get("date", "unknown")),
    ]


# ----------------------------------------------------------------------------- markdown


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _md_table(t: Table) -> str:
    def fmt(c: Cell) -> str:
        s = _md_escape(c.text)
        if c.bold:
            s = f"**{s}**"
        if c.italic:
            s = f"*{s}*"
        return s

    lines = ["| " + " | ".join(_md_escape(h) for h in t.header) + " |"]
    aligns = ["---:" if t.rows and t.rows[0][i].numeric else "---" for i in range(len(t.header))]
    lines.append("| " + " | ".join(aligns) + " |")
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in t.rows]
    out = "\n".join(lines)
    if t.note:
        out += f"\n\n{t.note}"
    return out


def _summary_line(ctx: ReportContext) -> str:
    info = ctx.tasks_info
    T = len(next(iter(ctx.summaries.values())).final_per_task)
    return (
        f"{len(ctx.summaries)} strategies, {len(ctx.seeds)} seed(s), {T} tasks; data: "
        f"{info.get('source', 'unknown')}, split {info.get('preset') or 'custom'}."
    )


def render_markdown(ctx: ReportContext, fig_prefix: str = "figures/") -> str:
    """The report as GitHub-flavoured markdown; figures are linked relative to the report."""
    out = [f"# {ctx.title}", "", _summary_line(ctx), "", "## Comparison", "", _md_table(comparison_table(ctx)), ""]
    out += ["## Figures", ""]
    for f in ctx.figures:
        out += [f"### {f.title}", "", f"![{f.title}]({fig_prefix}{f.filename})", "", f.caption, ""]
    out += ["## Final accuracy per task", "", _md_table(per_task_table(ctx)), ""]
    out += ["## Final accuracy per class", "", _md_table(per_class_table(ctx)), ""]
    out += ["## Setting", ""] + [f"- **{k}**: {_md_escape(v)}" for k, v in setting_items(ctx)] + [""]
    out += ["### Tasks", "", _md_table(tasks_table(ctx)), ""]
    out += ["### Parameters", "", _md_table(params_table(ctx)), ""]
    out += ["## Provenance", ""] + [f"- **{k}**: `{v}`" for k, v in provenance_items(ctx)] + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1b1b1b;
 max-width:1240px;margin:24px auto;padding:0 20px;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:1em 0 .4em}
.lead{color:#555;margin-top:0}
.wrap{overflow-x:auto;margin:.5em 0}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:4px 9px;vertical-align:top}
th{background:#f0f3f6;text-align:left;white-space:nowrap}
tr:nth-child(even) td{background:#f8f9fa}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.names{max-width:640px}
.note{color:#555;font-size:.85em;max-width:1000px}
figure{margin:.6em 0 1.2em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}
.grid{display:flex;flex-wrap:wrap;gap:14px}.grid figure{flex:0 1 560px;margin:0}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:3px 16px;font-size:.92em}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-all}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:.82em}
details{margin:.5em 0}summary{cursor:pointer;color:#0b4f8a}
"""


def _h(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _html_table(t: Table, wide_text_col: Optional[int] = None) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in t.header)
    body = []
    for row in t.rows:
        tds = []
        for i, c in enumerate(row):
            s = _h(c.text)
            if c.bold:
                s = f"<strong>{s}</strong>"
            if c.italic:
                s = f"<em>{s}</em>"
            cls = "num" if c.numeric else ("names" if i == wide_text_col else "")
            tds.append(f'<td class="{cls}">{s}</td>' if cls else f"<td>{s}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    out = f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    if t.note:
        out += f'<p class="note">{_h(t.note)}</p>'
    return out


def _img(fig: Figure, fig_dir: Path) -> str:
    data = base64.b64encode((fig_dir / fig.filename).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_h(fig.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_h(fig.caption)}</figcaption></figure>"
    )


def _kv(items: list[tuple[str, str]], code: bool = False) -> str:
    inner = "".join(f"<dt>{_h(k)}</dt><dd>{'<code>' + _h(v) + '</code>' if code else _h(v)}</dd>" for k, v in items)
    return f'<dl class="kv">{inner}</dl>'


def render_html(ctx: ReportContext, fig_dir: Path) -> str:
    """The report as one self-contained HTML page (images inlined from ``fig_dir``)."""
    heatmaps = [f for f in ctx.figures if f.filename.startswith("accuracy_matrix_")]
    others = [f for f in ctx.figures if f not in heatmaps]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(ctx.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_h(ctx.title)}</h1>", f'<p class="lead">{_h(_summary_line(ctx))}</p>',
        "<h2>Comparison</h2>", _html_table(comparison_table(ctx)),
        "<h2>Figures</h2>",
    ]  # fmt: skip
    for f in others:
        parts += [f"<h3>{_h(f.title)}</h3>", _img(f, fig_dir)]
    if heatmaps:
        parts += ["<h3>Accuracy matrices</h3>", '<p class="note">' + _h(heatmaps[0].caption) + "</p>", '<div class="grid">']
        parts += [_img(Figure(f.filename, f.title, f.title.split(": ", 1)[-1]), fig_dir) for f in heatmaps]
        parts += ["</div>"]
    parts += ["<h2>Final accuracy per task</h2>", _html_table(per_task_table(ctx))]
    parts += [
        "<h2>Final accuracy per class</h2>",
        f"<details><summary>Show {sum(len(t) for t in next(iter(ctx.summaries.values())).task_classes)} classes</summary>",
        _html_table(per_class_table(ctx)), "</details>",
    ]  # fmt: skip
    parts += ["<h2>Setting</h2>", _kv(setting_items(ctx)), "<h3>Tasks</h3>", _html_table(tasks_table(ctx), wide_text_col=2)]
    parts += [
        "<h3>Parameters</h3>", _html_table(params_table(ctx)),
        f"<details><summary>Full {_h(ctx.params_path)}</summary><pre>{_h(ctx.params_text)}</pre></details>",
    ]  # fmt: skip
    parts += ["<h2>Provenance</h2>", _kv(provenance_items(ctx), code=True), "</body></html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- block reports (cwcl, m3col)
# A track report is a title and a list of (kind, value) blocks: h2, h3, p (text), table (Table), figure
# (Figure), kv (key-value pairs); these render it as markdown and as one self-contained HTML page.


def blocks_markdown(title: str, blocks: list[tuple[str, Any]]) -> str:
    md = {"h2": lambda x: f"## {x}", "h3": lambda x: f"### {x}", "p": str, "table": _md_table,
          "figure": lambda f: f"### {f.title}\n\n![{f.title}](figures/{f.filename})\n\n{f.caption}",
          "kv": lambda kv: "\n".join(f"- **{k}**: `{v}`" for k, v in kv)}
    return "\n\n".join([f"# {title}"] + [md[k](x) for k, x in blocks]) + "\n"


def blocks_html(title: str, blocks: list[tuple[str, Any]], fig_dir: Path) -> str:
    """One self-contained page: inline CSS, PNGs as data: URIs."""
    html_of = {"h2": lambda x: f"<h2>{_h(x)}</h2>", "h3": lambda x: f"<h3>{_h(x)}</h3>",
               "p": lambda x: f"<p>{_h(x)}</p>", "table": _html_table,
               "figure": lambda f: f"<h3>{_h(f.title)}</h3>{_img(f, fig_dir)}", "kv": lambda kv: _kv(kv, code=True)}
    head = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_h(title)}</h1>"]
    return "\n".join(head + [html_of[k](x) for k, x in blocks] + ["</body></html>", ""])
