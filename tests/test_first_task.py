"""Stage ``first``: the first task trained once per group of strategies that train it alike.

The claim it rests on is checked end to end: a task-0 checkpoint that adopted the shared training is the
same, byte for byte, as one trained by the strategy alone (weights, optimiser, RNG, buffer, S-KD targets,
Fisher) for every kind of strategy, and a shared state made with other params is never adopted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from test_train import TINY, kill_after_epoch

from pipeline.__main__ import main as cli
from pipeline.config import Recipe, load_train
from pipeline.core.atomic import MARKER
from pipeline.continual.first_task import MM_FIELDS, NO_EFFECT_ON_FIRST_TASK, first_task_groups, first_task_recipe

STRATEGIES = ["finetune", "herding", "lwf", "ewc", "joint", "coconut+skd", "coconut-ntpt"]
ROOT = Path(__file__).resolve().parents[1]


def test_every_recipe_field_is_classified():
    """A new recipe field must be placed: it either cannot act on task 0 or it joins the first-task recipe."""
    assert {f.name for f in fields(Recipe)} == NO_EFFECT_ON_FIRST_TASK | {"mm", *MM_FIELDS}


def test_default_strategies_form_two_groups():
    p = load_train(ROOT / "params.yaml")
    groups = first_task_groups(p.recipes, ["finetune", "replay", "coconut", "coconut+skd", "joint", "lwf", "ewc",
                                           "coconut-no-nspt", "coconut-no-mm", "coconut-supcon"])
    names = [members for _, members in groups]
    assert names == [["finetune", "replay", "joint", "lwf", "ewc", "coconut-no-mm"],
                     ["coconut", "coconut+skd", "coconut-no-nspt", "coconut-supcon"]]
    assert groups[1][0] == Recipe(mm=True, lambda_mm=0.3, tau_mm=0.1)


def test_first_task_recipe_keeps_what_acts_on_task_0():
    assert first_task_recipe(Recipe(mm=False, lambda_mm=5.0, replay=True, skd=True)) == Recipe()
    assert first_task_recipe(Recipe(mm=True, lambda_mm=5.0)) != first_task_recipe(Recipe(mm=True, lambda_mm=0.5))
    assert first_task_recipe(Recipe(mm=True, tau_mm=0.2, ewc=True, epochs=7)) == Recipe(mm=True, tau_mm=0.2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("first")
    params = {**TINY, "cil": {**TINY["cil"], "strategies": STRATEGIES}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    other = {**params, "train": {**params["train"], "lr": 0.01}}
    (root / "params-other.yaml").write_text(yaml.safe_dump(other))
    assert cli(["prepare", "--params", str(root / "params.yaml"), "--out", str(root / "data/prepared"), "--no-progress"]) == 0
    return root


def common(workdir: Path, models: str, params: str = "params.yaml") -> list[str]:
    return ["--params", str(workdir / params), "--prepared", str(workdir / "data/prepared"), "--models", str(workdir / models)]


def task0(workdir: Path, models: str, strategy: str, *extra: str) -> Path:
    assert cli(["init", "--strategy", strategy, "--seed", "0", *common(workdir, models)]) == 0
    assert cli(["train", "--strategy", strategy, "--seed", "0", "--task", "0", *common(workdir, models), *extra]) == 0
    return workdir / models / strategy / "s0" / "task0"


def test_adopted_first_task_is_the_same_checkpoint_as_training_it_alone(workdir):
    assert cli(["first", "--seed", "0", *common(workdir, "shared")]) == 0
    first = workdir / "shared" / "first" / "s0"
    assert sorted(p.name for p in first.iterdir()) == sorted(STRATEGIES + ["timing.json", MARKER])
    assert not (workdir / "shared" / "first" / "s0.work").exists()
    timing = json.loads((first / "timing.json").read_text())
    assert set(timing) == set(STRATEGIES) and all(v > 0 for v in timing.values())
    # two trainings: the plain group and the audio-text (mm) group
    assert len({(first / s / "model.safetensors").read_bytes() for s in STRATEGIES}) == 2
    for strategy in STRATEGIES:
        shared, alone = task0(workdir, "shared", strategy), task0(workdir, "alone", strategy)
        files = sorted(p.name for p in alone.iterdir() if p.name not in ("state.json", "eval.json"))
        assert files == sorted(p.name for p in shared.iterdir() if p.name not in ("state.json", "eval.json"))
        for name in files:
            assert (shared / name).read_bytes() == (alone / name).read_bytes(), f"{strategy}: {name} differs"
        a, b = (json.loads((d / "eval.json").read_text()) for d in (shared, alone))
        assert a.pop("shared_first_task") is True and b.pop("shared_first_task") is False
        assert a.pop("train_seconds") < b.pop("train_seconds")
        assert a == b, strategy
        assert json.loads((shared / "state.json").read_text())["history"] == [
            {k: v for k, v in h.items() if k != "seconds"} for h in json.loads((alone / "state.json").read_text())["history"]]


def test_first_task_of_other_params_is_not_adopted(workdir, capsys):
    assert cli(["first", "--seed", "0", *common(workdir, "other", "params-other.yaml")]) == 0
    other = workdir / "other" / "first" / "s0" / "finetune"
    capsys.readouterr()
    mine = task0(workdir, "mine", "finetune", "--first", str(other))
    assert "was trained with other params, data or init weights; training the first task here" in capsys.readouterr().out
    assert json.loads((mine / "eval.json").read_text())["shared_first_task"] is False
    assert (mine / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()
    alone = task0(workdir, "mine-alone", "finetune")
    assert (mine / "model.safetensors").read_bytes() == (alone / "model.safetensors").read_bytes()


def test_first_resumes_after_kill_and_ends_with_the_same_states(workdir):
    """kill -9 during the first group's training; the re-run resumes it, trains the rest, same bytes."""
    params = {**TINY, "cil": {**TINY["cil"], "strategies": ["finetune", "coconut+skd"]},
              "train": {**TINY["train"], "first_task_epochs": 4}}
    (workdir / "params-kill.yaml").write_text(yaml.safe_dump(params))
    assert cli(["first", "--seed", "0", *common(workdir, "kill-a", "params-kill.yaml")]) == 0
    cmd = [sys.executable, "-m", "pipeline", "first", "--seed", "0", *common(workdir, "kill-b", "params-kill.yaml")]
    partial = workdir / "kill-b" / "first" / "s0.work" / "finetune.partial" / "state.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = kill_after_epoch(cmd, partial, 2, env)
    assert 2 <= done < 4
    assert not (workdir / "kill-b" / "first" / "s0" / "timing.json").exists()  # nothing that looks complete
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert f"resuming first@0 [finetune] task 0 after epoch {done}" in res.stdout
    a, b = workdir / "kill-a" / "first" / "s0", workdir / "kill-b" / "first" / "s0"
    for strategy in ("finetune", "coconut+skd"):
        for name in ("model.safetensors", "optimizer.pt", "rng.pt", "state.json"):
            assert (a / strategy / name).read_bytes() == (b / strategy / name).read_bytes(), f"{strategy}/{name}"
    assert not (workdir / "kill-b" / "first" / "s0.work").exists()


