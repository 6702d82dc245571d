"""The evaluate-m3col stage on constructed run folders with known numbers: metrics.json (means, stds, paired
differences, fusion margin, verdicts), plot data, the switch line of the curves figure, figures, the report,
determinism, and the one-line errors of a missing or malformed run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import DataError
from pipeline.report import m3col_runs as runs_mod
from pipeline.report.m3col_figures import curve_series, plot_curves
from pipeline.stages import evaluate_m3col

SEEDS = [0, 1, 2]
MODALITIES = {"image": ("image", "text"), "speech": ("speech", "text")}
FUSION = ("concat", "aux", "clip", "m3co", "m3col")
VARIANTS = {t: [*MODALITIES[t], *FUSION] for t in MODALITIES}
# task -> variant -> test accuracy per seed (0, 1, 2)
ACC = {
    "image": {"image": [0.70, 0.72, 0.74], "text": [0.60, 0.60, 0.60], "concat": [0.80, 0.82, 0.84],
              "aux": [0.81, 0.83, 0.86], "clip": [0.80, 0.83, 0.85], "m3co": [0.82, 0.84, 0.86],
              "m3col": [0.85, 0.86, 0.90]},
    "speech": {"speech": [0.50, 0.55, 0.60], "text": [0.65, 0.66, 0.67], "concat": [0.70, 0.75, 0.80],
               "aux": [0.60, 0.75, 0.70], "clip": [0.70, 0.70, 0.70], "m3co": [0.71, 0.72, 0.73],
               "m3col": [0.65, 0.69, 0.76]},
}
CEILING = {"image": {"image": 0.74, "text": 0.71, "fused": 0.93}, "speech": None}
EPOCHS, SWITCH = 6, 3
CLASSES = ["red circle", "blue square", "green star", "grey cross"]


def write_run(models: Path, task: str, variant: str, seed: int, acc: float) -> Path:
    """result.json and history.jsonl of one run, per the m3col stages' schema."""
    folder = models / task / variant / f"s{seed}"
    folder.mkdir(parents=True)
    unimodal = variant in MODALITIES[task]
    contrastive = {"clip": "infonce", "m3co": "m3co", "m3col": "m3co>softclip"}.get(variant, "none")
    doc = {"task": task, "variant": variant, "kind": "unimodal" if unimodal else "fusion",
           "modalities": [variant] if unimodal else list(MODALITIES[task]), "seed": seed, "source": "shapes",
           "classes": CLASSES, "n": {"train": 80, "valid": 20, "test": 100}, "epochs": EPOCHS, "best_epoch": 5,
           "switch_epoch": SWITCH if variant == "m3col" else None, "contrastive": contrastive,
           "valid": {"accuracy": acc - 0.01}, "test": {"accuracy": acc, "macro_f1": acc - 0.02},
           "per_class": [acc, acc - 0.1, None, acc + 0.05],
           "conditions": {"grey": {"n": 30, "accuracy": acc - 0.1}, "clean": {"n": 70, "accuracy": acc + 0.05}},
           "ceiling": CEILING[task], "fingerprint": f"{task}-{variant}-{seed}"}
    (folder / "result.json").write_text(json.dumps(doc))
    lines = []
    for e in range(1, EPOCHS + 1):
        train = {"loss": 2.0 / e, f"ce_{variant}" if unimodal else "ce_fusion": 1.0 / e}
        phase = "none"
        if not unimodal and variant != "concat":
            train |= {f"ce_{m}": 1.1 / e for m in MODALITIES[task]}
        if contrastive != "none":
            train["contrastive"] = 3.0 / e + 0.01 * seed
            phase = {"clip": "infonce", "m3co": "m3co"}.get(variant) or ("m3co" if e < SWITCH else "softclip")
        row = {"epoch": e, "train": train, "valid": {"accuracy": acc * e / EPOCHS}, "lr": 1e-3, "phase": phase}
        if variant == "clip" and seed == 0 and e == 2:
            del row["valid"]  # an epoch the trainer did not evaluate (eval_every > 1)
        lines.append(json.dumps(row))
    (folder / "history.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_tree(root: Path, seeds=SEEDS, variants=VARIANTS) -> Path:
    for task, vs in variants.items():
        for v in vs:
            for s in seeds:
                write_run(root / "models" / "m3col", task, v, s, ACC[task][v][s])
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"seeds": list(seeds), "m3col": {t: {"variants": list(vs)}
                                                                      for t, vs in variants.items()}}))
    return params


def evaluate(root: Path, params: Path, out: str = "reports/m3col") -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params")
    evaluate_m3col.add_arguments(parser)
    evaluate_m3col.main(parser.parse_args(["--params", str(params), "--models", str(root / "models" / "m3col"),
                                           "--out", str(root / out)]))


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("m3col")
    evaluate(root, make_tree(root))
    return root


def metrics(root: Path) -> dict:
    return json.loads((root / "reports" / "m3col" / "metrics.json").read_text())


