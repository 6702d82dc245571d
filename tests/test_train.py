"""End-to-end runs of the real init/train stages on a tiny synthetic corpus (two tasks).

Covers: every strategy's plumbing over a task boundary (buffer, teacher, S-KD targets, EWC Fisher carried
through the checkpoint), CPU determinism, and resume after ``kill -9`` mid-task.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import main as cli

TINY = {
    "seeds": [0],
    "data": {"source": "synthetic", "synthetic": {"n_speakers": 6, "valid_speakers": 1, "test_speakers": 1,
                                                  "utterances_per_speaker": 31, "workers": 1}},
    "split": {"preset": None, "n_tasks": 2, "class_order": "paper"},
    "model": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ff_mult": 2, "proj_dim": 16},
    "train": {"first_task_epochs": 2, "epochs": 2, "batch_size": 16, "eval_batch_size": 64, "threads": 1, "progress": False},
    "cil": {"strategies": ["finetune"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "task0"}]},
    "recipes": {
        "finetune": {},
        "joint": {"joint": True},
        "replay": {"replay": True, "buffer_size": 20},
        "skd": {"replay": True, "buffer_size": 20, "skd": True},
        "coconut": {"replay": True, "buffer_size": 20, "contrastive": "nspt", "mm": True},
        "coconut+skd": {"replay": True, "buffer_size": 20, "contrastive": "nspt", "mm": True, "skd": True},
        "coconut-supcon": {"replay": True, "buffer_size": 0.1, "contrastive": "supcon", "mm": False},
        "coconut-ntpt": {"replay": True, "buffer_size": 20, "contrastive": "ntpt", "mm": True},
        "herding": {"replay": True, "buffer_size": 20, "buffer_selection": "herding"},
        "lwf": {"lwf": True},
        "ewc": {"ewc": True, "ewc_lambda": 10.0},
    },
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding params.yaml and data/prepared for the tiny corpus (built once for the module)."""
    root = tmp_path_factory.mktemp("train")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    assert cli(["prepare", "--params", str(root / "params.yaml"), "--out", str(root / "data/prepared"), "--no-progress"]) == 0
    return root


def run_chain(workdir: Path, strategy: str, models: str, tasks=(0, 1), params: str = "params.yaml") -> list[dict]:
    common = ["--params", str(workdir / params), "--prepared", str(workdir / "data/prepared"),
              "--models", str(workdir / models)]
    assert cli(["init", "--strategy", strategy, "--seed", "0", *common]) == 0
    rows = []
    for k in tasks:
        assert cli(["train", "--strategy", strategy, "--seed", "0", "--task", str(k), *common]) == 0
        rows.append(json.loads((workdir / models / strategy / "s0" / f"task{k}" / "eval.json").read_text()))
    return rows


@pytest.mark.parametrize("strategy", ["coconut+skd", "coconut-supcon", "coconut-ntpt", "herding", "lwf", "ewc", "joint"])
def test_strategy_runs_two_tasks_and_carries_state(workdir, strategy):
    rows = run_chain(workdir, strategy, "models-" + strategy)
    folder = workdir / ("models-" + strategy) / strategy / "s0"
    r0, r1 = rows
    assert len(r0["acc_per_task"]) == 1 and len(r1["acc_per_task"]) == 2
    assert r1["n_tasks"] == 2 and r1["task"] == 1
    for r in rows:
        assert all(0.0 <= a <= 1.0 for a in r["acc_per_task"]) and 0.0 <= r["acc_seen"] <= 1.0
        assert r["wer_seen"] is not None and r["wer_seen"] >= 0.0
    # the seen-class accuracy is the sample-weighted mean of the per-task accuracies
    n = r1["n_test_per_task"]
    assert r1["acc_seen"] == pytest.approx(sum(a * m for a, m in zip(r1["acc_per_task"], n)) / sum(n))
    files = {p.name for p in (folder / "task1").iterdir()}
    assert {"model.safetensors", "optimizer.pt", "rng.pt", "state.json", "eval.json"} <= files
    assert not (folder / "task1.partial").exists()
    recipe = TINY["recipes"][strategy]
    if recipe.get("replay"):
        from safetensors.torch import load_file

        buf0, buf1 = (load_file(str(folder / f"task{k}" / "buffer.safetensors")) for k in (0, 1))
        classes0 = {int(k.split(".")[0][1:]) for k in buf0}
        classes1 = {int(k.split(".")[0][1:]) for k in buf1}
        assert classes0 < classes1  # the buffer grew to the new task's classes
        size = sum(v.numel() for k, v in buf1.items() if k.endswith(".index"))
        assert size == r1["buffer_size"] > 0
        # memory re-balanced over more classes: each old class keeps at most what it had
        for c in classes0:
            assert buf1[f"c{c}.index"].numel() <= buf0[f"c{c}.index"].numel()
            assert set(buf1[f"c{c}.index"].tolist()) <= set(buf0[f"c{c}.index"].tolist())
    else:
        assert r1["buffer_size"] == 0
    if recipe.get("skd"):
        from safetensors.torch import load_file

        skd = load_file(str(folder / "task1" / "skd.safetensors"))
        assert skd["index"].numel() == r1["buffer_size"]
        hist = json.loads((folder / "task1" / "state.json").read_text())["history"]
        assert all(h.get("skd", 0) > 0 for h in hist)  # rehearsal samples got the S-KD term in task 1
    if recipe.get("ewc"):
        hist = json.loads((folder / "task1" / "state.json").read_text())["history"]
        assert all(h.get("ewc", 0) > 0 for h in hist)


