"""The CDvG report: ERM, LfF, CDvG and CDvG + LfF on biased coloured digits, per bias-aligned ratio rho and
backbone, over seeds, beside the oracles' check of the bias translation (reports/cdvg).

Why the report is built this way:

* every number is paired by seed against ERM (same rho, backbone and seed: same data order and init), since the
  seed-to-seed spread of bias-conflicting accuracy is larger than most method differences;
* a verdict uses the project's rule (:func:`pipeline.report.m3col_runs.verdict`): better when the paired mean
  minus one sample std is above 0, worse when the mean plus one std is below 0, otherwise no clear difference;
* the translation rates are shown beside the accuracies because CDvG's whole premise is that the generator moves
  the bias (colour) and keeps the content (digit); if it does not, a null result says nothing about the idea.

A missing or malformed input is one :class:`~pipeline.errors.DataError` line naming the file and the stage that
writes it, never a smaller report. Figures are drawn by :mod:`pipeline.report.cdvg_figures`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError, one_line
from pipeline.report.cwcl import pp
from pipeline.report.m3col_runs import mean_std0, verdict
from pipeline.report.render import (Cell, SeedsReport, Table, blocks_html, blocks_markdown, fmt_pct, provenance,
                                    seeds_word, write_json)

TITLE = "CDvG: contrastive debiasing with diffusion bias-transformed views, against ERM and LfF"
METRICS = ("unbiased", "conflicting", "aligned")
RATES = ("content_kept", "bias_to_target", "both", "bias_kept", "content_to_target")
RATE_NAMES = {"content_kept": "content kept", "bias_to_target": "bias → target", "both": "both (the wanted view)",
              "bias_kept": "bias kept", "content_to_target": "content → target"}
LABELS = {"erm": "ERM", "lff": "LfF", "cdvg": "CDvG", "cdvg_lff": "CDvG + LfF"}
#: (a, b, what a - b isolates): each judged on every metric, paired by seed, where both methods ran
COMPARISONS = (("lff", "erm", "LfF's re-weighting against plain cross-entropy"),
               ("cdvg", "erm", "the bias-transformed views and the contrastive term"),
               ("cdvg_lff", "erm", "both together"),
               ("cdvg", "lff", "CDvG against LfF"),
               ("cdvg_lff", "lff", "CDvG plugged into LfF"))
#: the abstract's claims (reference §6) and the comparison that tests each
CLAIMS = (("cdvg_vs_erm", "CDvG improves bias-conflicting / unbiased accuracy over vanilla ERM"),
          ("cdvg_vs_lff", "CDvG improves over LfF"),
          ("cdvg_lff_vs_lff", "CDvG plugs into other debiasing methods (here: LfF) and improves them"))


def rho_tag(rho: float) -> str:
    """A ratio's folder name (``rho0.99``), as :func:`pipeline.cdvg.params.rho_tag` writes it; restated here because
    the report layer may import no track (tests/test_layout.py), and tested to agree."""
    return f"rho{float(rho)!r}"


def label(method: str) -> str:
    return LABELS.get(method, method)


def _r(x: float) -> float:
    return round(float(x), 6)


def _frac(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0.0 <= x <= 1.0


def _rho(rho: float) -> str:
    return f"{float(rho)!r}"


# ----------------------------------------------------------------------------- reading


def run_hint(method: str, backbone: str, rho: float, seed: int) -> str:
    return (f"run `dvc repro cdvg@{method}-{backbone}-{_rho(rho)}-{seed}` (python -m pipeline cdvg --method {method} "
            f"--backbone {backbone} --rho {_rho(rho)} --seed {seed})")


def read_json(path: Path, hint: str) -> dict:
    """A JSON object, or one DataError line naming the file and what to run."""
    if not path.is_file():
        raise DataError(f"{path}: missing; {hint}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({one_line(exc)}); {hint}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: malformed (not a JSON object); {hint}")
    return doc


def read_run(runs: Path, method: str, backbone: str, rho: float, seed: int) -> dict:
    """One run's result.json, checked to be the run its folder says (a copied file would mislabel a row)."""
    path = Path(runs) / method / backbone / rho_tag(rho) / f"s{seed}" / "result.json"
    hint = run_hint(method, backbone, rho, seed)
    doc = read_json(path, hint)
    test = doc.get("test")
    bad = next((k for k in METRICS if not isinstance(test, dict) or not _frac(test.get(k))), None)
    if bad is not None:
        raise DataError(f"{path}: malformed (test.{bad} is not an accuracy in [0, 1]); {hint}")
    if not _frac(doc.get("valid_accuracy")):
        raise DataError(f"{path}: malformed (valid_accuracy is not an accuracy in [0, 1]); {hint}")
    want = {"method": method, "backbone": backbone, "seed": seed}
    wrong = [k for k, v in want.items() if doc.get(k) != v]
    if wrong or not isinstance(doc.get("rho"), (int, float)) or abs(float(doc["rho"]) - rho) > 1e-9:
        k = wrong[0] if wrong else "rho"
        raise DataError(f"{path}: holds {k} {doc.get(k)!r}, not this folder's run; {hint}")
    return doc


