"""Static PNG figures of the report (matplotlib, Agg backend; no display, no network).

``dvc plots show`` renders its HTML with Vega loaded from a CDN, which does not work offline, so the
report carries its own PNGs: accuracy on seen classes vs tasks learned (mean line and a +-1 std band
over seeds; the upper bound dashed), one accuracy-matrix heatmap per strategy (lower triangle, cells
annotated in %), and forgetting per task as grouped bars. matplotlib is imported inside the functions
so that ``python -m pipeline --help`` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.report.aggregate import StrategySummary

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), then tab10 extras.
PALETTE = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#7F7F7F",
    "#BCBD22", "#17BECF", "#9467BD", "#F0E442",
]  # fmt: skip
UPPER_BOUND_COLOUR = "#000000"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]  # tell overlapping lines apart


@dataclass
class Figure:
    """A written figure: its file name (inside the figures folder), a title and a caption."""

    filename: str
    title: str
    caption: str


def slug(name: str) -> str:
    """A file-name-safe form of a strategy name (``coconut+skd`` -> ``coconut+skd``, ``a b/c`` -> ``a_b_c``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "strategy"


def colours(names: list[str], upper_bound: Optional[str]) -> dict[str, str]:
    """A stable colour per strategy; the upper bound is black."""
    out, i = {}, 0
    for n in names:
        if n == upper_bound:
            out[n] = UPPER_BOUND_COLOUR
        else:
            out[n] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> None:
    # No "Software" text chunk: the PNG carries no URL and stays byte-stable across runs.
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)


def plot_acc_vs_tasks(
    summaries: dict[str, StrategySummary], path: Path, upper_bound: Optional[str], dpi: int
) -> None:
    """Accuracy on all seen classes (A_k, %) against the number of tasks learned, one line per strategy."""
    plt = _plt()
    names = list(summaries)
    col = colours(names, upper_bound)
    T = len(next(iter(summaries.values())).acc_seen)
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    x = np.arange(1, T + 1)
    for k, name in enumerate(names):
        s = summaries[name]
        y = 100 * s.acc_seen
        is_ub = name == upper_bound
        label = f"{name} (upper bound)" if is_ub else name
        ax.plot(x, y, color=col[name], linestyle="--" if is_ub else "-", marker=MARKERS[k % len(MARKERS)],
                markersize=5, markerfacecolor="none", linewidth=2.2 if is_ub else 1.8, label=label, zorder=3)  # fmt: skip
        if s.acc_seen_std is not None:
            sd = 100 * s.acc_seen_std
            ax.fill_between(x, y - sd, y + sd, color=col[name], alpha=0.15, linewidth=0, zorder=2)
    ax.set_xticks(x)
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("accuracy on all seen classes (%)")
    ax.set_ylim(0, 101)
    ax.set_xlim(0.8, T + 0.2)
    ax.grid(True, alpha=0.3)
    n_seeds = max(s.n_seeds for s in summaries.values())
    band = f"; band: ±1 std over {n_seeds} seeds" if n_seeds > 1 else ""
    ax.set_title(f"Accuracy on seen classes after each task (mean{band})", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    _save(fig, path, dpi)


def plot_accuracy_matrix(summary: StrategySummary, path: Path, dpi: int) -> None:
    """Heatmap of R (%, mean over seeds): rows = after training task i, columns = tested on task j."""
    plt = _plt()
    R = 100 * summary.R
    T = R.shape[0]
    size = max(3.6, 0.62 * T + 1.6)
    fig, ax = plt.subplots(figsize=(size + 0.9, size))
    masked = np.ma.masked_invalid(R)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = ax.imshow(masked, cmap=cmap, vmin=0, vmax=100)
    font = 10 if T <= 6 else (9 if T <= 10 else 7)
    for i in range(T):
        for j in range(i + 1):
            v = R[i, j]
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=font,
                    color="black" if v > 60 else "white")  # fmt: skip
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.set_xlabel("tested on task j")
    ax.set_ylabel("after training task i")
    for spine in ax.spines.values():
        spine.set_visible(False)
    seeds = f"mean of {summary.n_seeds} seeds" if summary.n_seeds > 1 else f"seed {summary.seeds[0]}"
    ax.set_title(f"{summary.strategy}: accuracy R[i][j] (%)\n({seeds})", fontsize=10)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("accuracy (%)")
    _save(fig, path, dpi)


def plot_forgetting(summaries: dict[str, StrategySummary], path: Path, upper_bound: Optional[str], dpi: int) -> None:
    """Grouped bars: forgetting f_j (percentage points) of every task j < T-1, one bar per strategy."""
    plt = _plt()
    names = list(summaries)
    col = colours(names, upper_bound)
    T1 = len(next(iter(summaries.values())).forgetting_per_task)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * T1 + 0.35 * len(names) + 3.0), 4.6))
    if T1 == 0:
        ax.text(0.5, 0.5, "one task only: no forgetting to measure", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _save(fig, path, dpi)
        return
    width = 0.8 / len(names)
    x = np.arange(T1)
    for k, name in enumerate(names):
        s = summaries[name]
        err = None if s.forgetting_per_task_std is None else 100 * s.forgetting_per_task_std
        is_ub = name == upper_bound
        ax.bar(x - 0.4 + width * (k + 0.5), 100 * s.forgetting_per_task, width, yerr=err, capsize=2,
               color="white" if is_ub else col[name], edgecolor=col[name], hatch="//" if is_ub else None,
               linewidth=1.0, error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
               label=f"{name} (upper bound)" if is_ub else name)  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"task {j}" for j in x])
    ax.set_ylabel("forgetting (percentage points)")
    ax.set_xlabel("task (forgetting measured after the last task)")
    ax.grid(True, axis="y", alpha=0.3)
    n_seeds = max(s.n_seeds for s in summaries.values())
    bars = f"; error bars: ±1 std over {n_seeds} seeds" if n_seeds > 1 else ""
    ax.set_title(f"Forgetting per task: max earlier accuracy − final accuracy{bars}", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    _save(fig, path, dpi)


def write_figures(
    summaries: dict[str, StrategySummary], fig_dir: Path, upper_bound: Optional[str], dpi: int = 120
) -> list[Figure]:
    """Write every figure into ``fig_dir`` and return them in report order."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = [
        Figure("acc_vs_tasks.png", "Accuracy on seen classes vs tasks learned",
               "A_k: accuracy on the test data of all classes seen so far, after each task."),
        Figure("forgetting_per_task.png", "Forgetting per task",
               "f_j = max over l in [j, T-2] of R[l][j] minus R[T-1][j] (Chaudhry et al. 2018)."),
    ]  # fmt: skip
    plot_acc_vs_tasks(summaries, fig_dir / figs[0].filename, upper_bound, dpi)
    plot_forgetting(summaries, fig_dir / figs[1].filename, upper_bound, dpi)
    used: set[str] = set()
    for name, s in summaries.items():
        base = slug(name)
        stem, n = f"accuracy_matrix_{base}", 2
        while stem in used:  # two names that slug alike get distinct files
            stem, n = f"accuracy_matrix_{base}-{n}", n + 1
        used.add(stem)
        fig = Figure(f"{stem}.png", f"Accuracy matrix: {name}",
                     "Row i: the model after training task i; column j: its accuracy on task j's test classes.")  # fmt: skip
        plot_accuracy_matrix(s, fig_dir / fig.filename, dpi)
        figs.append(fig)
    return figs
