"""The CWCL report: CL against CWCL (and the supervised bound) over seeds, from the cwcl stages' files.

Reads ``<models>/<task>/<loss>/s<seed>/zeroshot.json`` (and, for the first seed's speech figures,
``zeroshot.safetensors``) as files: the report package never imports the CWCL track. Every loss the params
list must exist for every seed, or nothing is written: a comparison that silently drops a seed is a
different experiment. Test sets are found in the runs (``keywords`` appears once its clips are prepared;
the supervised runs never have it: a classifier has no class for an unseen word).

Aggregation: mean and sample std (ddof=1, none with one seed) over seeds; CWCL - CL is paired by seed
(both runs of a seed hold out the same classes, checked), so the seed-to-seed spread of the split cancels.
The paper's claim (Srinivasa et al., NeurIPS 2023, abstract: +20-30 % absolute on zero-shot speech-to-intent
and keyword spotting, +5-8 % on zero-shot image classification) is set beside the mean paired difference of
the held-out ("unseen") accuracy, the classic zero-shot protocol the paper reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.errors import DataError
from pipeline.report.aggregate import mean_std
from pipeline.report.figures import PALETTE, Figure, _plt, _save
from pipeline.report.render import _CSS, Cell, Table, _h, _html_table, _img, _kv, _md_table, fmt_pct, provenance

TASKS = ("speech", "image")
STAGES = {"speech": "cwcl-speech", "image": "cwcl-image"}
METRICS = ("unseen", "seen", "gzsl_unseen", "gzsl_seen", "harmonic", "all")
CHANCE = ("chance_unseen", "chance_seen", "chance_all")
LABELS = {"cl": "CL", "cwcl": "CWCL", "supervised": "supervised (bound)"}
COLOURS = {"cl": PALETTE[0], "cwcl": PALETTE[1]}
# "<task>/<set>" -> (low, high, what the paper measured): CWCL - CL, absolute accuracy
CLAIMS = {
    "speech/intents": (0.20, 0.30, "zero-shot speech-to-intent classification"),
    "speech/keywords": (0.20, 0.30, "zero-shot keyword spotting"),
    "image/combos": (0.05, 0.08, "zero-shot image classification"),
}
FIGURE_SET = ("speech", "intents")  # the utterance figures (similarity, embedding map)
DPI = 120


# ----------------------------------------------------------------------------- loading


def run_folder(models: Path, task: str, loss: str, seed: int) -> Path:
    return Path(models) / task / loss / f"s{seed}"


def load_runs(models: str | Path, losses: list[str], seeds: list[int]) -> dict[tuple[str, str, int], dict]:
    """(task, loss, seed) -> zeroshot.json of every run the params list; all of them or a one-line error."""
    want = [(t, l, s) for t in TASKS for l in losses for s in seeds]
    missing = [k for k in want if not (run_folder(models, *k) / "zeroshot.json").is_file()]
    if missing:
        names = ", ".join(str(run_folder(models, *k)) for k in missing)
        stages = " and ".join(f"dvc repro {STAGES[t]}" for t in TASKS if any(k[0] == t for k in missing))
        raise DataError(f"missing CWCL run(s) {names} (seeds x cwcl.losses of the params need every one); run {stages}")
    runs = {k: _read(run_folder(models, *k) / "zeroshot.json", *k) for k in want}
    for task in TASKS:
        _check_sets(runs, Path(models), task, losses, seeds)
    return runs


def _read(path: Path, task: str, loss: str, seed: int) -> dict:
    hint = f"rerun dvc repro {STAGES[task]}@{loss}-{seed}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({' '.join(str(exc).split())}); {hint}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sets"), dict) or not doc["sets"]:
        raise DataError(f"{path}: expected an object with a non-empty 'sets' mapping; {hint}")
    if (doc.get("task"), doc.get("loss"), doc.get("seed")) != (task, loss, seed):
        raise DataError(f"{path}: holds task {doc.get('task')!r}, loss {doc.get('loss')!r}, seed {doc.get('seed')!r} "
                        f"but its folder says {task}, {loss}, {seed}; {hint}")
    for name, s in doc["sets"].items():
        ok = isinstance(s, dict) and isinstance(s.get("classes"), list) and isinstance(s.get("unseen"), list)
        if not ok or not isinstance(s.get("metrics"), dict) or len(s.get("per_class") or []) != len(s["classes"]):
            raise DataError(f"{path}: sets.{name} needs classes, unseen, metrics and one per_class value per class; {hint}")
    return doc


def _check_sets(runs: dict, models: Path, task: str, losses: list[str], seeds: list[int]) -> None:
    """Every CL/CWCL run of a task has the same test sets; every run of a seed the same classes and held-out
    ones (else CWCL - CL would compare different splits); the supervised runs may lack a set (keywords)."""
    names = sorted({n for (t, _, _), d in runs.items() if t == task for n in d["sets"]})
    for name in names:
        for seed in seeds:
            ref = None
            for loss in losses:
                s = runs[task, loss, seed]["sets"].get(name)
                where = run_folder(models, task, loss, seed)
                if s is None:
                    if loss == "supervised":
                        continue
                    raise DataError(f"{where}/zeroshot.json: has no test set {name!r} that other {task} runs have; "
                                    f"rerun dvc repro {STAGES[task]} so that every run uses the same params")
                if ref is None:
                    ref = (s["classes"], sorted(s["unseen"]), loss)
                elif (s["classes"], sorted(s["unseen"])) != ref[:2]:
                    raise DataError(f"{where}/zeroshot.json: sets.{name} holds out other classes than the {ref[2]} run "
                                    f"of seed {seed}; rerun dvc repro {STAGES[task]} (the runs come from different params)")


def sets_of(runs: dict, task: str) -> list[str]:
    """The task's test sets, in the order the runs list them."""
    out: list[str] = []
    for (t, _, _), doc in runs.items():
        out += [n for n in doc["sets"] if t == task and n not in out]
    return out


