"""The real DVC pipeline on a tiny config, in a temporary git repository.

`dvc repro` runs every stage; a second `dvc repro` runs nothing and `dvc status` is clean; `dvc metrics
show` lists every strategy; `dvc exp run -S ...` re-runs only what the changed param touches; `python -m
pipeline compare` turns `dvc exp show --json` into one table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "data": {"synthetic": {"n_speakers": 5, "valid_speakers": 1, "test_speakers": 1, "utterances_per_speaker": 31,
                           "workers": 1}},
    "split": {"preset": None, "n_tasks": 2, "class_order": "paper"},
    "model": {"d_model": 32, "encoder_layers": 1, "heads": 2, "conv_channels": 32, "proj_dim": 16},
    "train": {"first_task_epochs": 1, "epochs": 1, "batch_size": 16, "threads": 1, "progress": False},
    # coconut-cwcl: its first and train stages read embed's real (MiniLM) transcript embeddings
    "cil": {"strategies": ["finetune", "replay", "coconut-cwcl"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "task0"}]},
    "vision": {"shapes": {"n_train": 48, "n_valid": 16, "n_test": 16}},
    "cwcl": {"speech": {"heldout_intents": 4, "encoder": {"d_model": 32, "layers": 1, "heads": 2},
                        "train": {"epochs": 1, "batch_size": 16, "threads": 1, "progress": False}},
             "image": {"text_encoder": {"d_model": 32, "layers": 1, "heads": 2},
                       "train": {"epochs": 1, "batch_size": 16, "threads": 1, "progress": False}}},
    # two epochs: m3col switches from M3Co to SoftCLIP at the second
    "m3col": {"data": {"image": {"n_train": 0, "n_valid": 0, "n_test": 0}},
              "image": {"variants": ["text", "concat", "m3col"], "heads": {"dim": 16, "hidden": 16},
                        "train": {"epochs": 2, "batch_size": 16, "threads": 1, "progress": False}},
              "speech": {"variants": ["speech", "m3col"], "encoder": {"d_model": 32, "heads": 2},
                         "heads": {"dim": 16, "hidden": 16},
                         "train": {"epochs": 2, "batch_size": 16, "threads": 1, "progress": False}}},
    "diffusion": {"n_valid": 8, "model": {"unet": {"channels": [8, 16], "norm_groups": 4, "attention_head_dim": 4},
                                          "sampling_steps": 4},
                  "train": {"epochs": 1, "batch_size": 16, "threads": 1, "progress": False},
                  "quality": {"per_class": 2, "frechet_n": 8, "grid_per_class": 2, "classifier_epochs": 1,
                              "classifier_batch": 16}},
    "genview": {"views": {"steps": 4, "tower_size": 64, "components": 4, "batch_size": 16},
                "ssl": {"width": 4, "proj_dim": 8, "train": {"epochs": 1, "batch_size": 16, "progress": False}},
                "probe": {"epochs": 2}},
    "cdvg": {"oracle": {"epochs": 1, "width": 8},
             "generator": {"model": {"unet": {"channels": [8, 16], "norm_groups": 4, "attention_head_dim": 4},
                                     "sampling_steps": 4},
                           "train": {"epochs": 1, "batch_size": 16, "threads": 1, "progress": False}, "n_valid": 16},
             "translate": {"steps": 4, "compare_n": 16, "batch_size": 64},
             # two methods (one without views, one with views and LfF) x both backbones keep the test short
             "train": {"methods": ["erm", "cdvg_lff"], "mlp_hidden": [16], "cnn_width": 4, "proj_dim": 8,
                       "train": {"epochs": 2, "eval_every": 1, "progress": False}}},
}


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res.stdout


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the project's tracked files as a fresh git + DVC repository with tiny params."""
    dest = tmp_path_factory.mktemp("dvc") / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"]):
        run(cmd, dest)
    return dest


