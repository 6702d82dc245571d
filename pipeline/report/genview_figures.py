"""The GenView report's figures (static PNGs): accuracy per variant with every seed, the foreground-ratio check
against the exact masks, real images beside their generated views at each noise level, the generator's
per-class samples and the SSL training curves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline.report.figures import PALETTE, Figure, _plt, _save
from pipeline.report.genview_runs import METRICS, key, label, train_loss

DPI = 120
COLOURS = {"simclr": "#9A9A9A", "fixed": PALETTE[0], "adaptive": PALETTE[2], "genview": PALETTE[1]}
TITLES = {"probe_shape": "linear probe: shape", "probe_colour": "linear probe: colour",
          "knn_shape": "k-NN: shape", "knn_colour": "k-NN: colour"}


def plot_accuracy(summary: dict, seeds: list[int], path: Path) -> None:
    """One panel per metric: a bar per variant (mean), each seed a dot."""
    plt = _plt()
    vs = list(summary["variants"])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS) + 1, 4.2), squeeze=False)
    for ax, m in zip(axes[0], map(key, METRICS)):
        for i, v in enumerate(vs):
            e = summary["variants"][v][m]
            ax.bar(i, 100 * e["mean"], 0.7, color=COLOURS.get(v, PALETTE[7]))
            accs = [100 * e["seeds"][str(s)] for s in seeds]
            ax.scatter(np.full(len(accs), i) + np.linspace(-0.15, 0.15, len(accs)) * (len(accs) > 1), accs, s=12,
                       color="black", zorder=4)
            ax.text(i, max(accs) + 1.0, f"{100 * e['mean']:.1f}", ha="center", va="bottom", fontsize=7)
        lo = min(100 * summary["variants"][v][m]["mean"] for v in vs)
        ax.set_ylim(max(0.0, lo - 15), 102)
        ax.set_xticks(range(len(vs)), vs, rotation=30, ha="right", fontsize=8)
        ax.set_title(TITLES[m], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    n = len(seeds)
    fig.suptitle(f"Frozen-encoder accuracy per variant: mean over {n} seed{'s' * (n != 1)} (bars), each seed (dots)",
                 fontsize=11)
    fig.tight_layout()
    _save(fig, path, DPI)


def plot_foreground(ratio, true_share, foreground: dict, path: Path) -> None:
    """Estimated foreground ratio against the exact mask's pixel share, one dot per training image (jittered
    vertically inside its token step, so equal ratios do not hide each other), the bin edges as lines."""
    plt = _plt()
    ratio, true_share = np.asarray(ratio, float), np.asarray(true_share, float)
    rng = np.random.default_rng(0)
    step = 1.0 / max(int(foreground.get("tokens", 16)), 1)
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ax.scatter(100 * true_share, ratio + rng.uniform(-0.35, 0.35, ratio.shape) * step, s=3, alpha=0.25,
               color=PALETTE[0], rasterized=True)
    for e in foreground.get("edges", []):
        ax.axhline(e, color="#555555", ls="--", lw=0.8)
    ax.set_xlabel("exact mask: foreground pixels (%)")
    ax.set_ylabel("estimated foreground ratio (PCA tokens)")
    ax.set_title(f"Spearman {foreground.get('spearman', float('nan')):.3f} over {len(ratio)} images", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path, DPI)


def plot_pairs(pairs: dict, path: Path) -> None:
    """One row per noise level: k triples (real | fixed-noise view | adaptive view)."""
    plt = _plt()
    levels = [lv for lv in pairs if len(pairs[lv][0])]
    k = max((len(pairs[lv][0]) for lv in levels), default=1)
    fig, axes = plt.subplots(max(len(levels), 1), 3 * k, figsize=(1.0 * 3 * k, 1.15 * max(len(levels), 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, lv in enumerate(levels):
        real, fixed, adaptive = pairs[lv]
        for j in range(len(real)):
            for c, (img, name) in enumerate(((real[j], "real"), (fixed[j], "fixed"), (adaptive[j], "adaptive"))):
                ax = axes[r][3 * j + c]
                ax.imshow(img, interpolation="nearest")
                if r == 0:
                    ax.set_title(name, fontsize=6)
        axes[r][0].text(-0.15, 0.5, f"noise {lv}", transform=axes[r][0].transAxes, ha="right", va="center",
                        fontsize=7)
    fig.tight_layout(pad=0.2)
    _save(fig, path, DPI)


def plot_curves(runs: dict, summary: dict, seeds: list[int], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for v in summary["variants"]:
        for s in seeds:
            rows = runs[v, s].history
            xs = [r.get("epoch") for r in rows]
            ys = [train_loss(r) for r in rows]
            if all(y is not None for y in ys) and ys:
                ax.plot(xs, ys, color=COLOURS.get(v, PALETTE[7]), lw=1.2, label=label(v) if s == seeds[0] else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (NT-Xent; weighted for GenView)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, DPI)


def write_figures(runs: dict, summary: dict, seeds: list[int], inputs, out: Path) -> list[Figure]:
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(summary, seeds, out / "accuracy.png")
    plot_foreground(inputs.ratio, inputs.true_share, inputs.foreground, out / "foreground.png")
    plot_pairs(inputs.pairs, out / "views.png")
    plot_curves(runs, summary, seeds, out / "curves.png")
    n = len(seeds)
    over = f"mean over {n} seeds" if n > 1 else f"one seed ({seeds[0]})"
    figs = [
        Figure("accuracy.png", "Linear probe and k-NN accuracy per variant",
               f"Bars: test accuracy ({over}); dots: each seed. Shape is the corpus's class, colour its colour."),
        Figure("foreground.png", "The estimated foreground ratio against the exact masks",
               "Each dot a training image: its exact mask's share of foreground pixels (x) and the share of its "
               "token-map cells the PCA calls foreground (y, jittered within a token step). Dashed: GenView's bin "
               "edges; each bin above the previous gets more noise."),
        Figure("views.png", "Real images and their generated views at each noise level",
               "Rows: the noise level the image's foreground ratio chose (steps of 1000). Each triple: the real "
               "image, its SDEdit view at the fixed strength, its view at the adaptive strength."),
        Figure("curves.png", "SSL training loss", "Per epoch, every seed."),
    ]
    if inputs.samples_png is not None and Path(inputs.samples_png).is_file():
        shutil.copyfile(inputs.samples_png, out / "generator_samples.png")
        figs.insert(1, Figure("generator_samples.png", "The generator's samples per class",
                              "One row per class (classifier-free guidance, EMA weights, DDIM), as the diffusion "
                              "stage drew them."))
    return figs
