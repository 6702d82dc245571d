"""The M3CoL report: multimodal mixup-contrastive fusion (Kumar, Singhal et al., TMLR 2025) against its
baselines over seeds, as report.md, report.html, metrics.json and plot data. The runs are read and
summarised by :mod:`pipeline.report.m3col_runs`, the figures drawn by :mod:`pipeline.report.m3col_figures`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.report.cwcl import pp
from pipeline.report.m3col_figures import write_figures
from pipeline.report.m3col_runs import (TASKS, VERDICTS, accuracy_rows, curve_rows, label, summarise, variants_in)
from pipeline.report.render import (Cell, SeedsReport, Table, blocks_html, blocks_markdown, fmt_pct, provenance,
                                    seeds_word, write_json)

TITLE = "M3CoL: multimodal mixup-contrastive fusion against its baselines"
PAPER = "Kumar, Singhal et al., TMLR 2025"
# (dataset, text input, M3CoL's published test accuracy): BERT text encoder, ViT image encoder
PAPER_NUMBERS = (
    ("UPMC-Food-101", "web page text", 0.943),
    ("N24News", "headline", 0.808),
    ("N24News", "caption", 0.780),
    ("N24News", "abstract", 0.838),
)


def task_table(s: dict, task: str, seeds: list[int]) -> Table:
    e = s[task]
    vs = variants_in(s, task)
    best = max(e[v]["accuracy"] for v in vs)
    d = e.get("paired_vs_concat", {})
    rows = []
    for v in vs:
        x = e[v]
        std = x["accuracy_std"] if len(seeds) > 1 else None
        diff = "reference" if v == "concat" else pp(d[v]["mean"], d[v]["std"] if len(seeds) > 1 else None) if v in d \
            else "n/a"
        rows.append([Cell(label(v), italic=x["kind"] == "unimodal"), Cell(x["kind"]),
                     Cell(fmt_pct(x["accuracy"], std, 1), numeric=True, bold=round(x["accuracy"], 4) == round(best, 4)),
                     Cell(fmt_pct(x["macro_f1"], x["macro_f1_std"] if len(seeds) > 1 else None, 1), numeric=True),
                     Cell(diff, numeric=True),
                     Cell(", ".join(fmt_pct(x["seeds"][str(sd)], None, 1) for sd in seeds), numeric=True)])
    spread = f"mean ± sample std over {seeds_word(len(seeds))}" if len(seeds) > 1 else \
        f"one seed ({seeds[0]}), no spread"
    note = (f"Test accuracy and macro-F1 in % ({spread}; the epoch of each run chosen on the valid split). Δ vs "
            "UniConcat: the variant's accuracy minus UniConcat's, paired by seed, in percentage points. Per seed: "
            f"seeds {', '.join(map(str, seeds))} in order. Bold: the best mean; italic: one modality alone.")
    header = ["Variant", "Kind", "Accuracy (%)", "Macro-F1 (%)", "Δ vs UniConcat (pp)", "Per seed (%)"]
    return Table(header, rows, note)


def verdict_sentences(s: dict, task: str, seeds: list[int]) -> list[str]:
    out = []
    for a, b, what in VERDICTS:
        key = f"{a}_vs_{b}"
        if key not in s[task]["verdicts"]:
            out.append(f"{task}: {label(a)} vs {label(b)} not measured ({a} and {b} must both be in "
                       f"m3col.{task}.variants).")
            continue
        v = s[task]["verdicts"][key]
        per = f" (per seed {', '.join(pp(v['seeds'][str(sd)]) for sd in seeds)})" if len(seeds) > 1 else ""
        out.append(f"{task}: {label(a)} vs {label(b)} ({what}): {pp(v['mean'], v['std'] if len(seeds) > 1 else None)} "
                   f"pp paired over {seeds_word(len(seeds))}{per}: {v['verdict']}.")
    return out


def margin_sentence(s: dict, task: str, seeds: list[int]) -> str:
    m = s[task]["fusion_margin"]
    if m is None:
        return f"{task}: no fusion margin (m3col.{task}.variants needs a fusion and a unimodal variant)."
    fus, uni = fmt_pct(m["best_fusion_accuracy"], None, 1), fmt_pct(m["best_unimodal_accuracy"], None, 1)
    text = (f"{task}: the best fusion variant, {label(m['best_fusion'])} ({fus} %), minus the best unimodal one, "
            f"{label(m['best_unimodal'])} ({uni} %): {pp(m['margin'])} pp.")
    if "m3col_minus_best_unimodal" in m:
        d = m["m3col_minus_best_unimodal"]
        per = ", ".join(pp(d["seeds"][str(sd)]) for sd in seeds)
        text += (f" M3CoL − {label(m['best_unimodal'])} paired by seed: "
                 f"{pp(d['mean'], d['std'] if len(seeds) > 1 else None)} pp (per seed {per}).")
    return text


def conditions_table(s: dict, task: str) -> Table:
    vs = variants_in(s, task)
    rows = [[Cell(name), Cell(str(n), numeric=True)]
            + [Cell(fmt_pct(s[task][v].get("conditions", {}).get(name), None, 1), numeric=True) for v in vs]
            for name, n in s[task]["conditions_n"].items()]
    return Table(["Condition", "n"] + [label(v) for v in vs], rows,
                 "Test accuracy (%, mean over seeds) on the named test subsets the runs record; n: test samples.")


def ceilings_table(s: dict) -> Table:
    rows = []
    for task in TASKS:
        c = s[task]["ceiling"]
        if not c:
            rows.append([Cell(task), Cell("not recorded", italic=True)] + [Cell("n/a", numeric=True)] * 4)
            continue
        vs = variants_in(s, task)
        fusion = [v for v in vs if s[task][v]["kind"] == "fusion"]
        for name, value in c.items():
            # a modality's ceiling against that modality's run, any other (fused) against the best fusion variant
            v = name if name in vs and s[task][name]["kind"] == "unimodal" else \
                max(fusion, key=lambda x: s[task][x]["accuracy"]) if fusion else None
            ours = s[task][v]["accuracy"] if v else None
            rows.append([Cell(task), Cell(name), Cell(fmt_pct(value, None, 1), numeric=True),
                         Cell(label(v) if v else "n/a"), Cell(fmt_pct(ours, None, 1), numeric=True),
                         Cell(pp(None if ours is None else ours - value), numeric=True)])
    return Table(["Task", "Input", "Ceiling (%)", "Compared with", "Ours (%)", "Ours − ceiling (pp)"], rows,
                 "The analytic information ceilings the runs record (computed by the data stage from how the data "
                 "are degraded): upper bounds on the accuracy reachable from that input alone (image or speech, "
                 "text) or from both (fused). "
                 "A modality's ceiling is set beside that modality's run, the fused one beside the best fusion "
                 "variant (mean over seeds); a value above its ceiling would point at a leak or a wrong ceiling.")


def paper_table(s: dict, seeds: list[int]) -> Table:
    rows = [[Cell(f"{d} ({t})"), Cell(f"paper ({PAPER}): ViT image + BERT text encoders"), Cell("M3CoL"),
             Cell(f"{100 * a:.1f}", numeric=True)] for d, t, a in PAPER_NUMBERS]
    for task in TASKS:
        for v in ("m3col", "concat"):
            if v in s[task]:
                std = s[task][v]["accuracy_std"] if len(seeds) > 1 else None
                rows.append([Cell(f"our {task} task (source {s[task]['source']})"),
                             Cell(f"this report, {seeds_word(len(seeds))}"), Cell(label(v)),
                             Cell(fmt_pct(s[task][v]["accuracy"], std, 1), numeric=True)])
    same = sorted({s[t]["source"] for t in TASKS} & {"food101", "n24news"})
    caveat = (f" Where our source is {' or '.join(same)}, the dataset's name is the same but the encoders, split and "
              "training budget are ours." if same else "")
    return Table(["Dataset", "Reported by", "Model", "Test accuracy (%)"], rows,
                 "DIFFERENT DATASETS: the paper's rows are its published accuracies on UPMC-Food-101 and N24News with "
                 "large pretrained encoders; ours come from our own data, encoders and training budget. Set side by "
                 "side for scale only; the accuracies are not comparable, only the paired differences between our "
                 f"variants are evidence about the method.{caveat}")


def blocks(r: SeedsReport) -> list[tuple[str, Any]]:
    """The report's content once, as (kind, payload): h2, h3, p, table, figure, kv."""
    s, seeds = r.summary, r.seeds
    tasks = "; ".join(f"{t}: {', '.join(variants_in(s, t))} (source {s[t]['source']}, {s[t]['n_test']} test samples, "
                      f"{s[t]['n_classes']} classes)" for t in TASKS)
    out: list[tuple[str, Any]] = [
        ("p", f"Seeds {', '.join(map(str, seeds))}. Variants per task — {tasks}."),
        ("p", "Unimodal: one modality's encoder and head, cross-entropy. UniConcat: a fusion head on the concatenated "
              "embeddings, cross-entropy only. aux: UniConcat plus a unimodal auxiliary head per modality (three CE "
              "terms). clip: aux + 0.1 × InfoNCE. m3co: aux + 0.1 × M3Co every epoch. m3col: aux + 0.1 × (M3Co for "
              "the first third of the epochs, then SoftCLIP), the paper's method."),
        ("h2", "Verdicts"),
        ("p", "Better: the paired mean difference minus one sample std is above 0; worse: the mean plus one std is "
              "below 0; otherwise no clear difference (one seed: not judged)."),
    ]
    out += [("p", x) for t in TASKS for x in verdict_sentences(s, t, seeds)]
    out += [("h2", "Fusion margin")] + [("p", margin_sentence(s, t, seeds)) for t in TASKS]
    for task in TASKS:
        out += [("h2", f"{task} task"), ("table", task_table(s, task, seeds))]
        if s[task]["conditions_n"]:
            out += [("h3", f"{task}: accuracy per test condition"), ("table", conditions_table(s, task))]
    out += [("h2", "Analytic ceilings"), ("table", ceilings_table(s))]
    out += [("h2", "The paper's numbers"),
            ("p", f"Published M3CoL test accuracies ({PAPER}) beside ours. These are different datasets and "
                  "encoders: the table is context, not a reproduction."),
            ("table", paper_table(s, seeds))]
    out += [("h2", "Figures")] + [("figure", f) for f in r.figures]
    prov = provenance(r.params_path)
    out += [("h2", "Provenance"), ("kv", [("Git commit", prov["git_commit"]),
                                          (f"sha256 of {r.params_path}", prov["params_sha256"]),
                                          ("Report date (UTC)", prov["date"])])]
    return out


def render_markdown(r: SeedsReport) -> str:
    return blocks_markdown(TITLE, blocks(r))


def render_html(r: SeedsReport, fig_dir: Path) -> str:
    return blocks_html(TITLE, blocks(r), fig_dir)


def write_all(out: Path, runs: dict, variants: dict[str, list[str]], seeds: list[int], params_path: str) -> dict:
    """Every file of the report into ``out`` (a fresh folder); returns the metrics."""
    summary = summarise(runs, variants, seeds)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", summary)
    write_json(out / "plots" / "accuracy.json", accuracy_rows(summary))
    write_json(out / "plots" / "curves.json", curve_rows(runs, variants, seeds))
    r = SeedsReport(summary, seeds, params_path)
    r.figures = write_figures(runs, summary, seeds, out / "figures")
    (out / "report.md").write_text(render_markdown(r), encoding="utf-8")
    (out / "report.html").write_text(render_html(r, out / "figures"), encoding="utf-8")
    return summary