def test_same_params_and_seed_give_identical_results(workdir):
    a = run_chain(workdir, "coconut+skd", "det-a")
    b = run_chain(workdir, "coconut+skd", "det-b")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    for name in ("model.safetensors", "buffer.safetensors", "skd.safetensors"):
        fa = workdir / "det-a" / "coconut+skd" / "s0" / "task1" / name
        fb = workdir / "det-b" / "coconut+skd" / "s0" / "task1" / name
        assert fa.read_bytes() == fb.read_bytes(), name


def test_missing_previous_checkpoint_is_a_clear_error(workdir, capsys):
    code = cli(["train", "--strategy", "finetune", "--seed", "0", "--task", "1", "--params", str(workdir / "params.yaml"),
                "--prepared", str(workdir / "data/prepared"), "--models", str(workdir / "nothing")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "task0" in err[0] and "state.json" in err[0]


def _train_cmd(workdir: Path, models: str, params: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "train", "--strategy", "coconut+skd", "--seed", "0", "--task", "1",
            "--params", str(workdir / params), "--prepared", str(workdir / "data/prepared"), "--models", str(workdir / models)]


def kill_after_epoch(cmd: list[str], partial_state: Path, epochs: int, env: dict) -> int:
    """Start ``cmd``, kill -9 it once ``partial_state`` records ``epochs`` finished epochs; the epochs done."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if partial_state.is_file() and json.loads(partial_state.read_text())["epochs_done"] >= epochs:
            break
        if proc.poll() is not None:
            pytest.fail(f"{' '.join(cmd[2:4])} ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.loads(partial_state.read_text())["epochs_done"]


def test_resume_after_kill_matches_uninterrupted_run(workdir):
    """kill -9 during task 1 after an epoch checkpoint; the re-run resumes and ends with the same metrics."""
    # a cosine schedule: the resumed run must also continue the learning-rate schedule where it stopped
    params = dict(TINY, train=dict(TINY["train"], epochs=4, lr_schedule="cosine"))
    (workdir / "params-resume.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(workdir / "params-resume.yaml"), "--prepared", str(workdir / "data/prepared")]
    for models in ("resume-a", "resume-b"):
        assert cli(["init", "--strategy", "coconut+skd", "--seed", "0", "--models", str(workdir / models), *common]) == 0
        assert cli(["train", "--strategy", "coconut+skd", "--seed", "0", "--task", "0",
                    "--models", str(workdir / models), *common]) == 0
    # uninterrupted
    assert cli(["train", "--strategy", "coconut+skd", "--seed", "0", "--task", "1",
                "--models", str(workdir / "resume-a"), *common]) == 0
    # interrupted: wait for the end of epoch 2, then kill -9
    partial = workdir / "resume-b" / "coconut+skd" / "s0" / "task1.partial" / "state.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = kill_after_epoch(_train_cmd(workdir, "resume-b", "params-resume.yaml"), partial, 2, env)
    out_b = workdir / "resume-b" / "coconut+skd" / "s0" / "task1"
    assert not (out_b / "eval.json").exists()  # nothing that looks complete
    assert 2 <= done < 4
    res = subprocess.run(_train_cmd(workdir, "resume-b", "params-resume.yaml"), capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert f"resuming coconut+skd task 1 after epoch {done}" in res.stdout
    a = json.loads((workdir / "resume-a" / "coconut+skd" / "s0" / "task1" / "eval.json").read_text())
    b = json.loads((out_b / "eval.json").read_text())
    for key in ("acc_per_task", "acc_seen", "acc_per_class", "wer_seen", "final_loss", "buffer_size"):
        assert a[key] == b[key], key
    model_a = workdir / "resume-a" / "coconut+skd" / "s0" / "task1" / "model.safetensors"
    assert model_a.read_bytes() == (out_b / "model.safetensors").read_bytes()
    assert not out_b.with_name("task1.partial").exists()
    shutil.rmtree(workdir / "resume-a")


def test_learning_rate_schedules():
    from pipeline.continual.template import lr_factor

    assert [lr_factor("constant", s, 10, 0.05) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cos = [lr_factor("cosine", s, 11, 0.05) for s in range(11)]
    assert cos[0] == pytest.approx(1.0) and cos[-1] == pytest.approx(0.05) and cos[5] == pytest.approx(0.525)
    assert all(a > b for a, b in zip(cos, cos[1:]))  # strictly decreasing over the task
    assert lr_factor("cosine", 0, 1, 0.05) == pytest.approx(1.0)  # a one-step task keeps lr


def test_label_smoothing_is_the_training_criterion(workdir):
    """``train.label_smoothing`` reaches the loss the template minimises (same init, same batches)."""
    params = dict(TINY, train=dict(TINY["train"], label_smoothing=0.0))
    (workdir / "params-nols.yaml").write_text(yaml.safe_dump(params))
    (plain,) = run_chain(workdir, "finetune", "nols", tasks=(0,), params="params-nols.yaml")
    (smoothed,) = run_chain(workdir, "finetune", "ls", tasks=(0,))  # TINY leaves the default, 0.1
    # the runs see the same batches from the same weights; the smoothed cross-entropy adds eps x the mean
    # -log p over the vocabulary, above the target's -log p once the model has learnt anything
    assert smoothed["final_loss"] > plain["final_loss"]


# ----------------------------------------------------------------------------- the algorithms on a small model


def _fisher_batches(n_batches: int = 3):
    from test_model import batch

    feats, lens, tokens = batch([40, 64, 23, 57, 31, 50])
    y = tokens[:, 1] - 5
    return [(feats[i::n_batches], y[i::n_batches], lens[i::n_batches], tokens[i::n_batches]) for i in range(n_batches)]


def test_ewc_fisher_pass_runs_rnns_in_training_mode_on_the_deterministic_model():
    """cuDNN's RNN backward refuses a module in eval mode; the Fisher must still be that of the model without
    dropout (nor SpecAugment), and every module's mode and the GRU's dropout must come back as they were."""
    import torch

    from pipeline.continual.regularizers import OnlineEWC
    from test_model import make

    model = make("gru", dropout=0.3, spec_augment=True)  # 2 GRU layers: inter-layer dropout 0.3
    rnn = model.encoder.layers
    assert isinstance(rnn, torch.nn.RNNBase) and rnn.dropout == 0.3
    batches = _fisher_batches()

    # reference: the eval-mode computation (what the CPU computed before), mean of squared gradients
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for feats, _, lens, tokens in batches:
        model.zero_grad()
        model.token_loss(model(feats, lens, tokens).token_logits, tokens).backward()
        for n, p in params.items():
            if p.grad is not None:
                expected[n] += p.grad ** 2
    expected = {n: f / len(batches) for n, f in expected.items()}

    # cuDNN's rule, on the CPU: an RNN called with gradients enabled must be in training mode
    def cudnn_rule(module, args):
        if torch.is_grad_enabled() and not module.training:
            raise RuntimeError("cudnn RNN backward can only be called in training mode")

    hooks = [m.register_forward_pre_hook(cudnn_rule) for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    assert hooks
    model.train()
    model.decoder.eval()  # a mixed state, restored module by module
    flags = {name: m.training for name, m in model.named_modules()}
    ewc = OnlineEWC(1.0)
    ewc.end_task(model, batches, torch.device("cpu"))
    for h in hooks:
        h.remove()

    assert {name: m.training for name, m in model.named_modules()} == flags
    assert rnn.dropout == 0.3
    assert ewc.fisher.keys() == expected.keys()
    for n, f in expected.items():
        torch.testing.assert_close(ewc.fisher[n], f, rtol=1e-6, atol=0.0, msg=n)
    assert sum(float(f.sum()) for f in ewc.fisher.values()) > 0


def _coconut_batch(model):
    from test_model import batch

    feats, lens, tokens = batch([40, 64, 23, 57, 31, 50])
    y = torch_bool([0, 1, 0, 1, 0, 0]).long()  # the two rehearsal samples share class 0 (a SupCon positive)
    return model(feats, lens, tokens), feats, lens, tokens, y, torch_bool([1, 0, 1, 0, 0, 0])


def torch_bool(values):
    import torch

    return torch.tensor(values, dtype=torch.bool)


@pytest.mark.parametrize("variant", ["nspt", "ntpt"])
def test_coconut_rehearsal_samples_without_a_teacher_are_an_error(variant):
    """Rehearsal samples exist only after a previous task, which sets the teacher: a batch with some and no
    teacher is a wiring bug, not a batch to skip the term on."""
    from pipeline.continual.coconut import Coconut
    from test_model import make

    model = make("gru").train()
    algo = Coconut(variant, 0.1, 0.3, True, 0.1, 0.3)
    algo.start_task(model, has_past=False)
    out, feats, lens, tokens, y, rehearsal = _coconut_batch(model)
    with pytest.raises(RuntimeError, match="no teacher"):
        algo.penalty(model, out, feats, lens, tokens, y, rehearsal)
    assert set(algo.penalty(model, out, feats, lens, tokens, y, ~torch_bool([1] * 6))) == {"mm"}  # task 0: no rehearsal
    algo.start_task(model, has_past=True)
    assert set(algo.penalty(model, out, feats, lens, tokens, y, rehearsal)) == {"contrastive", "mm"}


def test_coconut_supcon_needs_no_teacher_and_terms_are_float32_under_autocast():
    import torch

    from pipeline.continual.coconut import Coconut
    from test_model import make

    model = make("gru").train()
    for variant in ("supcon", "nspt"):
        algo = Coconut(variant, 0.1, 0.3, True, 0.1, 0.3)
        algo.start_task(model, has_past=True)
        assert (algo.teacher is None) == (variant == "supcon")
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what the plugin does on CUDA
            out, feats, lens, tokens, y, rehearsal = _coconut_batch(model)
            terms = algo.penalty(model, out, feats, lens, tokens, y, rehearsal)
        assert set(terms) == {"contrastive", "mm"}
        assert all(t.dtype == torch.float32 and torch.isfinite(t) and t > 0 for t in terms.values()), variant


def _history(workdir: Path, models: str, strategy: str, task: int) -> list[dict]:
    return json.loads((workdir / models / strategy / "s0" / f"task{task}" / "state.json").read_text())["history"]


@pytest.mark.parametrize("strategy, every_task, later_tasks", [("coconut", ["mm"], ["contrastive"]), ("lwf", [], ["lwf"])])
def test_training_history_shows_each_term_active(workdir, strategy, every_task, later_tasks):
    """COCONUT's MM term from task 0 on and its NSPT term from task 1 on (rehearsal samples need a previous task),
    LwF's from task 1 on: every epoch's history has them, finite and > 0; task 0 has no term that needs a past."""
    import math

    run_chain(workdir, strategy, "terms-" + strategy)
    for task, expected in ((0, every_task), (1, every_task + later_tasks)):
        hist = _history(workdir, "terms-" + strategy, strategy, task)
        assert len(hist) == 2, task  # TINY: 2 epochs per task
        for h in hist:
            for term in expected:
                assert term in h and math.isfinite(h[term]) and h[term] > 0, (task, term, h)
            for term in set(later_tasks) - set(expected):
                assert term not in h, (task, term, h)