def load_runs(runs: str | Path, methods: list[str], backbones: list[str], rhos: list[float],
              seeds: list[int]) -> dict[tuple[str, str, float, int], dict]:
    """Every run the params imply, keyed (method, backbone, rho, seed)."""
    return {(m, b, r, s): read_run(Path(runs), m, b, r, s)
            for r in rhos for b in backbones for m in methods for s in seeds}


def read_translation(views: str | Path, rho: float) -> dict:
    """The views stage's oracle check of one rho's translation (translation.json), checked and rounded."""
    path = Path(views) / rho_tag(rho) / "translation.json"
    hint = f"run `dvc repro cdvg-views@{_rho(rho)}` (python -m pipeline cdvg-views --rho {_rho(rho)})"
    doc = read_json(path, hint)

    def rates(d: Any, where: str) -> dict:
        src = d.get("rates", d) if isinstance(d, dict) else None
        bad = next((k for k in RATES if not isinstance(src, dict) or not _frac(src.get(k))), None)
        if bad is not None:
            raise DataError(f"{path}: malformed ({where}{bad} is not a share in [0, 1]); {hint}")
        return {k: _r(src[k]) for k in RATES}

    recipe = doc.get("recipe")
    if not isinstance(recipe, dict) or "name" not in recipe:
        raise DataError(f"{path}: malformed (no recipe.name); {hint}")
    compare = doc.get("compare", [])
    if not isinstance(compare, list):
        raise DataError(f"{path}: malformed (compare is not a list); {hint}")
    out = {"recipe": recipe, "n": doc.get("n"), "rates": rates(doc, "rates."),
           "compare": [{"recipe": c.get("recipe", {}), "name": (c.get("recipe") or {}).get("name", f"recipe {i}"),
                        "n": c.get("n"), **rates(c, f"compare[{i}].")} for i, c in enumerate(compare)]}
    samples = doc.get("samples") or {}
    out["samples"] = {k: _r(v) for k, v in samples.items() if _frac(v)}
    oracles = doc.get("oracles") or {}
    out["oracles"] = {k: _r(v) for k, v in oracles.items() if _frac(v)}
    return out


def read_oracles(oracles: str | Path) -> dict:
    """The two judges' accuracy on the clean unbiased test set: how far their rates can be trusted."""
    path = Path(oracles) / "oracles.json"
    hint = "run `dvc repro cdvg-oracles` (python -m pipeline cdvg-oracles)"
    doc = read_json(path, hint)
    out = {}
    for k in ("content", "bias"):
        acc = (doc.get(k) or {}).get("test_accuracy") if isinstance(doc.get(k), dict) else None
        if not _frac(acc):
            raise DataError(f"{path}: malformed ({k}.test_accuracy is not an accuracy in [0, 1]); {hint}")
        out[f"{k}_test_accuracy"] = _r(acc)
    return out


@dataclass
class Inputs:
    """What evaluate-cdvg gathers besides the runs."""

    translation: dict  # rho_tag -> read_translation(...)
    oracles: dict  # read_oracles(...)
    grids: dict = field(default_factory=dict)  # rho_tag -> cdvg_figures.Grid (original / view examples)


def gather_inputs(views: str | Path, sets: str | Path, oracles: str | Path, rhos: list[float]) -> Inputs:
    from pipeline.report.cdvg_figures import load_grid

    return Inputs(translation={rho_tag(r): read_translation(views, r) for r in rhos}, oracles=read_oracles(oracles),
                  grids={rho_tag(r): load_grid(views, sets, r) for r in rhos})


# ----------------------------------------------------------------------------- aggregation


def _cell(values: list[float], seeds: list[int]) -> dict:
    mean, std = mean_std0(values)
    return {"mean": _r(mean), "std": _r(std), "seeds": {str(s): _r(v) for s, v in zip(seeds, values)}}


def _paired(runs: dict, a: str, b: str, backbone: str, rho: float, seeds: list[int], metric: str) -> dict:
    diffs = [runs[a, backbone, rho, s]["test"][metric] - runs[b, backbone, rho, s]["test"][metric] for s in seeds]
    d = _cell(diffs, seeds)
    return {**d, "verdict": verdict(d["mean"], d["std"], len(seeds))}


