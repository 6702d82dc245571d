"""The M3CoL report's runs: read and check the m3col stages' files, and summarise them over seeds.

Reads ``<models>/<task>/<variant>/s<seed>/result.json`` and ``history.jsonl`` (the m3col-image and
m3col-speech stages' outputs) as files: the report package never imports the M3CoL track (the stage passes
the variant lists and each task's modalities in). Every variant the params list must exist for every seed,
or nothing is written: a comparison that silently drops a seed is a different experiment. Every run of a
task must have been tested on the same test set (same classes and size) with the same analytic ceilings.

Aggregation: mean and sample std (ddof=1; 0 with one seed) over seeds. Differences between variants are
paired by seed (both runs of a seed see the same data), so the seed-to-seed spread of the test draw cancels.
A verdict calls a paired difference "better" when its mean minus one std is above 0, "worse" when its mean
plus one std is below 0, otherwise "no clear difference"; with one seed there is no spread, hence no verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from pipeline.errors import DataError, one_line

TASKS = ("image", "speech")
STAGES = {"image": "m3col-image", "speech": "m3col-speech"}
CONTRASTIVE = ("clip", "m3co", "m3col")  # the fusion variants with a contrastive term
LABELS = {"concat": "UniConcat", "aux": "concat + aux heads", "clip": "aux + InfoNCE", "m3co": "aux + M3Co",
          "m3col": "M3CoL (aux + M3Co → SoftCLIP)"}
# the paired comparisons a verdict is stated for: (variant, reference, what it isolates)
VERDICTS = (("m3col", "concat", "the whole method against plain fusion"),
            ("m3col", "aux", "the contrastive term alone: same model and CE terms"))


def label(variant: str) -> str:
    return LABELS.get(variant, f"{variant} only")


@dataclass
class Run:
    """One (task, variant, seed) run: its result.json and its history.jsonl lines."""

    result: dict
    history: list[dict]


# ----------------------------------------------------------------------------- loading


def run_folder(models: str | Path, task: str, variant: str, seed: int) -> Path:
    return Path(models) / task / variant / f"s{seed}"


def load_runs(models: str | Path, variants: dict[str, list[str]], seeds: list[int],
              modalities: dict[str, Iterable[str]]) -> dict[tuple[str, str, int], Run]:
    """(task, variant, seed) -> Run of every run the params imply; all of them or a one-line DataError.
    ``variants[task]``: the params' variant list; ``modalities[task]``: the variants that are unimodal."""
    want = [(t, v, s) for t in TASKS for v in variants[t] for s in seeds]
    missing = [k for k in want if not all((run_folder(models, *k) / f).is_file()
                                          for f in ("result.json", "history.jsonl"))]
    if missing:
        names = ", ".join(str(run_folder(models, *k)) for k in missing)
        stages = " and ".join(f"dvc repro {STAGES[t]}" for t in TASKS if any(k[0] == t for k in missing))
        raise DataError(f"missing M3CoL run(s) {names} (no result.json or history.jsonl; seeds x m3col.<task>.variants "
                        f"of the params need every one); run {stages}")
    runs = {k: Run(_read_result(models, *k, set(modalities[k[0]])), _read_history(models, *k)) for k in want}
    for task in TASKS:
        _check_task(runs, Path(models), task, variants[task], seeds)
    return runs


def _hint(task: str, variant: str, seed: int) -> str:
    return f"rerun dvc repro {STAGES[task]}@{variant}-{seed}"


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def _frac(x: Any) -> bool:
    return _num(x) and 0.0 <= x <= 1.0


