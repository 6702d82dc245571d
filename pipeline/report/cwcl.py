"""The CWCL report: CL against CWCL (and the supervised bound) over seeds, as report.md, report.html,
metrics.json and plot data. The runs are read and summarised by :mod:`pipeline.report.cwcl_runs`, the
figures drawn by :mod:`pipeline.report.cwcl_figures`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pipeline.report.cwcl_figures import write_figures
from pipeline.report.cwcl_runs import (CLAIMS, LABELS, METRICS, TASKS, per_class, per_class_rows, summarise, verdict,
                                       zeroshot_rows)
from pipeline.report.figures import Figure
from pipeline.report.render import Cell, Table, blocks_html, blocks_markdown, fmt_pct, provenance, write_json


# ----------------------------------------------------------------------------- the report


@dataclass
class Report:
    """What report.md and report.html show (both rendered from the same blocks)."""

    summary: dict
    runs: dict
    losses: list[str]
    seeds: list[int]
    params_path: str
    figures: list[Figure] = field(default_factory=list)


def pp(x: Optional[float], std: Optional[float] = None) -> str:
    """A signed difference in percentage points, ``"+3.1 ± 1.2"``."""
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def task_table(e: dict, with_note: bool) -> Table:
    present = [m for m in METRICS if any(m in e.get(l, {}) for l in LABELS)]
    rows = []
    for loss, label in LABELS.items():
        if loss in e:
            rows.append([Cell(label, italic=loss == "supervised")]
                        + [Cell(fmt_pct(e[loss].get(m), e[loss].get(f"{m}_std"), 1), numeric=True) for m in present])
    chance = {"unseen": "chance_unseen", "seen": "chance_seen", "gzsl_unseen": "chance_all", "gzsl_seen": "chance_all",
              "all": "chance_all"}  # harmonic: no chance level of its own
    rows.append([Cell("chance", italic=True)]
                + [Cell(fmt_pct(e["chance"].get(chance.get(m, "")), None, 1), numeric=True) for m in present])
    if "cwcl_minus_cl" in e:
        d = e["cwcl_minus_cl"]
        rows.append([Cell("CWCL − CL (paired)", bold=True)]
                    + [Cell(pp(d[m]["mean"], d[m].get("std")) if m in d else "n/a", numeric=True) for m in present])
    names = {"unseen": "Held-out (%)", "seen": "Seen (%)", "gzsl_unseen": "GZSL held-out (%)",
             "gzsl_seen": "GZSL seen (%)", "harmonic": "Harmonic (%)", "all": "All (%)"}
    note = ("Held-out: held-out classes among the held-out classes (zero-shot); seen: training classes among "
            "themselves; GZSL: the same samples among all classes, harmonic = 2us/(u+s) of the two; all: every "
            "sample among every class. CWCL − CL in percentage points, paired by seed. Supervised: a classifier "
            "trained on every class, held-out ones included (the bound).")
    return Table(["Model"] + [names[m] for m in present], rows, note if with_note else "")


def seeds_table(e: dict, seeds: list[int]) -> Table:
    d = e["cwcl_minus_cl"]
    cols = [m for m in ("unseen", "harmonic", "all") if m in d]
    rows = [[Cell(str(s), numeric=True)] + [Cell(pp(d[m].get(f"s{s}")), numeric=True) for m in cols] for s in seeds]
    names = {"unseen": "Δ held-out (pp)", "harmonic": "Δ harmonic (pp)", "all": "Δ all (pp)"}
    return Table(["Seed"] + [names[m] for m in cols], rows)


def claim_sentence(key: str, e: dict, seeds: list[int]) -> str:
    low, high, what = CLAIMS[key]
    c, n = e["claim"], e["n_seeds"]
    head = f"{key}: the paper claims CWCL − CL = +{100 * low:.0f} to +{100 * high:.0f} % absolute on {what}; "
    if c["measured"] is None:
        return head + "not measured here (cl and cwcl must both be in cwcl.losses)."
    d = e["cwcl_minus_cl"]["unseen"]
    per = ", ".join(pp(d[f"s{s}"]) for s in seeds)
    where = {"in": "inside", "above": "above", "below": "below"}[c["verdict"]]
    return (head + f"we measure {pp(d['mean'], d.get('std'))} pp on the held-out accuracy over {n} seed"
            f"{'s' * (n != 1)} (per seed {per}): {where} the paper's range.")


def claims_table(r: Report) -> Table:
    rows = []
    for task in TASKS:
        for name, e in r.summary[task].items():
            if "claim" in e:
                c = e["claim"]
                rows.append([Cell(f"{task} / {name}"), Cell(f"+{100 * c['paper_low']:.0f} to +{100 * c['paper_high']:.0f}"),
                             Cell(pp(c["measured"], e.get("cwcl_minus_cl", {}).get("unseen", {}).get("std")), numeric=True),
                             Cell(str(e["n_seeds"]), numeric=True), Cell(c["verdict"], bold=True)])
    return Table(["Task", "Paper: CWCL − CL (% abs.)", "Ours: CWCL − CL held-out (pp)", "Seeds", "Ours vs paper"], rows,
                 "Paper: Srinivasa et al., CWCL, NeurIPS 2023 (abstract). Our setting differs (small encoders trained "
                 "from scratch on a synthetic corpus, MiniLM / EfficientNet-lite towers, our own held-out splits), "
                 "so this compares effect sizes, not accuracies.")


def temps_table(r: Report) -> Table:
    rows = [[Cell(task), Cell(LABELS[loss]), Cell(f"{t['tau']:g}" if t["tau"] is not None else "n/a", numeric=True),
             Cell(f"{t['final_tau']:.4g}" if t["final_tau"] is not None else "n/a", numeric=True),
             Cell("learned" if t["learned"] else "fixed")]
            for task in TASKS for loss, t in r.summary["temperatures"][task].items()]
    return Table(["Task", "Loss", "τ (params)", "τ at the end (mean over seeds)", "Kind"], rows)


def blocks(r: Report) -> list[tuple[str, Any]]:
    """The report's content once, as (kind, payload): h2, h3, p, table, figure."""
    sets = [f"{t}/{n}" for t in TASKS for n in r.summary[t]]
    out: list[tuple[str, Any]] = [
        ("p", f"Losses {', '.join(r.losses)}; seeds {', '.join(map(str, r.seeds))}; test sets {', '.join(sets)}."),
        ("h2", "The paper's claim beside our numbers"), ("table", claims_table(r)),
    ]
    out += [("p", claim_sentence(f"{t}/{n}", e, r.seeds)) for t in TASKS for n, e in r.summary[t].items() if "claim" in e]
    for task in TASKS:
        for name, e in r.summary[task].items():
            first = not any(k == "h2" and "held out)" in x for k, x in out)  # the columns' note under the first table
            out += [("h2", f"{task} / {name} ({e['n_unseen']} of {e['n_classes']} classes held out)"),
                    ("table", task_table(e, first))]
            if "cwcl_minus_cl" in e:
                out += [("h3", "Paired differences CWCL − CL per seed"), ("table", seeds_table(e, r.seeds))]
    out += [("h2", "Figures")] + [("figure", f) for f in r.figures]
    out += [("h2", "Temperatures"), ("table", temps_table(r))]
    prov = provenance(r.params_path)
    out += [("h2", "Provenance"), ("kv", [("Git commit", prov["git_commit"]),
                                          (f"sha256 of {r.params_path}", prov["params_sha256"]),
                                          ("Report date (UTC)", prov["date"])])]
    return out


TITLE = "CWCL cross-modal transfer: zero-shot report"


def render_markdown(r: Report) -> str:
    return blocks_markdown(TITLE, blocks(r))


def render_html(r: Report, fig_dir: Path) -> str:
    return blocks_html(TITLE, blocks(r), fig_dir)


def write_all(out: Path, models: Path, runs: dict, losses: list[str], seeds: list[int], params_path: str) -> dict:
    """Every file of the report into ``out`` (a fresh folder); returns the metrics."""
    summary = summarise(runs, losses, seeds)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", summary)
    write_json(out / "plots" / "zeroshot.json", zeroshot_rows(summary))
    write_json(out / "plots" / "per_class.json", per_class_rows(runs, losses, seeds))
    r = Report(summary, runs, losses, seeds, params_path)
    r.figures = write_figures(runs, summary, Path(models), losses, seeds, out / "figures")
    (out / "report.md").write_text(render_markdown(r), encoding="utf-8")
    (out / "report.html").write_text(render_html(r, out / "figures"), encoding="utf-8")
    return summary