def summarise(runs: dict, methods: list[str], backbones: list[str], rhos: list[float], seeds: list[int]) -> dict:
    """metrics.json's run part: per rho, backbone and method the test accuracies (mean, sample std, per seed) and
    the paired comparisons with their verdicts; plus the verdict counts per claim of the paper."""
    out: dict[str, Any] = {"seeds": list(seeds), "rhos": [float(r) for r in rhos], "methods": list(methods),
                           "backbones": list(backbones), "results": {}, "paired": {}}
    for r in rhos:
        tag = rho_tag(r)
        first = runs[methods[0], backbones[0], r, seeds[0]]
        out.setdefault("n", {})[tag] = first.get("n")
        out.setdefault("source", first.get("source"))
        out["results"][tag], out["paired"][tag] = {}, {}
        for b in backbones:
            out["results"][tag][b] = {m: {**{k: _cell([runs[m, b, r, s]["test"][k] for s in seeds], seeds)
                                             for k in METRICS},
                                          "valid": _cell([runs[m, b, r, s]["valid_accuracy"] for s in seeds], seeds)}
                                      for m in methods}
            out["paired"][tag][b] = {f"{a}_vs_{c}": {"what": what, **{k: _paired(runs, a, c, b, r, seeds, k)
                                                                      for k in METRICS}}
                                     for a, c, what in COMPARISONS if a in methods and c in methods}
    out["claims"] = claim_counts(out)
    return out


def claim_counts(s: dict) -> dict:
    """Per claim and metric (unbiased, conflicting): how many (rho, backbone) cells are better / no clear / worse."""
    out = {}
    for key, _ in CLAIMS:
        cells = [p[key] for per_b in s["paired"].values() for p in per_b.values() if key in p]
        if cells:
            out[key] = {k: {v: sum(c[k]["verdict"] == v for c in cells)
                            for v in ("better", "no clear difference", "worse")} | {"cells": len(cells)}
                        for k in ("conflicting", "unbiased")}
    return out


def accuracy_rows(s: dict) -> list[dict]:
    """DVC plots data: one row per rho, backbone, method, metric and seed."""
    return [{"rho": float(r), "backbone": b, "method": m, "metric": k, "seed": int(seed), "accuracy": x}
            for r, tag in zip(s["rhos"], s["results"]) for b, per_m in s["results"][tag].items()
            for m, e in per_m.items() for k in METRICS for seed, x in e[k]["seeds"].items()]


def rho_rows(s: dict) -> list[dict]:
    """The accuracy-vs-rho figure's data: mean and std per backbone, method, metric and rho."""
    return [{"backbone": b, "method": m, "metric": k, "rho": float(r), "mean": e[k]["mean"], "std": e[k]["std"]}
            for r, tag in zip(s["rhos"], s["results"]) for b, per_m in s["results"][tag].items()
            for m, e in per_m.items() for k in METRICS]


def rate_rows(s: dict) -> list[dict]:
    """The translation figures' data: one row per rho, recipe (``main`` marks the views' own) and rate."""
    rows = []
    for r, tag in zip(s["rhos"], s["translation"]):
        t = s["translation"][tag]
        recipes = [(t["recipe"]["name"], True, t["rates"])] + [(c["name"], False, c) for c in t["compare"]]
        for name, main, src in recipes:
            rows += [{"rho": float(r), "recipe": name, "main": main, "rate": k, "value": src[k]} for k in RATES]
    return rows


# ----------------------------------------------------------------------------- tables and text


def _spread(seeds: list[int]) -> str:
    return (f"mean ± sample std over {seeds_word(len(seeds))}" if len(seeds) > 1
            else f"one seed ({seeds[0]}), no spread")