def _read_result(models: str | Path, task: str, variant: str, seed: int, unimodal: set[str]) -> dict:
    path = run_folder(models, task, variant, seed) / "result.json"
    hint = _hint(task, variant, seed)

    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; {hint}")

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise bad(f"not readable JSON ({one_line(exc)})") from None
    if not isinstance(doc, dict):
        raise bad("expected a JSON object")
    if (doc.get("task"), doc.get("variant"), doc.get("seed")) != (task, variant, seed):
        raise bad(f"holds task {doc.get('task')!r}, variant {doc.get('variant')!r}, seed {doc.get('seed')!r} but its "
                  f"folder says {task}, {variant}, {seed}")
    kind = "unimodal" if variant in unimodal else "fusion"
    if doc.get("kind") != kind:
        raise bad(f"kind {doc.get('kind')!r}, expected {kind!r} for variant {variant}")
    test = doc.get("test")
    if not isinstance(test, dict) or not _frac(test.get("accuracy")) or not _frac(test.get("macro_f1")):
        raise bad("test needs accuracy and macro_f1 as fractions in [0, 1]")
    valid = doc.get("valid")
    if not isinstance(valid, dict) or not _frac(valid.get("accuracy")):
        raise bad("valid needs accuracy as a fraction in [0, 1]")
    classes = doc.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes must be a non-empty list of names")
    per_class = doc.get("per_class")
    if not isinstance(per_class, list) or len(per_class) != len(classes) or \
            not all(p is None or _frac(p) for p in per_class):
        raise bad("per_class needs one accuracy (or null) per class")
    n = doc.get("n")
    if not isinstance(n, dict) or not isinstance(n.get("test"), int) or n["test"] <= 0:
        raise bad("n.test must be a positive integer")
    conditions = doc.get("conditions", {})
    if not isinstance(conditions, dict) or not all(
            isinstance(c, dict) and isinstance(c.get("n"), int) and (c.get("accuracy") is None or _frac(c["accuracy"]))
            for c in conditions.values()):
        raise bad("conditions must map names to {n: integer, accuracy: fraction or null}")
    ceiling = doc.get("ceiling")
    if ceiling is not None and (not isinstance(ceiling, dict) or not all(_frac(v) for v in ceiling.values())):
        raise bad("ceiling must be null or map names to fractions in [0, 1]")
    switch = doc.get("switch_epoch")
    if switch is not None and (not isinstance(switch, int) or isinstance(switch, bool) or switch < 1):
        raise bad("switch_epoch must be null or an epoch number >= 1")
    return doc


def _read_history(models: str | Path, task: str, variant: str, seed: int) -> list[dict]:
    path = run_folder(models, task, variant, seed) / "history.jsonl"
    hint = _hint(task, variant, seed)
    rows: list[dict] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable ({one_line(exc)}); {hint}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}: line {i} is not JSON ({one_line(exc)}); {hint}") from None
        # valid is there on the epochs the trainer evaluated (every eval_every-th and the last)
        ok = (isinstance(row, dict) and isinstance(row.get("epoch"), int) and isinstance(row.get("train"), dict)
              and (row.get("valid") is None or isinstance(row["valid"], dict) and _frac(row["valid"].get("accuracy"))))
        if not ok:
            raise DataError(f"{path}: line {i} needs epoch, train and (when present) valid.accuracy; {hint}")
        if rows and row["epoch"] <= rows[-1]["epoch"]:
            raise DataError(f"{path}: line {i}: epochs must increase; {hint}")
        c = row["train"].get("contrastive")
        if c is not None and not _num(c):
            raise DataError(f"{path}: line {i}: train.contrastive must be a number; {hint}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no epoch; {hint}")
    return rows


def _check_task(runs: dict, models: Path, task: str, variants: list[str], seeds: list[int]) -> None:
    """Every run of a task was tested on the same test set (classes, size, condition subsets) and records the
    same ceilings; else its numbers come from different params and pairing them by seed means nothing."""
    ref_key = (task, variants[0], seeds[0])
    ref = runs[ref_key].result
    sizes: dict[str, tuple[int, tuple]] = {}
    for v in variants:
        for s in seeds:
            doc = runs[task, v, s].result
            where = run_folder(models, task, v, s) / "result.json"
            other = f"than {run_folder(models, *ref_key)}; rerun dvc repro {STAGES[task]} (runs from different params)"
            for key in ("classes", "ceiling", "source"):
                if doc.get(key) != ref.get(key):
                    raise DataError(f"{where}: other {key} {other}")
            if doc["n"]["test"] != ref["n"]["test"]:
                raise DataError(f"{where}: another test set size ({doc['n']['test']} vs {ref['n']['test']}) {other}")
            for name, c in doc.get("conditions", {}).items():
                first = sizes.setdefault(name, (c["n"], (v, s)))
                if first[0] != c["n"]:
                    raise DataError(f"{where}: condition {name!r} has n={c['n']} but {first[0]} in "
                                    f"{run_folder(models, task, *first[1])}; rerun dvc repro {STAGES[task]}")


