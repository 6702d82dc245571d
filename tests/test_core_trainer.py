"""pipeline.core.trainer: determinism, resume after kill -9, fingerprints, selection on the valid split only,
frozen parameters and groups, the config section.

A 2-layer MLP (with dropout, so the RNG stream matters) on two seeded Gaussian blobs; an epoch takes
milliseconds. The kill test runs this file's :func:`main` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pipeline.core import checkpoint as ckpt
from pipeline.core.params import from_dict
from pipeline.core.trainer import Trainer, TrainerConfig, load_model, read_history
from pipeline.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]

CFG = TrainerConfig(epochs=4, batch_size=32, eval_batch_size=64, lr=0.05, lr_schedule="cosine", warmup=0.1,
                    lr_final=0.1, grad_clip=1.0, device="cpu", threads=1, progress=False)


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 1.5 * (2 * y[:, None] - 1)
    return TensorDataset(x, y)


class MLP(nn.Module):
    def __init__(self, freeze_embed: bool = False):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.body = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.embed.requires_grad_(not freeze_embed)

    def forward(self, x):
        return self.head(self.body(self.embed(x)))


def step(model, batch):
    x, y = batch
    logits = model(x)
    ce = nn.functional.cross_entropy(logits, y)
    reg = 1e-3 * logits.pow(2).mean()
    return {"loss": ce + reg, "ce": ce, "reg": reg}


def accuracy(model, loader):
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return {"accuracy": correct / total}


def make_trainer(out: Path, cfg: TrainerConfig = CFG, fingerprint: str = "fp", seed: int = 0, evaluate=accuracy,
                 model: nn.Module | None = None, step_fn=step, **kw) -> Trainer:
    torch.manual_seed(seed)  # the caller seeds the initial weights
    model = model if model is not None else MLP()
    return Trainer(cfg, model, step_fn, evaluate, out=out, fingerprint=fingerprint, seed=seed, **kw)


def data():
    return blobs(320, 1), blobs(128, 2)


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file; history.jsonl without its wall-clock seconds (the one non-reproducible field)."""
    out = {}
    for f in sorted(folder.iterdir()):
        body = f.read_bytes()
        if f.name == "history.jsonl":
            rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(folder)]
            body = json.dumps(rows).encode()
        out[f.name] = hashlib.sha256(body).hexdigest()
    return out


@pytest.fixture(autouse=True)
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def main(argv: list[str]) -> None:
    """Subprocess entry: train into argv[0]; argv[1] seconds of sleep per step (to be killed in time)."""
    out, pause = Path(argv[0]), float(argv[1])

    def slow_step(model, batch):
        time.sleep(pause)
        return step(model, batch)

    result = make_trainer(out, replace(CFG, epochs=5), step_fn=slow_step).fit(*data())
    print(json.dumps({"resumed_after": result.resumed_after}))


# ----------------------------------------------------------------------------- determinism and resume


def test_same_seed_gives_the_same_bytes(tmp_path):
    train, valid = data()
    a = make_trainer(tmp_path / "a").fit(train, valid)
    make_trainer(tmp_path / "b").fit(train, valid)
    make_trainer(tmp_path / "c", seed=1).fit(train, valid)
    da, db, dc = (digests(tmp_path / n) for n in "abc")
    assert set(da) == {".pipeline-output", "model.safetensors", "last.safetensors", "history.jsonl", "state.json"}
    assert da == db
    assert dc["model.safetensors"] != da["model.safetensors"]
    assert not (tmp_path / "a.partial").exists()
    hist = read_history(tmp_path / "a")
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and set(hist[0]["train"]) == {"loss", "ce", "reg"}
    assert hist[-1]["valid"]["accuracy"] > 0.9 and a.best["accuracy"] > 0.9
    assert hist[0]["lr"] != hist[-1]["lr"]  # the schedule moved