def first_with(runs: dict, task: str, name: str) -> dict:
    """The set ``name`` of the task's first run that has it (every run that has it agrees on its classes)."""
    return next(d["sets"][name] for (t, _, _), d in runs.items() if t == task and name in d["sets"])


# ----------------------------------------------------------------------------- metrics.json


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 6)


def verdict(diff: Optional[float], low: float, high: float) -> str:
    """Where a measured CWCL - CL difference falls against the paper's range (inclusive)."""
    if diff is None:
        return "not measured"
    return "below" if diff < low else "above" if diff > high else "in"


def summarise(runs: dict, losses: list[str], seeds: list[int]) -> dict[str, Any]:
    """The metrics.json: per task and test set, per loss the mean (and ``*_std``) of every metric, the
    chance levels, the paired CWCL - CL differences and the claim; then the temperatures."""
    out: dict[str, Any] = {}
    for task in TASKS:
        out[task] = {}
        for name in sets_of(runs, task):
            first = first_with(runs, task, name)
            entry: dict[str, Any] = {"n_seeds": len(seeds), "n_classes": len(first["classes"]),
                                     "n_unseen": len(first["unseen"])}
            for loss in losses:
                per_seed = [runs[task, loss, s]["sets"].get(name) for s in seeds]
                if all(p is not None for p in per_seed):
                    entry[loss] = _loss_entry([p["metrics"] for p in per_seed])
            entry["chance"] = {c: _r(first["metrics"][c]) for c in CHANCE if c in first["metrics"]}
            if "cl" in entry and "cwcl" in entry:
                entry["cwcl_minus_cl"] = _paired(runs, task, name, seeds)
            low, high, _ = CLAIMS.get(f"{task}/{name}", (None, None, None))
            if low is not None:
                diff = entry.get("cwcl_minus_cl", {}).get("unseen", {}).get("mean")
                entry["claim"] = {"metric": "unseen", "paper_low": low, "paper_high": high, "measured": diff,
                                  "verdict": verdict(diff, low, high)}
            out[task][name] = entry
    out["temperatures"] = {task: {loss: _temps([runs[task, loss, s] for s in seeds])
                                  for loss in losses if loss != "supervised"} for task in TASKS}
    return out


def _loss_entry(metrics: list[dict]) -> dict[str, float]:
    entry: dict[str, float] = {}
    for m in METRICS:
        mean, std = mean_std(x.get(m) for x in metrics)
        if mean is not None:
            entry[m] = _r(mean)
            if std is not None:
                entry[f"{m}_std"] = _r(std)
    return entry


def _paired(runs: dict, task: str, name: str, seeds: list[int]) -> dict[str, dict]:
    out = {}
    for m in METRICS:
        diffs = {}
        for s in seeds:
            a, b = (runs[task, loss, s]["sets"][name]["metrics"].get(m) for loss in ("cwcl", "cl"))
            diffs[f"s{s}"] = None if a is None or b is None else a - b
        mean, std = mean_std(diffs.values())
        if mean is not None:
            out[m] = {"mean": _r(mean), **({"std": _r(std)} if std is not None else {}),
                      **{k: _r(v) for k, v in diffs.items()}}
    return out


