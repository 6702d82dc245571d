"""The CDvG report's figures (static PNGs, matplotlib's Agg backend via :func:`pipeline.report.figures._plt`):

* ``views_<rho>.png``: training images beside their bias-transformed views, one row per source class, so a reader
  sees with their own eyes whether the colour moved and the digit stayed (the oracle rates say how often);
* ``translation.png``: the oracle rates of the views' recipe per rho, and of every compared recipe;
* ``accuracy_vs_rho.png``: bias-conflicting and unbiased accuracy against rho, a line per method with the std over
  seeds as error bars, a panel per backbone: the field's usual view of a debiasing method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError, one_line
from pipeline.report.cdvg import rho_tag
from pipeline.report.figures import PALETTE, Figure, _plt, _save

DPI = 120
PER_CLASS = 3  # examples shown per source class
RATE_KEYS = ("content_kept", "bias_to_target", "both", "bias_kept", "content_to_target")
RATE_LABELS = ("content kept", "bias → target", "both", "bias kept", "content → target")
RATE_COLOURS = (PALETTE[2], PALETTE[0], PALETTE[3], PALETTE[7], PALETTE[1])
METHOD_COLOURS = {"erm": "#7F7F7F", "lff": PALETTE[4], "cdvg": PALETTE[0], "cdvg_lff": PALETTE[1]}
METHOD_MARKERS = {"erm": "o", "lff": "s", "cdvg": "^", "cdvg_lff": "D"}


@dataclass
class Grid:
    """Examples for the view figure: per shown source class, its originals, views and the views' targets."""

    classes: list[str]  # class names, index = label
    sources: list[int]  # the source class of each row
    originals: list[np.ndarray]  # per row uint8 [k, S, S, 3]
    views: list[np.ndarray]  # per row uint8 [k, S, S, 3]
    targets: list[list[int]]  # per row, the target class of each view


def _arrays(path: Path, keys: tuple[str, ...], hint: str) -> dict[str, np.ndarray]:
    """Only ``keys`` of a safetensors file, as numpy (no torch import for a report)."""
    from pipeline.core.arrays import read_arrays

    return read_arrays(path, keys, hint, framework="np")


def pick(labels: np.ndarray, targets: np.ndarray, per_class: int = PER_CLASS) -> dict[int, list[int]]:
    """Per source class, the first ``per_class`` training images whose targets differ (then any), in index order:
    deterministic, and the row shows the translation towards as many target classes as it can."""
    out = {}
    for y in np.unique(labels):
        idx = np.flatnonzero(labels == y)
        chosen, seen = [], set()
        for i in idx:
            if int(targets[i]) not in seen:
                chosen.append(int(i))
                seen.add(int(targets[i]))
            if len(chosen) == per_class:
                break
        chosen += [int(i) for i in idx if int(i) not in chosen][:per_class - len(chosen)]
        out[int(y)] = sorted(chosen)
    return out


def load_grid(views: str | Path, sets: str | Path, rho: float, per_class: int = PER_CLASS) -> Grid:
    tag = rho_tag(rho)
    v = _arrays(Path(views) / tag / "views.safetensors", ("views", "target"),
                f"run `dvc repro cdvg-views@{float(rho)!r}`")
    t = _arrays(Path(sets) / tag / "train.safetensors", ("images", "labels"), "run `dvc repro cdvg-data`")
    if len(v["views"]) != len(t["images"]) or len(v["target"]) != len(t["images"]):
        raise DataError(f"{Path(views) / tag / 'views.safetensors'}: {len(v['views'])} views for "
                        f"{len(t['images'])} training images; re-run `dvc repro cdvg-views@{float(rho)!r}`")
    labels, targets = t["labels"].astype(np.int64), v["target"].astype(np.int64)
    n_classes = int(max(labels.max(), targets.max())) + 1 if len(labels) else 0
    classes = [str(k) for k in range(n_classes)]
    names = Path(sets) / tag / "classes.json"
    if names.is_file():
        try:
            loaded = json.loads(names.read_text())
            classes = [str(c) for c in loaded] if len(loaded) >= n_classes else classes
        except ValueError:
            pass
    chosen = pick(labels, targets, per_class)
    return Grid(classes, list(chosen), [t["images"][i] for i in chosen.values()],
                [v["views"][i] for i in chosen.values()], [targets[i].tolist() for i in chosen.values()])


