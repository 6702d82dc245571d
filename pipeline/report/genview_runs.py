"""Reading the GenView SSL runs and summarising them over seeds (``reports/genview/metrics.json``).

A run is the folder ``<models>/<variant>/s<seed>`` the ``genview`` stage writes: ``result.json`` (the linear
probes' and k-NN's test accuracies per attribute) and ``history.jsonl`` (per epoch). A missing or malformed run
is a :class:`~pipeline.errors.DataError` naming it, never a smaller report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from pipeline.errors import DataError

#: (evaluation, attribute): the four numbers every run reports; the first is the headline
METRICS = (("probe", "shape"), ("probe", "colour"), ("knn", "shape"), ("knn", "colour"))
LABELS = {"simclr": "SimCLR", "fixed": "+ generated view, fixed noise", "adaptive": "+ adaptive noise",
          "genview": "+ adaptive noise + quality loss (GenView)"}
#: (a, b, what a - b isolates): judged on every metric, paired by seed
VERDICTS = (("genview", "simclr", "the whole method against SimCLR"),
            ("fixed", "simclr", "a generated positive at one noise level"),
            ("adaptive", "fixed", "adaptive against fixed noise"),
            ("genview", "adaptive", "the quality-driven loss alone"))


def label(variant: str) -> str:
    return LABELS.get(variant, variant)


def key(metric: tuple[str, str]) -> str:
    return f"{metric[0]}_{metric[1]}"


@dataclass
class Run:
    result: dict
    history: list[dict]


def _hint(variant: str, seed: int) -> str:
    return f"run `dvc repro genview@{variant}-{seed}` (or python -m pipeline genview --variant {variant} --seed {seed})"


def _frac(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0.0 <= x <= 1.0


def read_run(folder: Path, variant: str, seed: int) -> Run:
    path = folder / "result.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; {_hint(variant, seed)}")
    try:
        result = json.loads(path.read_text())
        for ev, attr in METRICS:
            value = result[ev][attr]["test"] if ev == "probe" else result[ev][attr]
            if not _frac(value):
                raise ValueError(f"{ev}.{attr} = {value!r} is not an accuracy in [0, 1]")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: malformed ({exc}); {_hint(variant, seed)}") from None
    hist_path = folder / "history.jsonl"
    history = []
    if hist_path.is_file():
        history = [json.loads(line) for line in hist_path.read_text().splitlines() if line.strip()]
    return Run(result, history)


def load_runs(models: str | Path, variants: list[str], seeds: list[int]) -> dict[tuple[str, int], Run]:
    return {(v, s): read_run(Path(models) / v / f"s{s}", v, s) for v in variants for s in seeds}


def value(run: Run, metric: tuple[str, str]) -> float:
    ev, attr = metric
    return float(run.result[ev][attr]["test"] if ev == "probe" else run.result[ev][attr])


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 6)


def mean_std0(values: Iterable[float]) -> tuple[float, float]:
    arr = np.asarray(list(values), dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def verdict(mean: float, std: float, n_seeds: int) -> str:
    """better (mean - std > 0), worse (mean + std < 0), else no clear difference; one seed: not judged."""
    if n_seeds < 2:
        return "not judged (one seed)"
    return "better" if mean - std > 0 else "worse" if mean + std < 0 else "no clear difference"


def paired(runs: dict, a: str, b: str, seeds: list[int], metric: tuple[str, str]) -> dict[str, Any]:
    diffs = [value(runs[a, s], metric) - value(runs[b, s], metric) for s in seeds]
    mean, std = mean_std0(diffs)
    return {"mean": _r(mean), "std": _r(std), "seeds": {str(s): _r(d) for s, d in zip(seeds, diffs)},
            "verdict": verdict(mean, std, len(seeds))}


def summarise(runs: dict, variants: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per variant and metric: mean, sample std, per seed; paired differences to SimCLR; the verdicts."""
    out: dict[str, Any] = {"variants": {}, "paired_vs_simclr": {}, "verdicts": {}, "seeds": list(seeds)}
    for v in variants:
        entry = {}
        for m in METRICS:
            vals = [value(runs[v, s], m) for s in seeds]
            mean, std = mean_std0(vals)
            entry[key(m)] = {"mean": _r(mean), "std": _r(std), "seeds": {str(s): _r(x) for s, x in zip(seeds, vals)}}
        out["variants"][v] = entry
        if v != "simclr" and "simclr" in variants:
            out["paired_vs_simclr"][v] = {key(m): paired(runs, v, "simclr", seeds, m) for m in METRICS}
    for a, b, what in VERDICTS:
        if a in variants and b in variants:
            out["verdicts"][f"{a}_vs_{b}"] = {"what": what, **{key(m): paired(runs, a, b, seeds, m) for m in METRICS}}
    return out


def accuracy_rows(summary: dict) -> list[dict]:
    """DVC plots data: one row per variant, metric and seed."""
    return [{"variant": v, "metric": m, "seed": int(s), "accuracy": x}
            for v, e in summary["variants"].items() for m in map(key, METRICS) for s, x in e[m]["seeds"].items()]


def curve_rows(runs: dict, variants: list[str], seeds: list[int]) -> list[dict]:
    """DVC plots data: the training loss per epoch of every run."""
    return [{"variant": v, "seed": s, "epoch": row.get("epoch"), "loss": train_loss(row)}
            for v in variants for s in seeds for row in runs[v, s].history]


def train_loss(row: dict) -> Optional[float]:
    """A history row's training loss (the trainer's ``train.loss``), or None."""
    train = row.get("train")
    return train.get("loss") if isinstance(train, dict) else None
