"""The evaluate-cwcl stage on constructed run folders with known numbers: metrics.json (means, stds, paired
differences), the claim verdicts, plot data, figures, the report, and the one-line error of a missing run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from pipeline.__main__ import run as cli
from pipeline.errors import DataError
from pipeline.report import cwcl_runs as report

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
# (task, set) -> loss -> held-out accuracy per seed; CWCL - CL: intents +10 +20 +0 (below 20-30), keywords +35
# everywhere (above), combos +6 everywhere (inside 5-8)
UNSEEN = {
    ("speech", "intents"): {"cl": [0.40, 0.50, 0.60], "cwcl": [0.50, 0.70, 0.60], "supervised": [0.90, 0.92, 0.94]},
    ("speech", "keywords"): {"cl": [0.10, 0.10, 0.10], "cwcl": [0.45, 0.45, 0.45]},
    ("image", "combos"): {"cl": [0.30, 0.32, 0.34], "cwcl": [0.36, 0.38, 0.40], "supervised": [0.8, 0.8, 0.8]},
}
N_CLASSES = {"intents": 6, "keywords": 4, "combos": 8}


def held_out(name: str, seed: int) -> list[int]:
    """Each seed holds out other classes (as with cwcl.heldout_seed null); keywords: all unseen."""
    n = N_CLASSES[name]
    return list(range(n)) if name == "keywords" else sorted({seed % n, (seed + 1) % n})


def write_run(models: Path, task: str, loss: str, seed: int, sets: list[str]) -> None:
    folder = models / task / loss / f"s{seed}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    doc = {"task": task, "loss": loss, "seed": seed, "tau": 0.05, "final_tau": 0.05 + 0.01 * seed,
           "learn_temperature": False, "sets": {}}
    tensors = {}
    for name in sets:
        c, unseen = N_CLASSES[name], held_out(name, seed)
        u = UNSEEN[task, name][loss][seed]
        metrics = {"unseen": u, "gzsl_unseen": u / 2, "all": 0.5, "chance_unseen": 1 / len(unseen),
                   "chance_all": 1 / c}
        if len(unseen) < c:
            metrics |= {"seen": 0.8, "gzsl_seen": 0.7, "harmonic": 2 * (u / 2) * 0.7 / (u / 2 + 0.7),
                        "chance_seen": 1 / (c - len(unseen))}
        per_class = [u if k in unseen else 0.8 for k in range(c)]
        doc["sets"][name] = {"classes": [f"{name}_{k}" for k in range(c)], "unseen": unseen, "n": 4 * c,
                             "metrics": metrics, "per_class": per_class}
        labels = np.repeat(np.arange(c), 4)
        emb = rng.normal(size=(4 * c, 5)) + np.eye(c, 5)[labels] * 3
        tensors[f"{name}.scores"] = rng.normal(size=(4 * c, c)).astype(np.float32)
        tensors[f"{name}.labels"] = labels.astype(np.int64)
        tensors[f"{name}.emb"] = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float16)
    (folder / "zeroshot.json").write_text(json.dumps(doc))
    save_file(tensors, str(folder / "zeroshot.safetensors"))


def make_tree(root: Path, seeds=SEEDS, losses=("cl", "cwcl", "supervised"), keywords=True) -> Path:
    """params.yaml and every run folder under root/models/cwcl."""
    for task, sets in (("speech", ["intents", "keywords"] if keywords else ["intents"]), ("image", ["combos"])):
        for loss in losses:
            for seed in seeds:
                write_run(root / "models" / "cwcl", task, loss, seed,
                          [s for s in sets if not (loss == "supervised" and s == "keywords")])
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"seeds": list(seeds), "cwcl": {"losses": list(losses)}}))
    return params


def evaluate(root: Path, params: Path) -> int:
    return cli(["evaluate-cwcl", "--params", str(params), "--models", str(root / "models" / "cwcl"),
                "--out", str(root / "reports" / "cwcl")])


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cwcl")
    assert evaluate(root, make_tree(root)) == 0
    return root / "reports" / "cwcl"


def test_metrics_means_stds_and_paired_differences(done):
    m = json.loads((done / "metrics.json").read_text())
    intents = m["speech"]["intents"]
    assert intents["n_seeds"] == 3 and intents["n_classes"] == 6 and intents["n_unseen"] == 2
    assert intents["cl"]["unseen"] == pytest.approx(0.5) and intents["cl"]["unseen_std"] == pytest.approx(0.1)
    assert intents["cwcl"]["unseen"] == pytest.approx(0.6) and intents["cwcl"]["unseen_std"] == pytest.approx(0.1)
    assert intents["supervised"]["unseen"] == pytest.approx(0.92)
    d = intents["cwcl_minus_cl"]["unseen"]
    assert (d["s0"], d["s1"], d["s2"]) == pytest.approx((0.1, 0.2, 0.0))
    assert d["mean"] == pytest.approx(0.1) and d["std"] == pytest.approx(0.1)
    assert intents["chance"] == pytest.approx({"chance_unseen": 0.5, "chance_seen": 0.25, "chance_all": 1 / 6}, abs=1e-6)
    for key in ("seen", "gzsl_unseen", "gzsl_seen", "harmonic", "all"):
        assert key in intents["cl"] and key in intents["cwcl_minus_cl"]
    assert m["image"]["combos"]["cwcl_minus_cl"]["unseen"]["std"] == pytest.approx(0.0, abs=1e-6)
    assert m["temperatures"]["speech"]["cl"] == {"tau": 0.05, "final_tau": pytest.approx(0.06), "learned": False}
    assert "supervised" not in m["temperatures"]["image"]


def test_keywords_have_no_bound_and_no_seen_metrics(done):
    kw = json.loads((done / "metrics.json").read_text())["speech"]["keywords"]
    assert "supervised" not in kw and "seen" not in kw["cl"] and "harmonic" not in kw["cl"]
    assert kw["cwcl_minus_cl"]["unseen"]["mean"] == pytest.approx(0.35)


def test_claim_verdicts(done):
    m = json.loads((done / "metrics.json").read_text())
    assert m["speech"]["intents"]["claim"]["verdict"] == "below"
    assert m["speech"]["keywords"]["claim"]["verdict"] == "above"
    assert m["image"]["combos"]["claim"]["verdict"] == "in"
    assert [report.verdict(x, 0.05, 0.08) for x in (0.049, 0.05, 0.08, 0.081, None)] == \
        ["below", "in", "in", "above", "not measured"]


def test_plot_data_and_figures(done):
    rows = json.loads((done / "plots" / "zeroshot.json").read_text())
    assert {"task_set": "image/combos", "loss": "cwcl", "accuracy": pytest.approx(0.38)} in rows
    assert {r["task_set"] for r in rows} == {"speech/intents", "speech/keywords", "image/combos"}
    per_class = json.loads((done / "plots" / "per_class.json").read_text())
    # intents_1 is held out by seeds 0 and 1: the mean of its accuracies there
    (row,) = [r for r in per_class if r["class"] == "intents_1" and r["loss"] == "cl"]
    assert row["accuracy"] == pytest.approx(0.45)
    assert len([r for r in per_class if r["task_set"] == "speech/keywords"]) == 2 * N_CLASSES["keywords"]
    pngs = sorted(p.name for p in (done / "figures").iterdir())
    assert pngs == ["embedding_map_intents.png", "per_class_unseen.png", "similarity_intents.png", "zeroshot_accuracy.png"]
    assert all((done / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    dvc_plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    assert {f"reports/cwcl/figures/{p}" for p in pngs} <= set(dvc_plots)


def test_report_tables_and_offline_html(done):
    page = (done / "report.html").read_text()
    assert page.count("<table") >= 4 and "CWCL − CL (paired)" in page and "+10.0 ± 10.0" in page
    assert page.count('src="data:image/png;base64,') == 4 and "http://" not in page and "https://" not in page
    md = (done / "report.md").read_text()
    assert "| supervised (bound) |" in md.replace("*", "") and "](figures/zeroshot_accuracy.png)" in md
    assert "below the paper's range" in md and "above the paper's range" in md and "inside the paper's range" in md


def test_one_seed_without_keywords_or_bound(tmp_path):
    params = make_tree(tmp_path, seeds=[1], losses=("cl", "cwcl"), keywords=False)
    assert evaluate(tmp_path, params) == 0
    m = json.loads((tmp_path / "reports" / "cwcl" / "metrics.json").read_text())
    assert set(m["speech"]) == {"intents"} and "unseen_std" not in m["speech"]["intents"]["cl"]
    assert m["speech"]["intents"]["cwcl_minus_cl"]["unseen"] == pytest.approx({"mean": 0.2, "s1": 0.2})
    assert "one seed" in (tmp_path / "reports" / "cwcl" / "report.md").read_text()


def test_missing_run_is_one_line_naming_the_folder(tmp_path):
    params = make_tree(tmp_path, seeds=[0], losses=("cl", "cwcl"), keywords=False)
    gone = tmp_path / "models" / "cwcl" / "speech" / "cwcl" / "s0"
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "evaluate-cwcl", "--params", str(params), "--models",
                           str(tmp_path / "models" / "cwcl"), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert str(gone) in line and "dvc repro cwcl-speech" in line and "cwcl-image" not in line
    assert not (tmp_path / "out").exists()


def test_runs_of_one_seed_must_hold_out_the_same_classes(tmp_path):
    make_tree(tmp_path, seeds=[0], losses=("cl", "cwcl"), keywords=False)
    path = tmp_path / "models" / "cwcl" / "image" / "cwcl" / "s0" / "zeroshot.json"
    doc = json.loads(path.read_text())
    doc["sets"]["combos"]["unseen"] = [5, 6]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="image/cwcl/s0/zeroshot.json: sets.combos holds out other classes"):
        report.load_runs(tmp_path / "models" / "cwcl", ["cl", "cwcl"], [0])
