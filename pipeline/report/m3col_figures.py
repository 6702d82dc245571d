"""The M3CoL report's figures (static PNGs: ``dvc plots`` HTML needs a CDN offline): accuracy per variant
with every seed and the analytic ceilings, per-class accuracy, the contrastive term and valid accuracy per
epoch with the M3Co -> SoftCLIP switch, and accuracy per test condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.report.figures import PALETTE, Figure, _plt, _save
from pipeline.report.m3col_runs import CONTRASTIVE, TASKS, label, per_class, variants_in

DPI = 120
FUSION_COLOURS = {"concat": PALETTE[0], "aux": PALETTE[5], "clip": PALETTE[2], "m3co": PALETTE[3], "m3col": PALETTE[1]}
UNIMODAL_GREYS = ("#9A9A9A", "#C8C8C8")  # the first and second modality of a task


def colour_map(summary: dict, task: str) -> dict[str, str]:
    """A colour per variant: unimodal ones greyed, the fusion ones in fixed colours (same in every figure)."""
    out, grey = {}, 0
    for v in variants_in(summary, task):
        if summary[task][v]["kind"] == "unimodal":
            out[v], grey = UNIMODAL_GREYS[grey % len(UNIMODAL_GREYS)], grey + 1
        else:
            out[v] = FUSION_COLOURS.get(v, PALETTE[7])
    return out


def _offsets(n: int, width: float) -> np.ndarray:
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)


def plot_accuracy(summary: dict, seeds: list[int], path: Path) -> None:
    """Per task: a bar per variant (mean test accuracy), each seed a dot, the ceilings as dashed lines
    (one dash pattern each, named in the legend)."""
    plt = _plt()
    widths = [max(4.5, 0.85 * len(variants_in(summary, t)) + 1.5) for t in TASKS]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(sum(widths) + 2.5, 4.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, task in zip(axes[0], TASKS):
        vs, col = variants_in(summary, task), colour_map(summary, task)
        for i, v in enumerate(vs):
            e = summary[task][v]
            ax.bar(i, 100 * e["accuracy"], 0.7, color=col[v], edgecolor="black" if v == "m3col" else col[v],
                   linewidth=1.2 if v == "m3col" else 0.5)
            accs = [100 * e["seeds"][str(s)] for s in seeds]
            ax.scatter(i + _offsets(len(accs), 0.3), accs, s=14, color="black", zorder=4,
                       label="one seed" if i == 0 else None)
            ax.text(i, max(accs) + 1.2, f"{100 * e['accuracy']:.1f}", ha="center", va="bottom", fontsize=8)
        ceiling = summary[task].get("ceiling") or {}
        styles = iter([(0, (5, 2)), (0, (2, 2)), (0, (6, 2, 1, 2)), (0, (1, 1))])
        for name, value in ceiling.items():
            ax.axhline(100 * value, color="black" if name == "fused" else "#555555", ls=next(styles, "--"), lw=1.2,
                       zorder=3, label=f"ceiling, {name}: {100 * value:.1f}")
        ax.set_xticks(range(len(vs)), [label(v).replace(" (", "\n(") for v in vs], rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 125)  # headroom above 100 for the legend, clear of the bars
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task} (source {summary[task].get('source')})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=4, framealpha=0.9)
    n = len(seeds)
    fig.suptitle(f"Test accuracy per variant: mean over {n} seed{'s' * (n != 1)} (bars), each seed (dots); "
                 "grey: one modality", fontsize=11)
    fig.tight_layout()
    _save(fig, path, DPI)


def per_class_variants(summary: dict, task: str) -> list[str]:
    """concat, m3col and the best unimodal variant, those of them the params list."""
    margin = summary[task].get("fusion_margin") or {}
    want = ["concat", "m3col", margin.get("best_unimodal")]
    return [v for v in want if v in variants_in(summary, task)]


def plot_per_class(runs: dict, summary: dict, seeds: list[int], path: Path) -> None:
    """Per task, each class's test accuracy (mean over seeds): concat, m3col and the best unimodal variant."""
    plt = _plt()
    n_classes = max(summary[t]["n_classes"] for t in TASKS)
    fig, axes = plt.subplots(len(TASKS), 1, figsize=(min(30.0, max(7.0, 0.34 * n_classes + 2.5)), 3.6 * len(TASKS)),
                             squeeze=False)
    for ax, task in zip(axes[:, 0], TASKS):
        vs, col = per_class_variants(summary, task), colour_map(summary, task)
        classes = runs[task, variants_in(summary, task)[0], seeds[0]].result["classes"]
        w = 0.8 / max(1, len(vs))
        acc = {v: per_class(runs, task, v, seeds) for v in vs}
        for j, v in enumerate(vs):
            y = [np.nan if a is None else 100 * a for a in acc[v]]
            ax.bar(np.arange(len(classes)) + (j - (len(vs) - 1) / 2) * w, y, w, color=col[v], label=label(v))
        for c in range(len(classes)):
            if vs and all(acc[v][c] is None for v in vs):
                ax.text(c, 2, "no test\nsample", ha="center", va="bottom", fontsize=6, color="#555555")
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 125)  # headroom above 100 for the legend, clear of the bars
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: per-class test accuracy", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if vs:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.text(0.5, 0.5, "neither concat, m3col nor a unimodal variant is listed", ha="center", va="center",
                    transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path, DPI)


