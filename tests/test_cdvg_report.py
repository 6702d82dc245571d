"""The evaluate-cdvg stage on constructed inputs with known numbers: the aggregation (means, sample stds, paired
differences to ERM, verdicts) against hand computation, the one-line errors of a missing or malformed input, the
report's files and images, and a byte-identical metrics.json on a second run; plus bench/cdvg.py's pure parts."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors.numpy import save_file

from pipeline.errors import DataError
from pipeline.report import cdvg as rep
from pipeline.report.cdvg_figures import load_grid, pick
from pipeline.stages import evaluate_cdvg

SEEDS = [0, 1, 2]
RHOS = [0.95, 0.99]
METHODS = ["erm", "lff", "cdvg", "cdvg_lff"]
BACKBONES = ["mlp", "cnn"]
N_CLASSES, S, N_TRAIN = 3, 8, 12
# hand-picked conflicting accuracies at rho 0.99, mlp (seeds 0, 1, 2)
HAND = {"erm": [0.20, 0.30, 0.25], "lff": [0.22, 0.28, 0.24], "cdvg": [0.30, 0.35, 0.40],
        "cdvg_lff": [0.10, 0.15, 0.12]}


def accuracy(m: str, b: str, rho: float, s: int, k: str) -> float:
    if k == "conflicting" and b == "mlp" and rho == 0.99:
        return HAND[m][s]
    base = {"unbiased": 0.5, "conflicting": 0.4, "aligned": 0.9}[k]
    return round(base + 0.01 * METHODS.index(m) + 0.02 * s + (0.03 if b == "cnn" else 0.0) - rho / 10, 6)


def write_run(runs: Path, m: str, b: str, rho: float, s: int) -> None:
    folder = runs / m / b / f"rho{rho!r}" / f"s{s}"
    folder.mkdir(parents=True)
    doc = {"method": m, "backbone": b, "rho": rho, "seed": s, "source": "digits",
           "n": {"train": N_TRAIN, "valid": 6, "test": 30, "test_conflicting": 20, "test_aligned": 10},
           "epochs": 4, "steps": 8, "best_epoch": 3, "valid_accuracy": 0.8,
           "test": {k: accuracy(m, b, rho, s, k) for k in rep.METRICS},
           "keys_read": ["images", "labels"], "fingerprint": f"{m}-{b}-{rho}-{s}"}
    (folder / "result.json").write_text(json.dumps(doc))


def rates(a: float) -> dict:
    return {"content_kept": a, "bias_to_target": a - 0.1, "bias_kept": 0.05, "content_to_target": 0.02, "both": a - 0.2}


def write_views(views: Path, sets: Path, rho: float) -> None:
    tag = f"rho{rho!r}"
    (views / tag).mkdir(parents=True)
    (sets / tag).mkdir(parents=True)
    recipe = {"method": "inversion", "strength": 1.0, "guidance": 3.0, "name": "inversion s1 w3"}
    doc = {"rho": rho, "recipe": recipe, "n": N_TRAIN, "rates": rates(0.9),
           "compare": [{"recipe": {"method": "sdedit", "strength": 0.5, "guidance": 3.0, "name": "sdedit s0.5 w3"},
                        "n": 8, **rates(0.7)}],
           "samples": {"content_consistency": 0.85, "bias_dominant": 0.95},
           "oracles": {"content_test_accuracy": 0.97, "bias_test_accuracy": 1.0}}
    (views / tag / "translation.json").write_text(json.dumps(doc))
    rng = np.random.default_rng(0)
    labels = np.arange(N_TRAIN, dtype=np.int64) % N_CLASSES
    target = (labels + 1 + np.arange(N_TRAIN) // N_CLASSES % (N_CLASSES - 1)) % N_CLASSES
    save_file({"images": rng.integers(0, 255, (N_TRAIN, S, S, 3), dtype=np.uint8), "labels": labels,
               "bias": labels.copy()}, str(sets / tag / "train.safetensors"))
    save_file({"views": rng.integers(0, 255, (N_TRAIN, S, S, 3), dtype=np.uint8), "target": target.astype(np.int64)},
              str(views / tag / "views.safetensors"))
    (sets / tag / "classes.json").write_text(json.dumps(["zero", "one", "two"]))


@pytest.fixture()
def tree(tmp_path: Path) -> argparse.Namespace:
    runs, views, sets, oracles = (tmp_path / k for k in ("runs", "views", "sets", "oracles"))
    for r in RHOS:
        write_views(views, sets, r)
        for b in BACKBONES:
            for m in METHODS:
                for s in SEEDS:
                    write_run(runs, m, b, r, s)
    oracles.mkdir()
    (oracles / "oracles.json").write_text(json.dumps({"content": {"test_accuracy": 0.97, "epochs": 3},
                                                      "bias": {"test_accuracy": 1.0}}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seeds": SEEDS, "cdvg": {"data": {"rhos": RHOS},
                                                               "train": {"methods": METHODS, "backbones": BACKBONES}}}))
    return argparse.Namespace(params=str(params), runs=str(runs), views=str(views), sets=str(sets),
                              oracles=str(oracles), out=str(tmp_path / "report"))


def test_aggregation_matches_hand_computation(tree):
    runs = rep.load_runs(tree.runs, METHODS, BACKBONES, RHOS, SEEDS)
    s = rep.summarise(runs, METHODS, BACKBONES, RHOS, SEEDS)
    erm = s["results"]["rho0.99"]["mlp"]["erm"]["conflicting"]
    assert erm["mean"] == pytest.approx(0.25) and erm["std"] == pytest.approx(0.05)  # 0.2, 0.3, 0.25
    assert erm["seeds"] == {"0": 0.2, "1": 0.3, "2": 0.25}
    p = s["paired"]["rho0.99"]["mlp"]
    # cdvg - erm: 0.10, 0.05, 0.15 -> mean 0.10, std 0.05; 0.10 - 0.05 > 0: better
    assert p["cdvg_vs_erm"]["conflicting"]["mean"] == pytest.approx(0.10)
    assert p["cdvg_vs_erm"]["conflicting"]["std"] == pytest.approx(0.05)
    assert p["cdvg_vs_erm"]["conflicting"]["verdict"] == "better"
    # lff - erm: 0.02, -0.02, -0.01 -> mean -1/300, std sqrt(((.07)^2+(.05)^2+(.02)^2)/3^2/2) = 0.020817
    assert p["lff_vs_erm"]["conflicting"]["mean"] == pytest.approx(-1 / 300, abs=1e-6)
    assert p["lff_vs_erm"]["conflicting"]["std"] == pytest.approx(0.020817, abs=1e-6)
    assert p["lff_vs_erm"]["conflicting"]["verdict"] == "no clear difference"
    # cdvg_lff - erm: -0.10, -0.15, -0.13 -> mean -0.126667, std 0.025166: worse
    assert p["cdvg_lff_vs_erm"]["conflicting"]["mean"] == pytest.approx(-0.126667, abs=1e-6)
    assert p["cdvg_lff_vs_erm"]["conflicting"]["std"] == pytest.approx(0.025166, abs=1e-6)
    assert p["cdvg_lff_vs_erm"]["conflicting"]["verdict"] == "worse"
    # cdvg_lff - lff: -0.12, -0.13, -0.12 -> plugging CDvG into LfF is worse here
    assert p["cdvg_lff_vs_lff"]["conflicting"]["mean"] == pytest.approx(-0.123333, abs=1e-6)
    assert p["cdvg_lff_vs_lff"]["conflicting"]["verdict"] == "worse"
    # elsewhere each method is a constant offset from ERM: std 0 and mean = the offset
    d = s["paired"]["rho0.95"]["cnn"]["cdvg_vs_erm"]["unbiased"]
    assert d["mean"] == pytest.approx(0.02) and d["std"] == pytest.approx(0.0) and d["verdict"] == "better"
    assert s["claims"]["cdvg_vs_erm"]["conflicting"] == {"better": 4, "no clear difference": 0, "worse": 0,
                                                         "cells": 4}
    one = rep.summarise(runs, METHODS, BACKBONES, RHOS, [0])
    assert one["paired"]["rho0.99"]["mlp"]["cdvg_vs_erm"]["conflicting"]["verdict"] == "not judged (one seed)"


def test_missing_run_is_one_data_error_line(tree):
    missing = Path(tree.runs) / "lff" / "cnn" / "rho0.95" / "s2" / "result.json"
    missing.unlink()
    with pytest.raises(DataError) as exc:
        evaluate_cdvg.main(tree)
    msg = str(exc.value)
    assert "\n" not in msg and str(missing) in msg and "cdvg@lff-cnn-0.95-2" in msg
    assert not Path(tree.out).exists()


def test_mislabelled_run_and_missing_inputs_are_one_line(tree):
    path = Path(tree.runs) / "cdvg" / "mlp" / "rho0.99" / "s1" / "result.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "seed": 2}))
    with pytest.raises(DataError, match=r"holds seed 2, not this folder's run"):
        rep.load_runs(tree.runs, METHODS, BACKBONES, RHOS, SEEDS)
    (Path(tree.views) / "rho0.95" / "translation.json").unlink()
    with pytest.raises(DataError, match=r"translation.json: missing; run `dvc repro cdvg-views@0.95`") as exc:
        rep.gather_inputs(tree.views, tree.sets, tree.oracles, RHOS)
    assert "\n" not in str(exc.value)
    (Path(tree.oracles) / "oracles.json").write_text(json.dumps({"content": {}, "bias": {"test_accuracy": 1.0}}))
    with pytest.raises(DataError, match=r"content.test_accuracy .*cdvg-oracles"):
        rep.read_oracles(tree.oracles)


def test_rho_tag_agrees_with_the_track():
    from pipeline.cdvg.params import rho_tag

    assert [rep.rho_tag(r) for r in (0.95, 0.98, 0.99, 0.995)] == [rho_tag(r) for r in (0.95, 0.98, 0.99, 0.995)]


def test_grid_picks_distinct_targets_per_class(tree):
    labels = np.array([0, 1, 0, 0, 1, 0])
    targets = np.array([1, 0, 1, 2, 2, 2])
    assert pick(labels, targets, 2) == {0: [0, 3], 1: [1, 4]}
    assert pick(labels, np.array([1, 0, 1, 1, 0, 1]), 3) == {0: [0, 2, 3], 1: [1, 4]}
    g = load_grid(tree.views, tree.sets, 0.99)
    assert g.sources == [0, 1, 2] and g.classes == ["zero", "one", "two"]
    assert all(len(t) == 3 and len(set(t)) == 2 for t in g.targets) and g.originals[0].shape == (3, S, S, 3)


def test_report_files_images_and_determinism(tree, capsys):
    evaluate_cdvg.main(tree)
    out = Path(tree.out)
    first = (out / "metrics.json").read_bytes()
    m = json.loads(first)
    assert m["oracles"] == {"content_test_accuracy": 0.97, "bias_test_accuracy": 1.0}
    assert m["translation"]["rho0.99"]["rates"]["bias_to_target"] == pytest.approx(0.8)
    assert m["translation"]["rho0.99"]["compare"][0]["name"] == "sdedit s0.5 w3"
    for name in ("accuracy.json", "accuracy_vs_rho.json", "translation.json"):
        assert json.loads((out / "plots" / name).read_text())
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figs == ["accuracy_vs_rho.png", "translation.png", "views_rho0.95.png", "views_rho0.99.png"]
    for p in (out / "figures").glob("*.png"):
        with Image.open(p) as im:
            im.verify()
    md = (out / "report.md").read_text()
    assert "no public numbers in our reference" in md and "figures/views_rho0.99.png" in md
    assert "Source class (row)" in md and "zero" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "http://" not in html and "https://" not in html
    assert "CDvG vs ERM, conflicting: better in 4" in capsys.readouterr().out
    evaluate_cdvg.main(tree)
    assert (out / "metrics.json").read_bytes() == first


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "cdvg.py"
    spec = importlib.util.spec_from_file_location("bench_cdvg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_pure_parts(tmp_path, tree):
    b = _bench()
    plan = b.stage_commands(tmp_path, tmp_path / "p.yaml", [0.95, 0.99], ["erm", "cdvg"], ["mlp"], [0, 1])
    assert len(plan["runs"]) == 8 and len(plan["per_rho"]) == 2
    kind, argv, done = plan["runs"][0]
    assert argv[:1] == ["cdvg"] and argv[argv.index("--out") + 1] == str(tmp_path / "runs/erm/mlp/rho0.95/s0")
    assert done == tmp_path / "runs/erm/mlp/rho0.95/s0/result.json"
    gen, views = plan["per_rho"][1]
    assert gen[1][:1] == ["cdvg-generator"] and gen[1][gen[1].index("--rho") + 1] == "0.99"
    assert views[1][views[1].index("--generator") + 1] == str(tmp_path / "generator/rho0.99")
    assert b.data_done(tmp_path, [0.95, 0.99]) and not b.data_done(tmp_path, [0.95, 0.98])  # tree wrote sets/
    raw = {"seeds": [0], "cdvg": {"data": {"rhos": [0.9], "seed": 1}, "train": {"methods": ["erm"], "lam": 2}}}
    assert b.stable_params(raw) == {"cdvg": {"data": {"seed": 1}, "train": {"lam": 2}}}
    runs = rep.load_runs(tree.runs, METHODS, BACKBONES, RHOS, SEEDS)
    lines = b.table(runs, 0.99, "mlp", METHODS, SEEDS)
    cdvg = next(x for x in lines if x.startswith("cdvg "))
    assert "+10.0 ± 5.0" in cdvg and cdvg.endswith("+10.0 +5.0 +15.0")
    assert b.fmt([0.2, 0.3, 0.25]) == "25.0 ± 5.0"
    assert "bias to target 80.0" in b.rates_line(0.99, rep.read_translation(tree.views, 0.99))