def test_repro_then_nothing_to_do_then_metrics(repo):
    # every stage process logs the project files it imported (test_stage_deps_cover_the_modules_each_stage_imports)
    out = run(["dvc", "repro"], repo, env=dict(os.environ, PIPELINE_IMPORTS_LOG=str(repo.parent / "imports.jsonl")))
    for stage in ("prepare", "init@finetune-0", "first@0", "train@replay-0-task1", "embed", "train@coconut-cwcl-0-task1",
                  "evaluate", "cwcl-speech@cwcl-0", "cwcl-image@supervised-0", "evaluate-cwcl", "prepare-m3col",
                  "m3col-image@m3col-0", "m3col-speech@m3col-0", "evaluate-m3col", "diffusion", "genview-views",
                  "genview@simclr-0", "genview@genview-0", "evaluate-genview", "cdvg-data", "cdvg-oracles",
                  "cdvg-generator@0.99", "cdvg-views@0.99", "cdvg@erm-mlp-0.99-0", "cdvg@cdvg_lff-cnn-0.99-0",
                  "evaluate-cdvg"):
        assert f"Running stage '{stage}'" in out
    # a second run does nothing, and the workspace matches dvc.lock
    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again
    assert "up to date" in run(["dvc", "status"], repo).lower()
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    (data,) = [v["data"] for v in metrics.values()]
    shown = data["reports/cil/metrics.json"]["data"]
    assert set(shown) == {"finetune", "replay", "coconut-cwcl"}
    for m in shown.values():
        assert 0.0 <= m["avg_acc"] <= 1.0 and 0.0 <= m["last_acc"] <= 1.0
    assert (repo / "reports/cil/report.html").is_file()
    assert "reports/cwcl/metrics.json" in data and (repo / "reports/cwcl/report.html").is_file()
    m3col = data["reports/m3col/metrics.json"]["data"]
    assert {"text", "concat", "m3col"} <= set(m3col["image"]) and {"speech", "m3col"} <= set(m3col["speech"])
    assert json.loads((repo / "models/m3col/image/m3col/s0/result.json").read_text())["switch_epoch"] == 2
    genview = data["reports/genview/metrics.json"]["data"]
    assert set(genview["variants"]) == {"simclr", "fixed", "adaptive", "genview"}
    assert -1.0 <= genview["foreground"]["spearman"] <= 1.0 and (repo / "reports/genview/report.html").is_file()
    assert 0.0 <= data["reports/diffusion/metrics.json"]["data"]["quality"]["class_consistency"] <= 1.0
    cdvg = data["reports/cdvg/metrics.json"]["data"]
    assert set(cdvg["results"]["rho0.99"]["mlp"]) == set(cdvg["results"]["rho0.99"]["cnn"]) == {"erm", "cdvg_lff"}
    assert 0.0 <= cdvg["translation"]["rho0.99"]["rates"]["both"] <= 1.0 and (repo / "reports/cdvg/report.html").is_file()


def test_exp_run_reruns_only_the_changed_strategy_and_compare_reads_it(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", "--allow-empty"], repo)
    out = run(["dvc", "exp", "run", "-n", "buf10", "-S", "recipes.replay.buffer_size=10"], repo)
    assert "Running stage 'train@replay-0-task0'" in out
    # first@0 re-runs (it reads every recipe) and rewrites finetune's first task byte for byte: finetune's
    # chain does not re-run
    assert "Running stage 'first@0'" in out
    assert "Running stage 'train@finetune" not in out  # its params did not change
    assert "Running stage 'prepare'" not in out
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo))
    (repo / "exp.json").write_text(json.dumps(shown))
    table = run([sys.executable, "-m", "pipeline", "compare", "--input", "exp.json", "--out", "reports/compare"], repo)
    assert "buf10" in table and "recipes.replay.buffer_size" in table
    assert (repo / "reports/compare/compare.png").is_file()


def test_queued_experiments_end_in_one_comparison_table(repo):
    """The README's grid recipe: two queued experiments, `dvc queue start`, then `pipeline compare`."""
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "before queue", "--allow-empty"], repo)
    for name, size in (("q5", 5), ("q15", 15)):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"recipes.replay.buffer_size={size}"], repo)
    run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.time() + 600
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Failed" not in status, status
    table = run([sys.executable, "-m", "pipeline", "compare", "--out", "reports/compare-queue"], repo)
    for name in ("q5", "q15"):
        assert name in table
    assert "recipes.replay.buffer_size" in table
    rows = json.loads((repo / "reports/compare-queue/compare.json").read_text())
    assert rows  # one table across the experiments


# dispatch only (argument parsing, exit codes, the timing and import logs): no stage output depends on them
NOT_A_DEP = {"pipeline/__init__.py", "pipeline/__main__.py"}


def discovery_imports() -> set[str]:
    """The project files a fresh process imports to learn the params sections (pipeline.core.params
    .known_sections: every track's params.py and what it imports)."""
    code = ("import json, os, sys; from pipeline.core.params import known_sections; known_sections(); "
            "print(json.dumps(sorted(os.path.relpath(m.__file__) for n, m in list(sys.modules.items()) "
            "if n.startswith('pipeline') and getattr(m, '__file__', None))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_stage_deps_cover_the_modules_each_stage_imports(repo):
    """dvc.yaml's deps of each stage list every project module its process imports (else `dvc repro` reports
    "up to date" with stale outputs after an edit), and nothing under pipeline/ that it never imports."""
    log = repo.parent / "imports.jsonl"
    assert log.is_file(), "test_repro_then_nothing_to_do_then_metrics writes it"
    imported: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        imported.setdefault(row["stage"], set()).update(row["files"])
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(imported) == set(stages), "every stage ran and logged its imports"
    # the params modules of every track are imported to know which top-level sections exist (core.params);
    # a stage that reads one of them lists it itself
    discovery = discovery_imports()
    for name, files in sorted(imported.items()):
        deps = [d for d in stages[name]["deps"] if d.startswith("pipeline")]
        missing = sorted(f for f in files - NOT_A_DEP - discovery if not covered(f, deps))
        assert not missing, f"dvc.yaml: stage {name} imports {missing} but does not depend on them"
        unused = [d for d in deps if not any(covered(f, [d]) for f in files)]
        assert not unused, f"dvc.yaml: stage {name} depends on {unused} but never imports them"