def test_means_stds_and_per_seed_values(done):
    m = metrics(done)
    e = m["image"]["m3col"]
    assert e["kind"] == "fusion" and e["accuracy"] == pytest.approx(0.87)
    assert e["accuracy_std"] == pytest.approx(0.026458, abs=1e-6)
    assert e["macro_f1"] == pytest.approx(0.85) and e["seeds"] == {"0": 0.85, "1": 0.86, "2": 0.9}
    assert e["switch_epoch"] == SWITCH
    assert e["conditions"] == {"grey": pytest.approx(0.77), "clean": pytest.approx(0.92)}
    assert m["image"]["image"]["kind"] == "unimodal" and m["image"]["image"]["accuracy_std"] == pytest.approx(0.02)
    assert m["image"]["text"]["accuracy_std"] == 0.0 and "switch_epoch" not in m["image"]["concat"]
    assert m["image"]["n_seeds"] == 3 and m["image"]["n_test"] == 100 and m["image"]["n_classes"] == 4
    assert m["image"]["ceiling"] == CEILING["image"] and m["speech"]["ceiling"] is None
    assert m["speech"]["conditions_n"] == {"grey": 30, "clean": 70}


def test_paired_differences_to_concat(done):
    p = metrics(done)["image"]["paired_vs_concat"]
    assert set(p) == {"image", "text", "aux", "clip", "m3co", "m3col"}
    assert p["m3col"]["seeds"] == pytest.approx({"0": 0.05, "1": 0.04, "2": 0.06})
    assert p["m3col"]["mean"] == pytest.approx(0.05) and p["m3col"]["std"] == pytest.approx(0.01)
    assert p["text"]["mean"] == pytest.approx(-0.22) and p["text"]["std"] == pytest.approx(0.02)
    s = metrics(done)["speech"]["paired_vs_concat"]["m3col"]
    assert s["mean"] == pytest.approx(-0.05) and s["std"] == pytest.approx(0.01)


def test_fusion_margin_picks_the_best_of_each_kind(done):
    img, sp = metrics(done)["image"]["fusion_margin"], metrics(done)["speech"]["fusion_margin"]
    assert (img["best_fusion"], img["best_unimodal"]) == ("m3col", "image")
    assert img["margin"] == pytest.approx(0.15)
    assert img["m3col_minus_best_unimodal"]["mean"] == pytest.approx(0.15)
    assert img["m3col_minus_best_unimodal"]["std"] == pytest.approx(0.01)
    # speech: concat (0.75) beats m3col (0.70); text (0.66) beats speech (0.55)
    assert (sp["best_fusion"], sp["best_unimodal"]) == ("concat", "text") and sp["margin"] == pytest.approx(0.09)
    d = sp["m3col_minus_best_unimodal"]
    assert d["seeds"] == pytest.approx({"0": 0.0, "1": 0.03, "2": 0.09}) and d["mean"] == pytest.approx(0.04)


def test_verdicts_better_worse_unclear(done):
    m = metrics(done)
    assert m["image"]["verdicts"]["m3col_vs_concat"]["verdict"] == "better"
    assert m["image"]["verdicts"]["m3col_vs_aux"]["verdict"] == "better"  # +3.7 ± 0.6
    assert m["speech"]["verdicts"]["m3col_vs_concat"]["verdict"] == "worse"
    v = m["speech"]["verdicts"]["m3col_vs_aux"]  # +5, -6, +6: mean +1.7 ± 6.7
    assert v["verdict"] == "no clear difference" and v["mean"] == pytest.approx(0.016667, abs=1e-6)
    assert [runs_mod.verdict(*a) for a in ((0.05, 0.01, 3), (-0.05, 0.01, 3), (0.01, 0.05, 3), (-0.01, 0.05, 2),
                                           (0.05, 0.0, 1), (None, None, 3))] == \
        ["better", "worse", "no clear difference", "no clear difference", "not judged (one seed)", "not measured"]
    md = (done / "reports" / "m3col" / "report.md").read_text()
    assert ": better." in md and ": worse." in md and ": no clear difference." in md


def test_plot_data(done):
    out = done / "reports" / "m3col"
    acc = json.loads((out / "plots" / "accuracy.json").read_text())
    assert len(acc) == 14 and {"task": "speech", "variant": "aux", "task_variant": "speech/aux",
                               "accuracy": pytest.approx(0.683333), "std": pytest.approx(0.076376, abs=1e-6)} in acc
    curves = json.loads((out / "plots" / "curves.json").read_text())
    assert len(curves) == 2 * 7 * 3 * EPOCHS
    m3col = [r for r in curves if r["task"] == "image" and r["variant"] == "m3col" and r["seed"] == 1]
    assert [r["phase"] for r in m3col] == ["m3co", "m3co", "softclip", "softclip", "softclip", "softclip"]
    assert m3col[0]["contrastive"] == pytest.approx(3.01) and m3col[-1]["valid_accuracy"] == pytest.approx(0.86)
    assert all(r["contrastive"] is None for r in curves if r["variant"] in ("concat", "aux", "image"))
    (clip,) = [r for r in curves if r["run"] == "speech/clip/s0" and r["epoch"] == 2]
    assert clip["valid_accuracy"] is None and clip["contrastive"] == pytest.approx(1.5)