def results_table(s: dict, backbone: str) -> Table:
    one = len(s["seeds"]) == 1
    rows = []
    for r, tag in zip(s["rhos"], s["results"]):
        per_m, paired = s["results"][tag][backbone], s["paired"][tag][backbone]
        best = max(e["conflicting"]["mean"] for e in per_m.values())
        for m, e in per_m.items():
            d = paired.get(f"{m}_vs_erm")
            row = [Cell(f"{r:g}", numeric=True), Cell(label(m), italic=m == "erm")]
            row += [Cell(fmt_pct(e[k]["mean"], None if one else e[k]["std"], 1), numeric=True,
                         bold=k == "conflicting" and e[k]["mean"] == best) for k in METRICS]
            for k in ("conflicting", "unbiased"):
                row.append(Cell("reference" if m == "erm" else pp(d[k]["mean"], None if one else d[k]["std"])
                                if d else "n/a", numeric=True))
            row.append(Cell(d["conflicting"]["verdict"] if d else ("reference" if m == "erm" else "n/a")))
            rows.append(row)
    note = (f"Test accuracy in % ({_spread(s['seeds'])}), {backbone} backbone: the unbiased test set, its "
            "bias-conflicting part (colour not the class's dominant one) and its bias-aligned part. Δ: paired by "
            "seed against ERM at the same rho, in percentage points; verdict on the conflicting Δ. Bold: the best "
            "conflicting mean at each rho. The model is the one selected on the valid split.")
    header = ["rho", "Method", *(f"{k} (%)" for k in METRICS), "Δ conflicting vs ERM (pp)", "Δ unbiased vs ERM (pp)",
              "Verdict (conflicting)"]
    return Table(header, rows, note)


def verdict_sentences(s: dict) -> list[str]:
    out = []
    one = len(s["seeds"]) == 1
    for a, b, what in COMPARISONS:
        key = f"{a}_vs_{b}"
        parts = []
        for r, tag in zip(s["rhos"], s["paired"]):
            for bb, p in s["paired"][tag].items():
                if key in p:
                    c, u = p[key]["conflicting"], p[key]["unbiased"]
                    parts.append(f"rho {r:g} {bb}: conflicting {pp(c['mean'], None if one else c['std'])} pp "
                                 f"({c['verdict']}), unbiased {pp(u['mean'], None if one else u['std'])} pp "
                                 f"({u['verdict']})")
        if parts:
            out.append(f"{label(a)} − {label(b)} ({what}), paired over {seeds_word(len(s['seeds']))}: "
                       + "; ".join(parts) + ".")
    return out


def _rate_cells(src: dict) -> list[Cell]:
    return [Cell(fmt_pct(src[k], None, 1), numeric=True) for k in RATES]


def translation_table(s: dict) -> Table:
    rows = []
    for r, tag in zip(s["rhos"], s["translation"]):
        t = s["translation"][tag]
        sm = t.get("samples", {})
        rows.append([Cell(f"{r:g}", numeric=True), Cell(t["recipe"]["name"]), Cell(str(t["n"]), numeric=True),
                     *_rate_cells(t["rates"]),
                     Cell(fmt_pct(sm.get("content_consistency"), None, 1), numeric=True),
                     Cell(fmt_pct(sm.get("bias_dominant"), None, 1), numeric=True)])
    o = s["oracles"]
    note = ("Shares (%) of the training images' bias-transformed views, judged by the oracles (trained only on a "
            "held-out unbiased split): content kept = the content oracle (greyscale) still names the source class; "
            "bias → target = the bias oracle names the target class's dominant colour; bias kept = still the source "
            "image's colour; content → target = the digit itself became the target class (a failed translation). "
            "Samples: class-conditional samples of the generator whose content oracle names their class (content "
            "consistency) and whose colour is the class's dominant one (bias dominant). Oracles' accuracy on the "
            f"clean unbiased test set: content {fmt_pct(o['content_test_accuracy'], None, 1)} %, bias "
            f"{fmt_pct(o['bias_test_accuracy'], None, 1)} %.")
    return Table(["rho", "Recipe", "n", *(f"{RATE_NAMES[k]} (%)" for k in RATES), "samples: content consistency (%)",
                  "samples: bias dominant (%)"], rows, note)


def recipes_table(s: dict) -> Table:
    rows = [[Cell(f"{r:g}", numeric=True), Cell(c["name"]), Cell(str(c["n"]), numeric=True), *_rate_cells(c)]
            for r, tag in zip(s["rhos"], s["translation"]) for c in s["translation"][tag]["compare"]]
    return Table(["rho", "Recipe", "n", *(f"{RATE_NAMES[k]} (%)" for k in RATES)], rows,
                 "The same oracle rates for the compared recipes (sdedit: noise to a share of the schedule and denoise "
                 "under the target class; inversion: DDIM-invert under the source class, regenerate under the target; "
                 "s: strength, w: guidance), each on a subset of the training images.")


