"""The ``diffusion`` stage end to end on a tiny fake corpus (outputs, determinism, kill -9 resume, one-line
errors), the trainer's after_step hook that drives the EMA, and the quality measures against hand-made cases."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import kill_at_first_checkpoint
from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.diffusion import quality as Q

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c", "d"]
FILES = ("model.safetensors", "config.json", "history.jsonl", "samples.png")


# the stages run in this process set torch's threads and deterministic flag: conftest gives them back
pytestmark = pytest.mark.usefixtures("restore_torch_globals")


def fake_split(n: int, seed: int, split: str) -> ImageSet:
    """16x16 images: class c = a bright block in quadrant c on a noisy dark background."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 60, (n, 16, 16, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 2)
        images[i, 8 * r + 1 : 8 * r + 7, 8 * col + 1 : 8 * col + 7] = rng.integers(150, 255, 3, dtype=np.uint8)
    return ImageSet(images, labels.astype(np.int64), CLASSES, [f"fake-{split}-{i}" for i in range(n)])


PARAMS = {
    "towers": {"image": {"input_size": 32, "batch_size": 32}, "device": "cpu", "threads": 2},
    "diffusion": {
        "n_valid": 8,
        "model": {"unet": {"image_size": 16, "channels": [8, 16], "norm_groups": 4, "attention_head_dim": 8},
                  "sampling_steps": 3, "guidance": 2.0},
        "train": {"epochs": 3, "batch_size": 16, "progress": False, "device": "cpu"},
        "quality": {"per_class": 2, "frechet_n": 8, "grid_per_class": 2, "batch_size": 8, "classifier_epochs": 1,
                    "classifier_batch": 16, "classifier_width": 8},
    },
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diffusion")
    for split, n, seed in (("train", 64, 0), ("valid", 16, 1), ("test", 16, 2)):
        write_split(root / "vision" / "shapes", split, fake_split(n, seed, split))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def stage(work: Path, out: str, params: str = "params.yaml") -> list[str]:
    return ["diffusion", "--params", str(work / params), "--vision", str(work / "vision"), "--out", str(work / out),
            "--metrics", str(work / f"{out}-metrics.json"), "--grids", str(work / f"{out}-grids")]


@pytest.fixture(scope="module")
def reference(work) -> Path:
    assert cli(stage(work, "runs/ref")) == 0
    return work / "runs/ref"


def test_the_stage_writes_its_outputs_and_its_metrics(work, reference):
    for name in FILES:
        assert (reference / name).is_file(), name
    assert not (work / "runs/ref.run").exists() and not (work / "runs/ref.run.partial").exists()
    from safetensors.torch import load_file

    state = load_file(str(reference / "model.safetensors"))
    assert int(state["ema_updates"]) == 3 * (64 // 16)  # one EMA update per optimiser step
    assert any(k.startswith("ema.") for k in state) and any(k.startswith("unet.") for k in state)
    history = [json.loads(line) for line in (reference / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and all("loss" in h["valid"] for h in history)
    config = json.loads((reference / "config.json").read_text())
    assert config["classes"] == CLASSES and config["null_class"] == 4 and config["steps"] == 12
    metrics = json.loads((work / "runs/ref-metrics.json").read_text())
    q = metrics["quality"]
    assert 0.0 <= q["class_consistency"] <= 1.0 and set(q["class_consistency_per_class"]) == set(CLASSES)
    assert q["frechet_distance"] >= 0 and q["frechet_floor"] >= 0 and q["frechet_n"] == 8
    assert metrics["timing"]["steps"] == 12 and metrics["timing"]["steps_per_second"] > 0
    assert sorted(p.name for p in (work / "runs/ref-grids").iterdir()) == [f"{c}.png" for c in CLASSES]


def test_same_params_and_seed_give_the_same_bytes(work, reference):
    assert cli(stage(work, "runs/again")) == 0
    for name in FILES:
        assert (reference / name).read_bytes() == (work / "runs/again" / name).read_bytes(), name


def slow_stage(argv: list[str]) -> None:
    """Subprocess entry: the stage's CLI with argv[0] seconds of sleep per training step (to be killed in time)."""
    from pipeline.diffusion import train

    pause, original = float(argv[0]), train.training_step

    def slow(model, batch):
        time.sleep(pause)
        return original(model, batch)

    train.training_step = slow
    sys.exit(cli(argv[1:]))


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(work, reference, capsys):
    partial = work / "runs/killed.run.partial"
    cmd = stage(work, "runs/killed")
    done = kill_at_first_checkpoint("test_diffusion_stage", 0.2, cmd, partial)
    assert not (work / "runs/killed/model.safetensors").exists()
    assert 1 <= done < 3
    assert cli(cmd) == 0
    assert f"resuming after epoch {done}" in capsys.readouterr().out
    for name in FILES:
        assert (reference / name).read_bytes() == (work / "runs/killed" / name).read_bytes(), name
    assert not partial.exists() and not (work / "runs/killed.run").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["model"]["unet"].update(image_size=15), "params: diffusion.model.unet.image_size: 15: must be a positive multiple of 2"),
    (lambda d: d["model"].update(guidance=-1.0), "params: diffusion.model.guidance: -1.0: must be >= 0"),
    (lambda d: d["train"].update(select_metric="loss"), "params: diffusion.train.select_metric:"),
])
def test_bad_params_are_one_line_errors(work, capsys, edit, message):
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    edit(raw["diffusion"])
    (work / "params-bad.yaml").write_text(yaml.safe_dump(raw))
    assert cli(stage(work, "runs/bad", "params-bad.yaml")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not (work / "runs/bad").exists() and not (work / "runs/bad.run").exists()


# ----------------------------------------------------------------------------- the EMA hook


def test_the_ema_follows_the_weights_after_each_optimiser_step(tmp_path):
    """ema_decay 0: after the trainer's after_step hook the EMA weights ARE the stepped weights (an update inside
    the step function, before the optimiser step, would lag one step behind)."""
    from torch.utils.data import TensorDataset

    from pipeline.diffusion import train as T
    from pipeline.diffusion.params import DiffusionParams

    params = DiffusionParams()
    params.model.unet.image_size, params.model.unet.channels, params.model.unet.norm_groups = 8, [8, 16], 4
    params.model.ema_decay = 0.0
    params.train.epochs, params.train.batch_size, params.train.progress, params.train.device = 1, 4, False, "cpu"
    gen = T.build(params, 2)
    data = TensorDataset(torch.rand(8, 3, 8, 8) * 2 - 1, torch.tensor([0, 1] * 4))
    T.fit(gen, params, data, data, tmp_path / "run", "fp")
    assert int(gen.ema_updates) == 2
    for e, p in zip(gen.ema.parameters(), gen.unet.parameters()):
        assert torch.equal(e, p)


# ----------------------------------------------------------------------------- quality measures


def test_frechet_of_identical_gaussians_is_zero_and_of_shifted_means_the_squared_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    cov = a.T @ a / 50
    mu = rng.normal(size=6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.0])
    assert abs(Q.frechet(mu, cov, mu, cov)) < 1e-9
    assert Q.frechet(mu, cov, mu + shift, cov) == pytest.approx(float(shift @ shift), abs=1e-9)
    x = torch.as_tensor(rng.normal(size=(40, 5)))
    assert abs(Q.frechet_distance(x, x)) < 1e-9
    assert Q.frechet_distance(x, x + 2.0) == pytest.approx(5 * 4.0, abs=1e-8)


def test_frechet_matches_the_closed_form_with_a_matrix_square_root():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) * 2
    c1, c2 = a.T @ a / 30, b.T @ b / 30
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    expected = float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * sqrtm(c1 @ c2).real))
    assert Q.frechet(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)
    # isotropic: (s1 - s2)^2 per dimension
    assert Q.frechet(np.zeros(3), np.eye(3) * 4, np.zeros(3), np.eye(3)) == pytest.approx(3 * (2 - 1) ** 2)