def plot_views(grid: Grid, rho: float, path: Path) -> None:
    """One row per source class: k pairs (original | view, titled with the view's target class)."""
    plt = _plt()
    k = max((len(o) for o in grid.originals), default=1)
    rows = max(len(grid.sources), 1)
    fig, axes = plt.subplots(rows, 2 * k, figsize=(0.95 * 2 * k + 0.6, 1.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, y in enumerate(grid.sources):
        for j in range(len(grid.originals[r])):
            axes[r][2 * j].imshow(grid.originals[r][j], interpolation="nearest")
            axes[r][2 * j + 1].imshow(grid.views[r][j], interpolation="nearest")
            axes[r][2 * j + 1].set_title(f"→ {grid.classes[grid.targets[r][j]]}", fontsize=6, pad=1)
            if r == 0:
                axes[r][2 * j].set_title("original", fontsize=6, pad=1)
        axes[r][0].text(-0.12, 0.5, grid.classes[y], transform=axes[r][0].transAxes, ha="right", va="center",
                        fontsize=8)
    fig.suptitle(f"rho {rho:g}: training images and their bias-transformed views", fontsize=9)
    fig.tight_layout(pad=0.3)
    _save(fig, path, DPI)


def _bars(ax, groups: list[str], values: list[list[float]]) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per rate."""
    x = np.arange(len(groups))
    w = 0.8 / len(RATE_KEYS)
    for i, (name, colour) in enumerate(zip(RATE_LABELS, RATE_COLOURS)):
        ax.bar(x + (i - (len(RATE_KEYS) - 1) / 2) * w, [100 * v[i] for v in values], w, color=colour, label=name)
    ax.set_xticks(x, groups, rotation=25 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center",
                  fontsize=7)
    ax.set_ylim(0, 122)  # room above 100 % for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)


def plot_translation(summary: dict, path: Path) -> None:
    """Left: the views' recipe per rho; then one panel per rho with the compared recipes."""
    plt = _plt()
    tr, rhos = summary["translation"], summary["rhos"]
    with_compare = [(r, tr[rho_tag(r)]) for r in rhos if tr[rho_tag(r)]["compare"]]
    n = 1 + len(with_compare)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.9 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.axis("off")
    main = [tr[rho_tag(r)] for r in rhos]
    _bars(axes[0], [f"{r:g}" for r in rhos], [[t["rates"][k] for k in RATE_KEYS] for t in main])
    axes[0].set_xlabel("rho")
    axes[0].set_ylabel("share of translated images (%)")
    axes[0].set_title(f"views' recipe ({main[0]['recipe']['name']})", fontsize=9)
    for ax, (r, t) in zip(axes[1:], with_compare):
        _bars(ax, [c["name"] for c in t["compare"]], [[c[k] for k in RATE_KEYS] for c in t["compare"]])
        ax.set_title(f"compared recipes, rho {r:g}", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    _save(fig, path, DPI)


def plot_accuracy_vs_rho(summary: dict, path: Path) -> None:
    """Rows: bias-conflicting, unbiased accuracy; columns: backbones; a line per method, error bars = std."""
    plt = _plt()
    rhos, backbones = summary["rhos"], summary["backbones"]
    fig, axes = plt.subplots(2, len(backbones), figsize=(4.6 * len(backbones), 6.6), squeeze=False)
    x = np.arange(len(rhos))
    for c, b in enumerate(backbones):
        for row, metric in enumerate(("conflicting", "unbiased")):
            ax = axes[row][c]
            for i, m in enumerate(summary["methods"]):
                e = [summary["results"][rho_tag(r)][b][m][metric] for r in rhos]
                shift = (i - (len(summary["methods"]) - 1) / 2) * 0.04  # error bars side by side, not on top
                ax.errorbar(x + shift, [100 * d["mean"] for d in e], yerr=[100 * d["std"] for d in e],
                            color=METHOD_COLOURS.get(m, PALETTE[i % len(PALETTE)]),
                            marker=METHOD_MARKERS.get(m, "o"), ms=4, lw=1.4, capsize=3, label=m)
            ax.set_xticks(x, [f"{r:g}" for r in rhos])
            ax.set_title(f"{b}: {'bias-conflicting' if metric == 'conflicting' else 'unbiased'} test", fontsize=9)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("accuracy (%)")
            if row == 1:
                ax.set_xlabel("rho (bias-aligned share of training)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, DPI)


def write_figures(summary: dict, grids: dict, out: Path) -> list[Figure]:
    out.mkdir(parents=True, exist_ok=True)
    seeds = summary["seeds"]
    spread = f"error bars: sample std over {len(seeds)} seeds" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    plot_accuracy_vs_rho(summary, out / "accuracy_vs_rho.png")
    plot_translation(summary, out / "translation.png")
    figs = [Figure("accuracy_vs_rho.png", "Accuracy against rho",
                   f"Top: bias-conflicting test accuracy; bottom: unbiased; one panel per backbone; mean over seeds, "
                   f"{spread}. Higher rho = fewer bias-conflicting training images."),
            Figure("translation.png", "What the translation moves",
                   "Oracle rates (%) of the bias-transformed views: content kept (digit still the source class), bias "
                   "→ target (colour now the target class's dominant one), bias kept (colour unchanged), content → "
                   "target (the digit itself changed). Left: the views' recipe per rho; right: compared recipes.")]
    for r in summary["rhos"]:
        tag = rho_tag(r)
        if tag in grids:
            plot_views(grids[tag], r, out / f"views_{tag}.png")
            figs.append(Figure(f"views_{tag}.png", f"Original and bias-transformed views, rho {r:g}",
                               "Rows: source class; pairs: a training image and its view, titled with the class it "
                               "was translated to (the table below lists them)."))
    return figs