def test_curves_figure_marks_the_switch_epoch(done, tmp_path):
    models = done / "models" / "m3col"
    runs = runs_mod.load_runs(models, VARIANTS, SEEDS, MODALITIES)
    summary = runs_mod.summarise(runs, VARIANTS, SEEDS)
    series = curve_series(runs, "image", VARIANTS["image"], SEEDS)
    assert series["switch"] == [SWITCH] and set(series["contrastive"]) == {"clip", "m3co", "m3col"}
    assert series["contrastive"]["m3col"][2][0] == (1, pytest.approx(3.02))
    marks = plot_curves(runs, summary, SEEDS, tmp_path / "curves.png")
    assert marks == {"image": [SWITCH - 0.5], "speech": [SWITCH - 0.5]}
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_figures_and_offline_report(done):
    out = done / "reports" / "m3col"
    pngs = sorted(p.name for p in (out / "figures").iterdir())
    assert pngs == ["accuracy.png", "conditions.png", "curves.png", "per_class.png"]
    assert all((out / "figures" / p).read_bytes()[:4] == b"\x89PNG" and (out / "figures" / p).stat().st_size > 1000
               for p in pngs)
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4 and "http://" not in page and "https://" not in page
    assert page.count("<table") >= 6 and "The paper&#x27;s numbers" in page and "94.3" in page and "83.8" in page
    md = (out / "report.md").read_text()
    assert "## The paper's numbers" in md and "DIFFERENT DATASETS" in md and "N24News (caption)" in md
    assert "| UniConcat | fusion | 82.0 ± 2.0 |" in md and "+5.0 ± 1.0" in md and "85.0, 86.0, 90.0" in md
    assert "](figures/curves.png)" in md and "sha256 of" in md and "Git commit" in md
    assert "ceiling" in md and "93.0" in md and "| grey | 30 |" in md


def test_rerun_is_byte_identical(done):
    out = done / "reports" / "m3col"
    files = ["metrics.json", "plots/accuracy.json", "plots/curves.json"]
    before = {f: (out / f).read_bytes() for f in files}
    evaluate(done, done / "params.yaml")
    assert {f: (out / f).read_bytes() for f in files} == before


def test_one_seed_has_zero_std_and_no_verdict(tmp_path):
    variants = {"image": ["image", "concat", "aux", "m3col"], "speech": ["text", "concat"]}
    make_tree(tmp_path, seeds=[1], variants=variants)
    runs = runs_mod.load_runs(tmp_path / "models" / "m3col", variants, [1], MODALITIES)
    m = runs_mod.summarise(runs, variants, [1])
    assert m["image"]["m3col"]["accuracy_std"] == 0.0 and m["image"]["paired_vs_concat"]["m3col"]["std"] == 0.0
    assert m["image"]["verdicts"]["m3col_vs_concat"]["verdict"] == "not judged (one seed)"
    assert m["speech"]["verdicts"] == {} and "m3col_minus_best_unimodal" not in m["speech"]["fusion_margin"]


def test_missing_run_is_one_line_naming_the_folder(tmp_path):
    params = make_tree(tmp_path, seeds=[0], variants={"image": ["concat", "m3col"], "speech": ["concat"]})
    gone = tmp_path / "models" / "m3col" / "image" / "m3col" / "s0"
    (gone / "result.json").unlink()
    with pytest.raises(DataError) as err:
        evaluate(tmp_path, params)
    msg = str(err.value)
    assert "\n" not in msg and str(gone) in msg and "dvc repro m3col-image" in msg and "m3col-speech" not in msg
    assert not (tmp_path / "reports" / "m3col").exists()


def patch(**fields):
    """An edit of result.json that overwrites some of its fields."""
    return lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), **fields}))


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.write_text("{not json"), "result.json: not readable JSON"),
    (patch(test={"accuracy": 1.5}), "test needs accuracy"),
    (patch(seed=4), "but its folder says image, m3col, 0"),
    (patch(kind="unimodal"), "expected 'fusion'"),
    (patch(per_class=[0.5]), "per_class needs"),
    (patch(classes=["a", "b", "c", "d"]), "other classes than"),
    (patch(conditions={"grey": {"n": 31, "accuracy": 0.5}}), "condition 'grey' has n=31"),
    (patch(switch_epoch=0), "switch_epoch must be"),
    (lambda p: (p.parent / "history.jsonl").write_text('{"epoch": 1}\n'), "history.jsonl: line 1 needs"),
    (lambda p: (p.parent / "history.jsonl").write_text(""), "history.jsonl: no epoch"),
])
def test_malformed_run_is_a_data_error_naming_it(tmp_path, edit, match):
    variants = {"image": ["concat", "m3col"], "speech": ["concat"]}
    make_tree(tmp_path, seeds=[0], variants=variants)
    path = tmp_path / "models" / "m3col" / "image" / "m3col" / "s0" / "result.json"
    edit(path)
    with pytest.raises(DataError, match=match) as err:
        runs_mod.load_runs(tmp_path / "models" / "m3col", variants, [0], MODALITIES)
    assert "image/m3col/s0" in str(err.value) and "\n" not in str(err.value)