def test_class_consistency_counts_the_samples_named_as_their_conditioning_class():
    predicted = torch.tensor([0, 0, 1, 2, 2, 2])
    conditioned = torch.tensor([0, 0, 1, 1, 2, 2])
    out = Q.class_consistency(predicted, conditioned, 4)
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["per_class"][:3] == [1.0, 0.5, 1.0] and np.isnan(out["per_class"][3])


def test_the_classifier_learns_separable_classes_and_is_deterministic():
    data = fake_split(64, 0, "train")
    from pipeline.diffusion.train import to_unit

    x, y = to_unit(data.images), torch.as_tensor(data.labels)
    kw = dict(epochs=6, batch_size=16, lr=1e-2, width=8, seed=0)
    model = Q.train_classifier(x, y, 4, **kw)
    assert float((Q.predict(model, x) == y).double().mean()) >= 0.9
    again = Q.train_classifier(x, y, 4, **kw)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_sample_per_class_and_the_grid_layout():
    calls = []

    def sample(labels, gen):
        calls.append(labels.tolist())
        return labels.float().view(-1, 1, 1, 1).expand(-1, 3, 2, 2) / 10 + torch.rand(len(labels), 1, 1, 1, generator=gen) * 0

    images, labels = Q.sample_per_class(sample, 3, 2, 4, seed=0)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and calls == [[0, 0, 1, 1], [2, 2]]
    tiles = np.stack([np.full((2, 2, 3), i, dtype=np.uint8) for i in range(6)])
    g = Q.grid(tiles, 3, pad=1)
    assert g.shape == (3 * 3 + 1, 2 * 3 + 1, 3)
    assert g[1, 1, 0] == 0 and g[1, 4, 0] == 1 and g[4, 1, 0] == 2 and g[7, 4, 0] == 5 and g[0, 0, 0] == 128