def _temps(docs: list[dict]) -> dict[str, Any]:
    """The configured tau and the final one (learned when learn_temperature is on), mean over seeds."""
    final, _ = mean_std(d.get("final_tau") for d in docs)
    return {"tau": _r(docs[0].get("tau")), "final_tau": _r(final),
            "learned": bool(docs[0].get("learn_temperature", False))}


# ----------------------------------------------------------------------------- plot data


def zeroshot_rows(summary: dict) -> list[dict]:
    """``plots/zeroshot.json``: held-out accuracy per zero-shot set and loss (mean over seeds)."""
    return [{"task_set": f"{task}/{name}", "loss": loss, "accuracy": e[loss]["unseen"]}
            for task in TASKS for name, e in summary[task].items()
            for loss in LABELS if loss in e and "unseen" in e[loss]]


def per_class(runs: dict, task: str, name: str, loss: str, seeds: list[int]) -> list[tuple[str, float, int]]:
    """(class, mean accuracy, seeds) of every class held out in some seed, among the held-out classes; each
    seed holds out other classes (cwcl.heldout_seed null), so a class averages the seeds that held it out."""
    acc: dict[int, list[float]] = {}
    for s in seeds:
        d = runs[task, loss, s]["sets"][name]
        for c in d["unseen"]:
            if d["per_class"][c] is not None:
                acc.setdefault(c, []).append(d["per_class"][c])
    classes = runs[task, loss, seeds[0]]["sets"][name]["classes"]
    return [(classes[c], float(np.mean(v)), len(v)) for c, v in sorted(acc.items())]


def per_class_rows(runs: dict, losses: list[str], seeds: list[int]) -> list[dict]:
    """``plots/per_class.json``: each held-out class's zero-shot accuracy, CL and CWCL."""
    return [{"task_set": f"{task}/{name}", "class": c, "loss": loss, "accuracy": _r(a)}
            for task in TASKS for name in sets_of(runs, task)
            for loss in ("cl", "cwcl") if loss in losses for c, a, _ in per_class(runs, task, name, loss, seeds)]


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
    md = {"h2": lambda x: f"## {x}", "h3": lambda x: f"### {x}", "p": str, "table": _md_table,
          "figure": lambda f: f"### {f.title}\n\n![{f.title}](figures/{f.filename})\n\n{f.caption}",
          "kv": lambda kv: "\n".join(f"- **{k}**: `{v}`" for k, v in kv)}
    return "\n\n".join([f"# {TITLE}"] + [md[k](x) for k, x in blocks(r)]) + "\n"


def render_html(r: Report, fig_dir: Path) -> str:
    """One self-contained page: inline CSS, PNGs as data: URIs (render.py's helpers)."""
    html = {"h2": lambda x: f"<h2>{_h(x)}</h2>", "h3": lambda x: f"<h3>{_h(x)}</h3>",
            "p": lambda x: f"<p>{_h(x)}</p>", "table": _html_table,
            "figure": lambda f: f"<h3>{_h(f.title)}</h3>{_img(f, fig_dir)}", "kv": lambda kv: _kv(kv, code=True)}
    head = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_h(TITLE)}</title><style>{_CSS}</style></head><body>", f"<h1>{_h(TITLE)}</h1>"]
    return "\n".join(head + [html[k](x) for k, x in blocks(r)] + ["</body></html>", ""])


def write_all(out: Path, models: Path, runs: dict, losses: list[str], seeds: list[int], params_path: str) -> dict:
    """Every file of the report into ``out`` (a fresh folder); returns the metrics."""
    summary = summarise(runs, losses, seeds)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    dump = lambda p, obj: p.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")  # noqa: E731
    dump(out / "metrics.json", summary)
    dump(out / "plots" / "zeroshot.json", zeroshot_rows(summary))
    dump(out / "plots" / "per_class.json", per_class_rows(runs, losses, seeds))
    r = Report(summary, runs, losses, seeds, params_path)
    r.figures = write_figures(runs, summary, Path(models), losses, seeds, out / "figures")
    (out / "report.md").write_text(render_markdown(r), encoding="utf-8")
    (out / "report.html").write_text(render_html(r, out / "figures"), encoding="utf-8")
    return summary
