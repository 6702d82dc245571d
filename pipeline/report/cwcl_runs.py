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
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.errors import DataError
from pipeline.report.aggregate import mean_std

TASKS = ("speech", "image")
STAGES = {"speech": "cwcl-speech", "image": "cwcl-image"}
METRICS = ("unseen", "seen", "gzsl_unseen", "gzsl_seen", "harmonic", "all")
CHANCE = ("chance_unseen", "chance_seen", "chance_all")
LABELS = {"cl": "CL", "cwcl": "CWCL", "supervised": "supervised (bound)"}
# "<task>/<set>" -> (low, high, what the paper measured): CWCL - CL, absolute accuracy
CLAIMS = {
    "speech/intents": (0.20, 0.30, "zero-shot speech-to-intent classification"),
    "speech/keywords": (0.20, 0.30, "zero-shot keyword spotting"),
    "image/combos": (0.05, 0.08, "zero-shot image classification"),
}


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