def test_resume_after_kill_9_ends_with_the_same_bytes(tmp_path):
    """kill -9 the trainer after its first epoch checkpoint; the re-run resumes (model, optimiser, cosine
    schedule, RNG, best-so-far) and ends with the files of an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    cmd = [sys.executable, "-c", "import sys, test_core_trainer as t; t.main(sys.argv[1:])"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(killed), "0.02"], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    state = killed.with_name("killed.partial") / "state.json"
    deadline = time.time() + 60
    while not state.is_file():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "state.json").exists()  # nothing that looks finished
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 5

    rerun = subprocess.run([*cmd, str(killed), "0"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(rerun.stdout.splitlines()[-1]) == {"resumed_after": done}
    main([str(tmp_path / "whole"), "0"])  # the uninterrupted run, in this process
    assert digests(killed) == digests(tmp_path / "whole")
    assert not killed.with_name("killed.partial").exists()


class Stop(Exception):
    pass


def interrupted(out: Path, fingerprint: str, after: int) -> None:
    """Train until the evaluation of epoch ``after + 1`` raises: the partial state of epoch ``after`` stays."""
    calls = []

    def evaluate(model, loader):
        calls.append(1)
        if len(calls) > after:
            raise Stop
        return accuracy(model, loader)

    with pytest.raises(Stop):
        make_trainer(out, fingerprint=fingerprint, evaluate=evaluate).fit(*data())


def test_a_partial_state_of_another_fingerprint_is_not_resumed(tmp_path, capsys):
    train, valid = data()
    make_trainer(tmp_path / "whole", fingerprint="B").fit(train, valid)

    interrupted(tmp_path / "other", "A", after=2)
    assert ckpt.read_meta(tmp_path / "other.partial")["epochs_done"] == 2
    result = make_trainer(tmp_path / "other", fingerprint="B").fit(train, valid)
    assert result.resumed_after == 0 and "partial state of another run" in capsys.readouterr().out
    assert digests(tmp_path / "other") == digests(tmp_path / "whole")

    interrupted(tmp_path / "same", "B", after=2)  # the same fingerprint: resumed, same bytes
    assert make_trainer(tmp_path / "same", fingerprint="B").fit(train, valid).resumed_after == 2
    assert digests(tmp_path / "same") == digests(tmp_path / "whole")
    # a finished output of the same run is not trained again; its selected weights are loaded
    again = make_trainer(tmp_path / "same", fingerprint="B")
    assert again.fit(train, valid).best_epoch == result.best_epoch
    assert all(torch.equal(v, ckpt.read_tensors(tmp_path / "same", "model")[k])
               for k, v in again.model.state_dict().items())


# ----------------------------------------------------------------------------- selection


@pytest.mark.parametrize("mode,scores,best", [("max", [0.5, 0.7, 0.7, 0.6], 2), ("min", [0.5, 0.3, 0.4, 0.3], 2),
                                              ("max", [float("nan"), 0.1, 0.2, 0.2], 3)])
def test_selection_reads_the_valid_split_only(tmp_path, mode, scores, best):
    train, valid = data()
    seen, weights = [], []

    def evaluate(model, loader):
        seen.append(loader.dataset)
        assert not model.training and not torch.is_grad_enabled()
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": scores[len(seen) - 1], "other": 1.0}

    cfg = replace(CFG, select_metric="score", select_mode=mode)
    trainer = make_trainer(tmp_path / "out", cfg, evaluate=evaluate)
    result = trainer.fit(train, valid)
    assert len(seen) == 4 and all(d is valid for d in seen)
    hist = read_history(tmp_path / "out")
    assert [h["valid"]["score"] for h in hist][1:] == scores[1:]
    assert result.best_epoch == best == ckpt.read_meta(tmp_path / "out")["best_epoch"]
    for name, epoch in (("model", best), ("last", 4)):
        saved = ckpt.read_tensors(tmp_path / "out", name)
        assert all(torch.equal(v, weights[epoch - 1][k]) for k, v in saved.items())
    # the trainer leaves the selected weights in the model
    assert all(torch.equal(v, weights[best - 1][k]) for k, v in trainer.model.state_dict().items())


def test_eval_every_and_an_unknown_select_metric(tmp_path):
    train, valid = data()
    calls = []

    def evaluate(model, loader):
        calls.append(1)
        return accuracy(model, loader)

    make_trainer(tmp_path / "a", replace(CFG, epochs=5, eval_every=2), evaluate=evaluate).fit(train, valid)
    assert ["valid" in h for h in read_history(tmp_path / "a")] == [False, True, False, True, True]
    assert len(calls) == 3
    with pytest.raises(ParamsError, match=r"^params: train.select_metric: 'f1' is not among .*\(accuracy\)$"):
        make_trainer(tmp_path / "b", replace(CFG, select_metric="f1")).fit(train, valid)


# ----------------------------------------------------------------------------- frozen parts and groups


def test_a_frozen_submodule_is_not_optimised_and_saved_once(tmp_path):
    train, valid = data()
    torch.manual_seed(0)
    model = MLP(freeze_embed=True)
    before = {k: v.clone() for k, v in model.embed.state_dict().items()}
    groups = lambda m: [{"params": m.parameters()}]  # noqa: E731  (the trainer drops the frozen ones)
    trainer = make_trainer(tmp_path / "out", model=model, param_groups=groups)
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in model.embed.parameters()}
    assert optimised == {id(p) for n, p in model.named_parameters() if not n.startswith("embed.")}
    trainer.fit(train, valid)
    assert all(torch.equal(before[k], v) for k, v in model.embed.state_dict().items())
    out = tmp_path / "out"
    assert ckpt.read_meta(out)["frozen"] == ["embed.bias", "embed.weight"]
    assert not {"embed.weight", "embed.bias"} & set(ckpt.read_tensors(out, "last"))
    assert torch.equal(ckpt.read_tensors(out, "model")["embed.weight"], before["weight"])
    for which in ("best", "last"):  # strict=True inside
        load_model(out, MLP(freeze_embed=True), which)


def test_parameter_groups_take_their_own_learning_rate(tmp_path):
    train, valid = data()
    groups = lambda m: [{"params": m.head.parameters(), "lr_scale": 0.1, "name": "head"},  # noqa: E731
                        {"params": [*m.embed.parameters(), *m.body.parameters()], "name": "rest"}]
    make_trainer(tmp_path / "out", param_groups=groups).fit(train, valid)
    for row in read_history(tmp_path / "out"):
        assert row["lr_groups"]["head"] == pytest.approx(0.1 * row["lr_groups"]["rest"])
        assert row["lr"] == row["lr_groups"]["head"]
    with pytest.raises(ValueError, match="head.weight is trainable but in no group"):
        make_trainer(tmp_path / "bad", param_groups=lambda m: [{"params": m.body.parameters()},
                                                               {"params": m.embed.parameters()}])


def test_a_torch_scheduler_is_checkpointed_and_resumed(tmp_path):
    train, valid = data()
    sched = lambda opt, total: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)  # noqa: E731
    make_trainer(tmp_path / "whole", scheduler=sched).fit(train, valid)
    calls = []

    def stop_at_3(model, loader):
        calls.append(1)
        if len(calls) == 3:
            raise Stop
        return accuracy(model, loader)

    with pytest.raises(Stop):
        make_trainer(tmp_path / "cut", evaluate=stop_at_3, scheduler=sched).fit(train, valid)
    assert make_trainer(tmp_path / "cut", scheduler=sched).fit(train, valid).resumed_after == 2
    assert digests(tmp_path / "cut") == digests(tmp_path / "whole")
    lrs = [h["lr"] for h in read_history(tmp_path / "whole")]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]


# ----------------------------------------------------------------------------- config


def test_the_config_is_a_strict_params_section():
    cfg = from_dict(TrainerConfig, {"epochs": 3, "lr": 1, "grad_clip": None, "select_mode": "min"}, "cwcl.train")
    assert cfg.epochs == 3 and cfg.lr == 1.0 and cfg.grad_clip is None and cfg.select_mode == "min"
    bad = [({"epoch": 3}, "cwcl.train.epoch: unknown key; allowed keys: epochs,"),
           ({"epochs": 0}, "cwcl.train.epochs: must be >= 1"),
           ({"lr": "fast"}, "cwcl.train.lr: expected a number"),
           ({"select_mode": "best"}, "cwcl.train.select_mode: expected one of 'max', 'min'"),
           ({"grad_clip": -1}, "cwcl.train.grad_clip: must be > 0"),
           ({"device": "tpu"}, "cwcl.train.device: expected one of 'auto', 'cpu', 'cuda'"),
           ({"warmup": 1.0}, "cwcl.train.warmup: must be in [0, 1)"),
           ({"seed": 1}, "cwcl.train.seed: unknown key")]
    for raw, message in bad:
        with pytest.raises(ParamsError) as info:
            from_dict(TrainerConfig, raw, "cwcl.train")
        assert str(info.value).startswith(f"params: {message}") and "\n" not in str(info.value)