def test_a_partial_first_task_is_not_resumed_on_other_data(workdir):
    """kill -9 during first, change the class order (same audio, same init weights), re-run: the partial state
    is dropped and the result equals an uninterrupted run on the new split."""
    base = {**TINY, "cil": {**TINY["cil"], "strategies": ["finetune"]}, "train": {**TINY["train"], "first_task_epochs": 4}}
    for order in ("paper", "sorted"):
        (workdir / f"params-{order}.yaml").write_text(yaml.safe_dump({**base, "split": {**base["split"], "class_order": order}}))

    def prepare(order: str, out: str) -> None:
        assert cli(["prepare", "--params", str(workdir / f"params-{order}.yaml"), "--out", str(workdir / out),
                    "--no-progress"]) == 0

    def first_cmd(order: str, models: str, data: str) -> list[str]:
        return [sys.executable, "-m", "pipeline", "first", "--seed", "0", "--params", str(workdir / f"params-{order}.yaml"),
                "--prepared", str(workdir / data), "--models", str(workdir / models)]

    prepare("sorted", "data/sorted")
    assert cli(first_cmd("sorted", "order-ref", "data/sorted")[3:]) == 0  # uninterrupted, on the new split
    prepare("paper", "data/changing")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    partial = workdir / "order-b" / "first" / "s0.work" / "finetune.partial" / "state.json"
    assert kill_after_epoch(first_cmd("paper", "order-b", "data/changing"), partial, 2, env) >= 2
    prepare("sorted", "data/changing")  # the same folder now holds the other class order
    res = subprocess.run(first_cmd("sorted", "order-b", "data/changing"), capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "resuming" not in res.stdout
    ref, got = workdir / "order-ref" / "first" / "s0" / "finetune", workdir / "order-b" / "first" / "s0" / "finetune"
    for name in ("model.safetensors", "optimizer.pt", "rng.pt"):
        assert (ref / name).read_bytes() == (got / name).read_bytes(), name
    # nor does a task-0 stage adopt it on the old split (the params differ only in split, which train does not read)
    prepare("paper", "data/paper")
    common = ["--params", str(workdir / "params-paper.yaml"), "--prepared", str(workdir / "data/paper"),
              "--models", str(workdir / "order-c")]
    assert cli(["init", "--strategy", "finetune", "--seed", "0", *common]) == 0
    res = subprocess.run([sys.executable, "-m", "pipeline", "train", "--strategy", "finetune", "--seed", "0", "--task", "0",
                          *common, "--first", str(got)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "was trained with other params, data or init weights" in res.stdout and "adopting" not in res.stdout