def claims_table(s: dict) -> Table:
    rows = []
    for key, claim in CLAIMS:
        c = s["claims"].get(key)
        ours = "not measured (both methods must be in cdvg.train.methods)"
        if c:
            ours = "; ".join(f"{k}: better in {c[k]['better']}, no clear difference in {c[k]['no clear difference']}, "
                             f"worse in {c[k]['worse']} of {c[k]['cells']} (rho, backbone) cells"
                             for k in ("conflicting", "unbiased"))
        rows.append([Cell(claim), Cell("no public numbers in our reference (abstract only, no code)"), Cell(ours)])
    return Table(["The paper's claim (abstract)", "Paper's numbers", f"Ours ({seeds_word(len(s['seeds']))})"], rows,
                 "The paper is known to us from its abstract only (reference §6): it reports Colored MNIST and "
                 "Corrupted CIFAR-10 with 0.5-5 % conflicting samples against ERM, LfF and DFA, but we hold none of "
                 "its numbers, so only the direction of the claims can be set beside ours. Ours: a small "
                 "class-conditional diffusion model trained here on the biased training set, small MLP / CNN "
                 f"backbones, images from the {s.get('source')!r} source (cdvg.data.source) coloured by class.")


def grid_table(grid: Any, tag: str) -> Table:
    rows = [[Cell(grid.classes[y]), Cell(", ".join(grid.classes[t] for t in grid.targets[i]))]
            for i, y in enumerate(grid.sources)]
    return Table(["Source class (row)", "Target class of each shown view, left to right"], rows,
                 f"{tag}: the target class each view was translated to (its dominant colour is what the view should "
                 "take on; the digit should stay the source class).")


def blocks(r: SeedsReport, inputs: Inputs) -> list[tuple[str, Any]]:
    s, seeds = r.summary, r.seeds
    n = s.get("n", {}).get(rho_tag(s["rhos"][0])) or {}
    out: list[tuple[str, Any]] = [
        ("p", f"Seeds {', '.join(map(str, seeds))}; rho (bias-aligned share of training) "
              f"{', '.join(f'{x:g}' for x in s['rhos'])}; methods {', '.join(label(m) for m in s['methods'])}; "
              f"backbones {', '.join(s['backbones'])}. Class = digit, bias = colour. Same backbone, budget and "
              "selection on the valid split for every method; bias labels build and score the sets, never train. "
              f"Images: {n.get('train', '?')} training, {n.get('test', '?')} unbiased test "
              f"({n.get('test_conflicting', '?')} conflicting, {n.get('test_aligned', '?')} aligned)."),
        ("h2", "Verdicts"),
        ("p", "Better: the paired mean difference minus one sample std is above 0; worse: the mean plus one std is "
              "below 0; otherwise no clear difference (one seed: not judged)."),
    ]
    out += [("p", x) for x in verdict_sentences(s)]
    out += [("h2", "The paper's claims beside ours"), ("table", claims_table(s))]
    for b in s["backbones"]:
        out += [("h2", f"Test accuracy, {b} backbone"), ("table", results_table(s, b))]
    out += [("h2", "Does the translation move the bias and keep the content?"), ("table", translation_table(s))]
    if any(s["translation"][t]["compare"] for t in s["translation"]):
        out += [("h3", "Compared recipes"), ("table", recipes_table(s))]
    out += [("h2", "Figures")]
    for f in r.figures:
        out.append(("figure", f))
        tag = f.filename[len("views_"):-len(".png")] if f.filename.startswith("views_") else None
        if tag in inputs.grids:
            out.append(("table", grid_table(inputs.grids[tag], tag)))
    prov = provenance(r.params_path)
    out += [("h2", "Provenance"), ("kv", [("Git commit", prov["git_commit"]),
                                          (f"sha256 of {r.params_path}", prov["params_sha256"]),
                                          ("Report date (UTC)", prov["date"])])]
    return out


def write_all(out: Path, runs: dict, methods: list[str], backbones: list[str], rhos: list[float], seeds: list[int],
              params_path: str, inputs: Inputs) -> dict:
    """Every file of the report into ``out`` (a fresh folder); returns the metrics."""
    from pipeline.report.cdvg_figures import write_figures

    summary = summarise(runs, methods, backbones, rhos, seeds)
    summary["translation"] = inputs.translation
    summary["oracles"] = inputs.oracles
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", summary)
    write_json(out / "plots" / "accuracy.json", accuracy_rows(summary))
    write_json(out / "plots" / "accuracy_vs_rho.json", rho_rows(summary))
    write_json(out / "plots" / "translation.json", rate_rows(summary))
    r = SeedsReport(summary, seeds, params_path)
    r.figures = write_figures(summary, inputs.grids, out / "figures")
    (out / "report.md").write_text(blocks_markdown(TITLE, blocks(r, inputs)), encoding="utf-8")
    (out / "report.html").write_text(blocks_html(TITLE, blocks(r, inputs), out / "figures"), encoding="utf-8")
    return summary
