"""The GenView report: self-supervised learning with diffusion-generated views and a quality-driven contrastive
loss (Li et al., ECCV 2024) against SimCLR over seeds, with the generator's quality and the foreground-ratio
check, as report.md, report.html, metrics.json and plot data. Runs are read and summarised by
:mod:`pipeline.report.genview_runs`, figures drawn by :mod:`pipeline.report.genview_figures`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report.cwcl import pp
from pipeline.report.genview_figures import write_figures
from pipeline.report.genview_runs import METRICS, VERDICTS, accuracy_rows, curve_rows, key, label, summarise
from pipeline.report.render import (Cell, SeedsReport, Table, blocks_html, blocks_markdown, fmt_pct, provenance,
                                    seeds_word, write_json)

TITLE = "GenView: generated views and a quality-driven loss for self-supervised learning, against SimCLR"
PAPER = "Li et al., ECCV 2024"
#: the paper's claims set beside ours (ImageNet-1k, ResNet-50, linear probe top-1)
PAPER_CLAIMS = (
    ("MoCo v2 + GenView vs MoCo v2, ImageNet-1k linear probe", "+2.5 pp"),
    ("MoCo v3 + GenView, ResNet-50, 100 epochs, ImageNet-1k linear probe", "72.7 %"),
)
METRIC_NAMES = {"probe_shape": "linear probe, shape", "probe_colour": "linear probe, colour",
                "knn_shape": "k-NN, shape", "knn_colour": "k-NN, colour"}


@dataclass
class Inputs:
    """What evaluate-genview gathers for the report besides the runs."""

    foreground: dict  # spearman, n, bin counts, the PCA's settings (from the views stage and the true masks)
    generator: dict  # reports/diffusion/metrics.json's quality and timing (may be empty: not measured)
    views_meta: dict  # views.json
    ratio: Any  # float [N] estimated foreground ratio
    true_share: Any  # float [N] the exact mask's pixel share
    pairs: dict  # bin -> (real uint8 [k,S,S,3], fixed view, adaptive view) for the view-pair figure
    samples_png: Path | None = None  # the generator's per-class sample grid


def variants_table(s: dict, seeds: list[int]) -> Table:
    vs = list(s["variants"])
    one = len(seeds) == 1
    best = {k: max(s["variants"][v][k]["mean"] for v in vs) for k in map(key, METRICS)}
    rows = []
    for v in vs:
        e, d = s["variants"][v], s["paired_vs_simclr"].get(v)
        row = [Cell(label(v))]
        for k in map(key, METRICS):
            row.append(Cell(fmt_pct(e[k]["mean"], None if one else e[k]["std"], 1), numeric=True,
                            bold=round(e[k]["mean"], 4) == round(best[k], 4)))
        for k in ("probe_shape", "knn_shape"):
            row.append(Cell("reference" if v == "simclr" else
                            pp(d[k]["mean"], None if one else d[k]["std"]) if d else "n/a", numeric=True))
        rows.append(row)
    spread = f"mean ± sample std over {seeds_word(len(seeds))}" if not one else f"one seed ({seeds[0]}), no spread"
    note = (f"Test accuracy in % ({spread}) of the frozen encoder: a linear probe per attribute (chosen on the valid "
            "split) and k-NN on the training images. Shape is the class of the corpus, colour its colour attribute. "
            "Δ vs SimCLR: paired by seed, in percentage points. Bold: the best mean per column.")
    header = ["Variant", *(f"{METRIC_NAMES[k]} (%)" for k in map(key, METRICS)), "Δ probe shape (pp)",
              "Δ k-NN shape (pp)"]
    return Table(header, rows, note)


def verdict_sentences(s: dict, seeds: list[int]) -> list[str]:
    out = []
    for a, b, what in VERDICTS:
        v = s["verdicts"].get(f"{a}_vs_{b}")
        if v is None:
            out.append(f"{label(a)} vs {label(b)} not measured ({a} and {b} must both be in genview.ssl.variants).")
            continue
        parts = []
        for k in map(key, METRICS):
            d = v[k]
            parts.append(f"{METRIC_NAMES[k]} {pp(d['mean'], d['std'] if len(seeds) > 1 else None)} pp "
                         f"({d['verdict']})")
        out.append(f"{label(a)} − {label(b)} ({what}), paired over {seeds_word(len(seeds))}: " + "; ".join(parts)
                   + ".")
    return out


def generator_table(g: dict) -> Table:
    q, t = g.get("quality", {}), g.get("timing", {})
    rows = [[Cell("class consistency"), Cell(fmt_pct(q.get("class_consistency"), None, 1), numeric=True),
             Cell("share of class-conditioned samples an independent CNN (trained on real images) names as their "
                  f"class; the CNN's own real test accuracy: {fmt_pct(q.get('classifier_test_accuracy'), None, 1)} %")],
            [Cell("Fréchet distance (generated vs real test)"), Cell(_num(q.get("frechet_distance")), numeric=True),
             Cell(f"in {q.get('frechet_features', 'the frozen image tower')} features, n = {q.get('frechet_n')}; "
                  "not FID (not Inception features)")],
            [Cell("its floor (real train vs real test)"), Cell(_num(q.get("frechet_floor")), numeric=True),
             Cell("the same distance between two real samples of the same size: what a perfect generator would get")],
            [Cell("training"), Cell(f"{t.get('steps', 'n/a')} steps", numeric=True),
             Cell(f"{t.get('train_seconds', 'n/a')} s on {t.get('threads', '?')} threads")]]
    return Table(["Generator quality", "Value", "What it is"], rows,
                 "The class-conditional generator of the diffusion stage (EMA weights, DDIM, classifier-free "
                 "guidance), measured there (reports/diffusion/metrics.json).")


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def foreground_sentence(f: dict) -> str:
    bins = ", ".join(f"{k}: {v}" for k, v in f.get("bin_counts", {}).items())
    return (f"Foreground ratio from a one-component PCA of the frozen tower's token maps ({f.get('grid')} tokens, "
            f"threshold so {f.get('share')} of all tokens are foreground) against the exact masks' pixel share, "
            f"{f.get('n')} training images: Spearman correlation {f.get('spearman', float('nan')):.3f}. Images per "
            f"noise level (of 1000 steps): {bins}.")


def paper_table(s: dict, seeds: list[int]) -> Table:
    rows = [[Cell(c), Cell(f"paper ({PAPER})"), Cell(v, numeric=True)] for c, v in PAPER_CLAIMS]
    d = s["paired_vs_simclr"].get("genview", {}).get("probe_shape")
    if d:
        rows.append([Cell("GenView vs SimCLR, our shapes corpus, linear probe (shape)"),
                     Cell(f"this report, {seeds_word(len(seeds))}"),
                     Cell(f"{pp(d['mean'], d['std'] if len(seeds) > 1 else None)} pp", numeric=True)])
    return Table(["Claim", "Reported by", "Value"], rows,
                 "DIFFERENT SETTINGS: the paper uses a pretrained Stable-Diffusion-scale generator, ImageNet and "
                 "ResNet-50 for 100+ epochs; ours is a generator trained here on 32-px shapes and a small CNN trained "
                 "for a few epochs. Only the sign and size of our paired differences are evidence about the method.")


def blocks(r: SeedsReport) -> list[tuple[str, Any]]:
    s, seeds = r.summary, r.seeds
    out: list[tuple[str, Any]] = [
        ("p", f"Seeds {', '.join(map(str, seeds))}. Variants: {', '.join(label(v) for v in s['variants'])}. Same "
              "encoder, augmentations and budget; only the second view and the loss differ. The generated views are "
              "SDEdit of each training image by the generator conditioned on the null class (SSL sees no labels)."),
        ("h2", "Verdicts"),
        ("p", "Better: the paired mean difference minus one sample std is above 0; worse: the mean plus one std is "
              "below 0; otherwise no clear difference (one seed: not judged)."),
    ]
    out += [("p", x) for x in verdict_sentences(s, seeds)]
    out += [("h2", "Linear probe and k-NN"), ("table", variants_table(s, seeds))]
    out += [("h2", "The generator"), ("table", generator_table(s.get("generator", {})))]
    out += [("h2", "Adaptive noise: the foreground ratio"), ("p", foreground_sentence(s.get("foreground", {})))]
    out += [("h2", "The paper's claims"), ("table", paper_table(s, seeds))]
    out += [("h2", "Figures")] + [("figure", f) for f in r.figures]
    prov = provenance(r.params_path)
    out += [("h2", "Provenance"), ("kv", [("Git commit", prov["git_commit"]),
                                          (f"sha256 of {r.params_path}", prov["params_sha256"]),
                                          ("Report date (UTC)", prov["date"])])]
    return out


def write_all(out: Path, runs: dict, variants: list[str], seeds: list[int], params_path: str,
              inputs: Inputs) -> dict:
    """Every file of the report into ``out`` (a fresh folder); returns the metrics."""
    summary = summarise(runs, variants, seeds)
    summary["foreground"] = inputs.foreground
    summary["generator"] = inputs.generator
    (out / "plots").mkdir(parents=True, exist_ok=True)

    write_json(out / "metrics.json", summary)
    write_json(out / "plots" / "accuracy.json", accuracy_rows(summary))
    write_json(out / "plots" / "curves.json", curve_rows(runs, variants, seeds))
    r = SeedsReport(summary, seeds, params_path)
    r.figures = write_figures(runs, summary, seeds, inputs, out / "figures")
    (out / "report.md").write_text(blocks_markdown(TITLE, blocks(r)), encoding="utf-8")
    (out / "report.html").write_text(blocks_html(TITLE, blocks(r), out / "figures"), encoding="utf-8")
    return summary
