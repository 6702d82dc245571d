"""The CWCL report's figures (static PNGs: ``dvc plots`` HTML needs a CDN offline): held-out accuracy bars
with the supervised bound and chance, the class-by-class similarity of test utterances to the intent
descriptions, a PCA map of the utterance embeddings, per held-out class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.errors import DataError
from pipeline.report.cwcl_runs import LABELS, STAGES, TASKS, first_with, per_class, run_folder, sets_of
from pipeline.report.figures import PALETTE, Figure, _plt, _save

COLOURS = {"cl": PALETTE[0], "cwcl": PALETTE[1]}
FIGURE_SET = ("speech", "intents")  # the utterance figures (similarity, embedding map)
DPI = 120


# ----------------------------------------------------------------------------- figures


def load_scores(models: Path, task: str, loss: str, seed: int, name: str) -> dict[str, np.ndarray]:
    """``<name>.scores`` [N, C], ``.labels`` [N] and ``.emb`` [N, D] of one run (numpy: no torch here)."""
    from safetensors.numpy import load_file

    path = run_folder(models, task, loss, seed) / "zeroshot.safetensors"
    try:
        t = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise DataError(f"{path}: not readable ({' '.join(str(exc).split())}); rerun dvc repro {STAGES[task]}") from None
    keys = [f"{name}.{k}" for k in ("scores", "labels", "emb")]
    if any(k not in t for k in keys):
        raise DataError(f"{path}: lacks {', '.join(k for k in keys if k not in t)}; rerun dvc repro {STAGES[task]}")
    return {k.split(".", 1)[1]: t[k] for k in keys}


def _short(name: str) -> str:
    """An intent name for a tick label: ``change language_Korean_none`` -> ``change language Korean``."""
    return " ".join(p for p in name.split("_") if p != "none")


def plot_bars(summary: dict, path: Path) -> None:
    """Held-out accuracy, CL and CWCL bars (mean +- std over seeds), the bound as a black line, chance dashed."""
    plt = _plt()
    groups = [(t, n) for t in TASKS for n in summary[t]]
    fig, ax = plt.subplots(figsize=(max(5.5, 2.4 * len(groups)), 4.4))
    seen_labels: set[str] = set()

    def label(s: str) -> Optional[str]:
        return None if s in seen_labels or seen_labels.add(s) else s

    for gi, (t, n) in enumerate(groups):
        e = summary[t][n]
        for off, loss in ((-0.18, "cl"), (0.18, "cwcl")):
            if loss in e:
                m, s = 100 * e[loss]["unseen"], 100 * e[loss].get("unseen_std", 0.0)
                ax.bar(gi + off, m, 0.34, yerr=s if s else None, capsize=4, color=COLOURS[loss], label=label(LABELS[loss]))
                ax.text(gi + off, m + s + 1.0, f"{m:.1f}", ha="center", va="bottom", fontsize=8)
        if "supervised" in e:
            ax.hlines(100 * e["supervised"]["unseen"], gi - 0.42, gi + 0.42, colors="black", lw=2.2, zorder=3,
                      label=label("supervised bound"))
        if "chance_unseen" in e["chance"]:
            ax.hlines(100 * e["chance"]["chance_unseen"], gi - 0.42, gi + 0.42, colors="#555555", linestyles="--",
                      lw=1.2, zorder=3, label=label("chance (held-out classes)"))
    ax.set_xticks(range(len(groups)),
                  [f"{t} / {n}\n({summary[t][n]['n_unseen']} of {summary[t][n]['n_classes']} held out)"
                   for t, n in groups])
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 105)
    n_seeds = summary[groups[0][0]][groups[0][1]]["n_seeds"] if groups else 0
    ax.set_title(f"Zero-shot accuracy on held-out classes ({n_seeds} seed{'s' * (n_seeds != 1)})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path, DPI)


def class_similarity(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[C, C]: mean score of the samples of true class i (row) against class j's description (NaN: no sample)."""
    out = np.full((n_classes, n_classes), np.nan)
    for c in range(n_classes):
        rows = labels == c
        if rows.any():
            out[c] = scores[rows].astype(np.float64).mean(0)
    return out


def plot_similarity(panels: dict[str, dict], classes: list[str], unseen: list[int], path: Path) -> None:
    """Class-by-class mean cosine similarity, one panel per loss; held-out classes first, boxed and red."""
    plt = _plt()
    order = sorted(unseen) + [c for c in range(len(classes)) if c not in set(unseen)]
    k = len(unseen)
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(7.4 * max(1, len(panels)), 7.0), squeeze=False,
                             layout="constrained")
    for i, (ax, (loss, t)) in enumerate(zip(axes[0], panels.items())):
        m = class_similarity(t["scores"], t["labels"], len(classes))[np.ix_(order, order)]
        im = ax.imshow(m, cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="mean cosine similarity")
        best = np.nanargmax(np.where(np.isnan(m), -np.inf, m), axis=1)
        ax.scatter(best, np.arange(len(order)), s=9, c="white", marker="o", edgecolors="black", linewidths=0.4)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), k, k, fill=False, edgecolor="red", lw=1.8))
        names = [_short(classes[c]) + (" *" if j < k else "") for j, c in enumerate(order)]
        ax.set_xticks(range(len(order)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(order)), names, fontsize=6)
        for lab in ax.get_xticklabels()[:k] + ax.get_yticklabels()[:k]:
            lab.set_color("red")
        ax.set_xlabel("class description")
        if i == 0:
            ax.set_ylabel("utterances of true class")
        ax.set_title(LABELS[loss])
    if not panels:
        axes[0][0].text(0.5, 0.5, "no CL or CWCL run listed in cwcl.losses", ha="center", va="center")
    _save(fig, path, DPI)


def pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal coordinates of ``x`` [N, D] and their shares of variance; each axis's sign
    is fixed (largest loading positive), so the same input always gives the same picture."""
    x = x.astype(np.float64) - x.astype(np.float64).mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    v = vt[:2]
    signs = np.sign(v[np.arange(len(v)), np.abs(v).argmax(1)])
    signs[signs == 0] = 1.0
    var = s**2
    return x @ (v * signs[:, None]).T, var[:2] / max(var.sum(), 1e-12)


def plot_embedding_map(panels: dict[str, dict], classes: list[str], unseen: list[int], path: Path) -> None:
    """PCA of the test utterance embeddings per loss: training classes as faint dots, held-out ones as
    large markers in distinct colours (legend); each panel its own PCA."""
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(7.6 * max(1, len(panels)), 5.6), squeeze=False,
                             layout="constrained")
    for ax, (loss, t) in zip(axes[0], panels.items()):
        xy, share = pca2(t["emb"])
        labels = t["labels"]
        for c in range(len(classes)):
            rows = labels == c
            if c in unseen or not rows.any():
                continue
            ax.scatter(xy[rows, 0], xy[rows, 1], s=8, color=cmap(c % 20), alpha=0.5, linewidths=0)
        for i, c in enumerate(sorted(unseen)):
            rows = labels == c
            ax.scatter(xy[rows, 0], xy[rows, 1], s=26, color=PALETTE[i % len(PALETTE)], marker="X",
                       edgecolors="black", linewidths=0.3, label=_short(classes[c]))
        ax.set_xlabel(f"PC 1 ({100 * share[0]:.0f} % of variance)")
        ax.set_ylabel(f"PC 2 ({100 * share[1]:.0f} % of variance)" if len(share) > 1 else "PC 2")
        ax.set_title(f"{LABELS[loss]}: held-out intents (X), training intents (dots)")
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="held out", title_fontsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no CL or CWCL run listed in cwcl.losses", ha="center", va="center")
    _save(fig, path, DPI)


def plot_per_class(runs: dict, summary: dict, losses: list[str], seeds: list[int], path: Path) -> None:
    """Per held-out class, its zero-shot accuracy among the held-out classes, CL and CWCL; one panel per set."""
    plt = _plt()
    sets = [(t, n) for t in TASKS for n in sets_of(runs, t)]
    drawn = [l for l in ("cl", "cwcl") if l in losses]
    widest = max([len(per_class(runs, t, n, drawn[0], seeds)) for t, n in sets] if drawn else [1])
    fig, axes = plt.subplots(len(sets), 1, figsize=(max(7.0, 0.32 * widest + 2), 3.3 * len(sets)), squeeze=False)
    for ax, (t, n) in zip(axes[:, 0], sets):
        for j, loss in enumerate(drawn):
            rows = per_class(runs, t, n, loss, seeds)
            x = np.arange(len(rows)) + (j - (len(drawn) - 1) / 2) * 0.38
            ax.bar(x, [100 * a for _, a, _ in rows], 0.38, color=COLOURS[loss], label=LABELS[loss])
            ax.set_xticks(np.arange(len(rows)), [f"{_short(c)} ({k})" if len(seeds) > 1 else _short(c)
                                                 for c, _, k in rows], rotation=60, ha="right", fontsize=7)
        chance = summary[t][n]["chance"].get("chance_unseen")
        if chance is not None:
            ax.axhline(100 * chance, color="#555555", ls="--", lw=1.2, label="chance")
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{t} / {n}: each held-out class among the held-out classes", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, DPI)


def write_figures(runs: dict, summary: dict, models: Path, losses: list[str], seeds: list[int],
                  out: Path) -> list[Figure]:
    out.mkdir(parents=True, exist_ok=True)
    task, name = FIGURE_SET
    seed = seeds[0]
    panels = {l: load_scores(models, task, l, seed, name) for l in ("cl", "cwcl") if l in losses}
    ref = first_with(runs, task, name)
    plot_bars(summary, out / "zeroshot_accuracy.png")
    plot_similarity(panels, ref["classes"], ref["unseen"], out / "similarity_intents.png")
    plot_embedding_map(panels, ref["classes"], ref["unseen"], out / "embedding_map_intents.png")
    plot_per_class(runs, summary, losses, seeds, out / "per_class_unseen.png")
    n = len(seeds)
    spread = f"mean ± std over {n} seeds" if n > 1 else f"one seed ({seed}), no spread"
    return [
        Figure("zeroshot_accuracy.png", "Held-out accuracy: CL vs CWCL",
               f"Accuracy on the held-out classes, classified among the held-out classes ({spread}). Black line: "
               "the supervised bound (trained on every class); dashed: chance among the held-out classes."),
        Figure("similarity_intents.png", "Utterances vs intent descriptions",
               f"Seed {seed}, test utterances: mean cosine similarity of the utterances of each true intent (rows) "
               "to each intent's description (columns), CL and CWCL side by side, each on its own colour scale. "
               "Held-out intents first, boxed and red (*); a dot marks each row's most similar description, so "
               "a dot on the diagonal is a class the model gets right on average. Class means rather than "
               "1,500 utterance rows: at print size single rows blur, the means keep every class readable."),
        Figure("embedding_map_intents.png", "Utterance embeddings (PCA)",
               f"Seed {seed}: the test utterance embeddings projected on their first two principal components "
               "(numpy SVD, each panel its own PCA). Held-out intents as large X markers with a legend, training "
               "intents as faint dots coloured by class."),
        Figure("per_class_unseen.png", "Per-class zero-shot accuracy",
               "Each held-out class's accuracy among the held-out classes, CL and CWCL"
               + (" (mean over the seeds that held the class out; their count in brackets)." if n > 1 else ".")),
    ]