def curve_series(runs: dict, task: str, variants: list[str], seeds: list[int]) -> dict[str, Any]:
    """What the curves figure draws for a task: per variant and seed the (epoch, contrastive term) and
    (epoch, valid accuracy) series, and the epochs at which m3col switched from M3Co to SoftCLIP."""
    drawn = [v for v in CONTRASTIVE if v in variants]
    out: dict[str, Any] = {"contrastive": {}, "valid": {}, "switch": []}
    for v in variants:
        for s in seeds:
            h = runs[task, v, s].history
            if v in drawn:
                pts = [(r["epoch"], r["train"]["contrastive"]) for r in h if r["train"].get("contrastive") is not None]
                out["contrastive"].setdefault(v, {})[s] = pts
            out["valid"].setdefault(v, {})[s] = [(r["epoch"], r["valid"]["accuracy"]) for r in h if r.get("valid")]
    if "m3col" in variants:
        out["switch"] = sorted({runs[task, "m3col", s].result["switch_epoch"] for s in seeds
                                if runs[task, "m3col", s].result.get("switch_epoch") is not None})
    return out


def _mean_curve(per_seed: dict[int, list[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """The mean over seeds at each epoch that every seed has."""
    common = sorted(set.intersection(*(set(e for e, _ in pts) for pts in per_seed.values()))) if per_seed else []
    vals = [float(np.mean([dict(pts)[e] for pts in per_seed.values()])) for e in common]
    return common, vals


def plot_curves(runs: dict, summary: dict, seeds: list[int], path: Path) -> dict[str, list[float]]:
    """Per task: the contrastive term per epoch (clip, m3co, m3col) and the valid accuracy of every fusion
    variant; a vertical line where m3col switched to SoftCLIP. Returns each task's switch-line x positions."""
    plt = _plt()
    fig, axes = plt.subplots(len(TASKS), 2, figsize=(12.5, 3.9 * len(TASKS)), squeeze=False)
    marks: dict[str, list[float]] = {}
    for (ax_c, ax_v), task in zip(axes, TASKS):
        vs, col = variants_in(summary, task), colour_map(summary, task)
        series = curve_series(runs, task, vs, seeds)
        for ax, key, ylabel in ((ax_c, "contrastive", "contrastive term (train, per epoch)"),
                                (ax_v, "valid", "valid accuracy (%)")):
            scale = 100.0 if key == "valid" else 1.0
            for v, per_seed in series[key].items():
                if key == "valid" and summary[task][v]["kind"] != "fusion":
                    continue
                for pts in per_seed.values():
                    if len(seeds) > 1 and pts:
                        ax.plot([e for e, _ in pts], [scale * y for _, y in pts], color=col[v], lw=0.8, alpha=0.35)
                x, y = _mean_curve({s: p for s, p in per_seed.items() if p})
                ax.plot(x, [scale * a for a in y], color=col[v], lw=2.0, marker="o", markersize=3, label=label(v))
            marks[task] = [e - 0.5 for e in series["switch"]]
            for k, x in enumerate(marks[task]):
                ax.axvline(x, color="black", ls=":", lw=1.4,
                           label=f"M3Co → SoftCLIP (epoch {x + 0.5:g})" if k == 0 else None)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no variant with a contrastive term listed", ha="center", va="center",
                        transform=ax.transAxes)
        ax_c.set_title(f"{task}: contrastive term (each loss on its own scale)", fontsize=10)
        ax_v.set_title(f"{task}: valid accuracy of the fusion variants", fontsize=10)
    fig.tight_layout()
    _save(fig, path, DPI)
    return marks


def plot_conditions(summary: dict, path: Path) -> None:
    """Per task, the test accuracy (mean over seeds) on each named test subset, one bar per variant."""
    plt = _plt()
    fig, axes = plt.subplots(len(TASKS), 1, figsize=(11.0, 3.8 * len(TASKS)), squeeze=False)
    for ax, task in zip(axes[:, 0], TASKS):
        vs, col = variants_in(summary, task), colour_map(summary, task)
        names = list(summary[task]["conditions_n"])
        w = 0.84 / max(1, len(vs))
        for j, v in enumerate(vs):
            cond = summary[task][v].get("conditions", {})
            y = [np.nan if cond.get(n) is None else 100 * cond[n] for n in names]
            ax.bar(np.arange(len(names)) + (j - (len(vs) - 1) / 2) * w, y, w, color=col[v], label=label(v),
                   edgecolor="black" if v == "m3col" else col[v], linewidth=0.9 if v == "m3col" else 0.4)
        ax.set_xticks(range(len(names)), [f"{n}\n(n={summary[task]['conditions_n'][n]})" for n in names], fontsize=8)
        ax.set_ylim(0, 125)  # headroom above 100 for the legend, clear of the bars
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: accuracy per test condition", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if names:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.text(0.5, 0.5, "the runs name no test condition", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path, DPI)


def write_figures(runs: dict, summary: dict, seeds: list[int], out: Path) -> list[Figure]:
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(summary, seeds, out / "accuracy.png")
    plot_per_class(runs, summary, seeds, out / "per_class.png")
    plot_curves(runs, summary, seeds, out / "curves.png")
    plot_conditions(summary, out / "conditions.png")
    n = len(seeds)
    over = f"mean over {n} seeds" if n > 1 else f"one seed ({seeds[0]})"
    return [
        Figure("accuracy.png", "Test accuracy per variant",
               f"Bars: test accuracy ({over}); dots: each seed. Grey bars: one modality alone; black edge: M3CoL. "
               "Dashed lines: the task's analytic information ceilings (upper bounds on the accuracy reachable "
               "from that input), when the runs record them."),
        Figure("per_class.png", "Per-class test accuracy",
               f"Each class's test accuracy ({over}): UniConcat, M3CoL and the best unimodal variant."),
        Figure("curves.png", "Training curves",
               "Left: the contrastive term of the training loss per epoch (InfoNCE for clip, M3Co for m3co, M3Co "
               "then SoftCLIP for m3col; different losses, so compare shapes, not levels); right: valid accuracy of "
               "the fusion variants. Thin lines: seeds; thick: their mean. Dotted line: where m3col switches from "
               "M3Co to SoftCLIP."),
        Figure("conditions.png", "Accuracy per test condition",
               f"Test accuracy ({over}) on the named test subsets the runs record (n: test samples in the subset), "
               "every variant."),
    ]