# ----------------------------------------------------------------------------- summary (metrics.json)


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 6)


def mean_std0(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of one or more values; the std is 0 for one value."""
    arr = np.asarray(list(values), dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def verdict(mean: Optional[float], std: Optional[float], n_seeds: int) -> str:
    """A paired difference in words: better (mean - std > 0), worse (mean + std < 0), else no clear difference."""
    if mean is None or std is None:
        return "not measured"
    if n_seeds < 2:
        return "not judged (one seed)"
    if mean - std > 0:
        return "better"
    if mean + std < 0:
        return "worse"
    return "no clear difference"


def accuracies(runs: dict, task: str, variant: str, seeds: list[int]) -> list[float]:
    return [runs[task, variant, s].result["test"]["accuracy"] for s in seeds]


def paired(runs: dict, task: str, a: str, b: str, seeds: list[int]) -> dict[str, Any]:
    """a - b test accuracy, paired by seed: mean, std (0 for one seed) and the per-seed differences."""
    diffs = [x - y for x, y in zip(accuracies(runs, task, a, seeds), accuracies(runs, task, b, seeds))]
    mean, std = mean_std0(diffs)
    return {"mean": _r(mean), "std": _r(std), "seeds": {str(s): _r(d) for s, d in zip(seeds, diffs)}}


def condition_names(runs: dict, task: str, variants: list[str], seeds: list[int]) -> list[str]:
    """The task's test conditions, in the order the runs list them."""
    out: list[str] = []
    for v in variants:
        for s in seeds:
            out += [n for n in runs[task, v, s].result.get("conditions", {}) if n not in out]
    return out


def _variant_entry(runs: dict, task: str, v: str, seeds: list[int], conditions: list[str]) -> dict[str, Any]:
    docs = [runs[task, v, s].result for s in seeds]
    acc, acc_std = mean_std0(d["test"]["accuracy"] for d in docs)
    f1, f1_std = mean_std0(d["test"]["macro_f1"] for d in docs)
    valid, _ = mean_std0(d["valid"]["accuracy"] for d in docs)
    entry: dict[str, Any] = {"kind": docs[0]["kind"], "accuracy": _r(acc), "accuracy_std": _r(acc_std),
                             "macro_f1": _r(f1), "macro_f1_std": _r(f1_std), "valid_accuracy": _r(valid),
                             "seeds": {str(s): _r(d["test"]["accuracy"]) for s, d in zip(seeds, docs)}}
    cond = {}
    for name in conditions:
        vals = [(d.get("conditions", {}).get(name) or {}).get("accuracy") for d in docs]
        cond[name] = None if any(x is None for x in vals) else _r(mean_std0(vals)[0])
    if cond:
        entry["conditions"] = cond
    switches = sorted({d["switch_epoch"] for d in docs if d.get("switch_epoch") is not None})
    if switches:
        entry["switch_epoch"] = switches[0] if len(switches) == 1 else switches
    return entry


def _best(entries: dict[str, dict], names: list[str]) -> Optional[str]:
    """The variant of ``names`` with the highest mean accuracy (the first listed on a tie)."""
    return max(names, key=lambda v: entries[v]["accuracy"]) if names else None


def summarise_task(runs: dict, task: str, variants: list[str], seeds: list[int]) -> dict[str, Any]:
    first = runs[task, variants[0], seeds[0]].result
    conditions = condition_names(runs, task, variants, seeds)
    out: dict[str, Any] = {"n_seeds": len(seeds), "source": first.get("source"), "n_test": first["n"]["test"],
                           "n_classes": len(first["classes"])}
    entries = {v: _variant_entry(runs, task, v, seeds, conditions) for v in variants}
    out.update(entries)
    if "concat" in variants:
        out["paired_vs_concat"] = {v: paired(runs, task, v, "concat", seeds) for v in variants if v != "concat"}
    uni = [v for v in variants if entries[v]["kind"] == "unimodal"]
    fus = [v for v in variants if entries[v]["kind"] == "fusion"]
    bf, bu = _best(entries, fus), _best(entries, uni)
    margin: Optional[dict[str, Any]] = None
    if bf and bu:
        margin = {"best_fusion": bf, "best_fusion_accuracy": entries[bf]["accuracy"], "best_unimodal": bu,
                  "best_unimodal_accuracy": entries[bu]["accuracy"],
                  "margin": _r(entries[bf]["accuracy"] - entries[bu]["accuracy"])}
        if "m3col" in variants:
            margin["m3col_minus_best_unimodal"] = paired(runs, task, "m3col", bu, seeds)
    out["fusion_margin"] = margin
    verdicts = {}
    for a, b, _ in VERDICTS:
        if a in variants and b in variants:
            d = paired(runs, task, a, b, seeds)
            verdicts[f"{a}_vs_{b}"] = {**d, "verdict": verdict(d["mean"], d["std"], len(seeds))}
    out["verdicts"] = verdicts
    out["conditions_n"] = {n: next(runs[task, v, s].result["conditions"][n]["n"] for v in variants for s in seeds
                                   if n in runs[task, v, s].result.get("conditions", {})) for n in conditions}
    out["ceiling"] = first.get("ceiling")
    return out


def summarise(runs: dict, variants: dict[str, list[str]], seeds: list[int]) -> dict[str, Any]:
    """The metrics.json: per task, per variant its accuracy over seeds; the paired differences to UniConcat;
    the fusion margin; the verdicts; the condition sizes and the analytic ceilings."""
    return {task: summarise_task(runs, task, variants[task], seeds) for task in TASKS}


def variants_in(summary: dict, task: str) -> list[str]:
    """The task's variants in the params' order (the entries of metrics.json that carry an accuracy)."""
    return [k for k, e in summary[task].items() if isinstance(e, dict) and "kind" in e and "accuracy" in e]


# ----------------------------------------------------------------------------- plot data


def accuracy_rows(summary: dict) -> list[dict]:
    """``plots/accuracy.json``: test accuracy per task and variant (mean and std over seeds)."""
    return [{"task": t, "variant": v, "task_variant": f"{t}/{v}", "accuracy": summary[t][v]["accuracy"],
             "std": summary[t][v]["accuracy_std"]} for t in TASKS for v in variants_in(summary, t)]


def curve_rows(runs: dict, variants: dict[str, list[str]], seeds: list[int]) -> list[dict]:
    """``plots/curves.json``: per run and epoch, the contrastive term and the valid accuracy (null where the run
    has none: no contrastive term, an epoch not evaluated) and the phase."""
    return [{"task": t, "variant": v, "seed": s, "run": f"{t}/{v}/s{s}", "epoch": h["epoch"],
             "contrastive": _r(h["train"].get("contrastive")),
             "valid_accuracy": _r((h.get("valid") or {}).get("accuracy")),
             "phase": h.get("phase")}
            for t in TASKS for v in variants[t] for s in seeds for h in runs[t, v, s].history]


def per_class(runs: dict, task: str, variant: str, seeds: list[int]) -> list[Optional[float]]:
    """Each class's test accuracy, mean over the seeds that have a value for it (None: no seed has)."""
    out = []
    for vals in zip(*(runs[task, variant, s].result["per_class"] for s in seeds)):
        got = [x for x in vals if x is not None]
        out.append(float(np.mean(got)) if got else None)
    return out
