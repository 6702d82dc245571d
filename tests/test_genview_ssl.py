"""The GenView SSL stage (``genview@<variant>-<seed>``): SimCLR's batched augmentations and the same geometry on
the auxiliary maps, the SSL network, each variant's objective, the frozen-encoder probes (linear, k-NN), and the
stage end to end on a tiny corpus with a fake views file (every variant, determinism, labels never read by SSL,
kill -9 resume, one-line errors)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from conftest import kill_at_first_checkpoint
from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.genview import augment as A
from pipeline.genview.params import AugmentConfig, SSLConfig, VARIANTS

CLASSES = ["a", "b", "c", "d"]
OUT_FILES = ("model.safetensors", "history.jsonl", "result.json")


# the stages run in this process set torch's threads and deterministic flag: conftest gives them back
pytestmark = pytest.mark.usefixtures("restore_torch_globals")


# ----------------------------------------------------------------------------- augmentations


def test_the_identity_theta_returns_the_input_images_and_maps():
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    theta = A.identity_theta(3)
    assert torch.allclose(A.warp(x, theta), x, atol=1e-6)
    tokens, fg = torch.randn(3, 5, 4, 4), torch.rand(3, 4, 4)
    t, f = A.warp_maps(tokens, fg, theta)
    assert torch.allclose(t, tokens.flatten(2).transpose(1, 2), atol=1e-6)
    assert torch.allclose(f, fg.flatten(1), atol=1e-6)


def test_a_flip_flips_the_map_and_the_image():
    theta = A.identity_theta(2)
    theta[:, 0, 0] = -1.0
    x, fg = torch.rand(2, 3, 6, 6), torch.rand(2, 4, 4)
    assert torch.allclose(A.warp(x, theta), x.flip(-1), atol=1e-6)
    _, f = A.warp_maps(torch.zeros(2, 1, 4, 4), fg, theta)
    assert torch.allclose(f.view(2, 4, 4), fg.flip(-1), atol=1e-6)


def test_a_half_size_crop_at_a_corner_is_that_quadrant_exactly():
    """theta scale 1/2, shift -1/2: the output's pixel centres land on the top-left quadrant's pixel centres."""
    theta = torch.tensor([[[0.5, 0.0, -0.5], [0.0, 0.5, -0.5]]])
    m = torch.arange(64.0).view(1, 1, 8, 8)
    assert torch.allclose(A.warp(m, theta, (4, 4)), m[..., :4, :4], atol=1e-5)
    tokens = torch.randn(1, 3, 8, 8)
    t, _ = A.warp_maps(tokens, torch.rand(1, 8, 8), theta.expand(1, 2, 3))
    # at its own resolution the crop of an 8x8 map is resampled to 8x8: its corners are the quadrant's
    assert t.shape == (1, 64, 3)


def test_the_crop_of_a_coarse_map_matches_the_crop_of_the_upsampled_map():
    """A token map warped at its own 8x8 resolution, then upsampled, is close to the map upsampled to 64x64 and
    warped there with the same theta (what the view's pixels see)."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(16, 1, 4, 4, generator=gen)
    coarse = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)  # smooth 8x8 maps
    theta = A.draw_theta(16, (0.35, 1.0), 0.5, generator=gen)
    fine = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    low = F.interpolate(A.warp(coarse, theta), size=(64, 64), mode="bilinear", align_corners=False)
    high = A.warp(fine, theta)
    assert (low - high).abs().mean() < 0.02
    assert (low - high).abs().max() < 0.15
    # and a wrong theta (another sample's) is far off: the test has power
    assert (A.warp(fine, theta.roll(1, 0)) - high).abs().mean() > 0.05


def test_crops_stay_inside_the_image_with_their_area_and_ratio_and_flip_at_the_rate():
    gen = torch.Generator().manual_seed(1)
    theta = A.draw_theta(4000, (0.35, 1.0), 0.5, generator=gen)
    w, h, tx, ty = theta[:, 0, 0].abs(), theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert bool(((tx.abs() + w) <= 1 + 1e-6).all() and ((ty.abs() + h) <= 1 + 1e-6).all())
    area, ratio = w * h, w / h
    assert bool((area >= 0.35 - 1e-6).all() and (area <= 1 + 1e-6).all())
    assert bool((ratio >= 0.75 - 1e-5).all() and (ratio <= 4 / 3 + 1e-5).all())
    assert abs(float((theta[:, 0, 0] < 0).float().mean()) - 0.5) < 0.05
    assert torch.equal(theta[:, 0, 1], torch.zeros(4000)) and torch.equal(theta[:, 1, 0], torch.zeros(4000))


def test_every_draw_comes_from_the_generator_given_or_the_global_one():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    cfg = AugmentConfig()
    a, ta = A.augment(x, cfg, (16, 16), torch.Generator().manual_seed(5))
    b, tb = A.augment(x, cfg, (16, 16), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(ta, tb)
    torch.manual_seed(5)
    c, tc = A.augment(x, cfg, (16, 16))
    torch.manual_seed(5)
    d, td = A.augment(x, cfg, (16, 16))
    assert torch.equal(c, d) and torch.equal(tc, td) and not torch.equal(c, A.augment(x, cfg, (16, 16))[0])
    assert a.min() >= -1 and a.max() <= 1 and a.shape == x.shape


def test_colour_jitter_and_greyscale():
    x = torch.rand(6, 3, 5, 5) * 2 - 1
    gen = torch.Generator().manual_seed(2)
    assert torch.allclose(A.colour(x, 0.4, 0.0, 0.0, gen), x)  # neither applied: unchanged
    assert torch.allclose(A.colour(x, 0.0, 1.0, 0.0, gen), x, atol=1e-5)  # factors of exactly 1: unchanged
    grey = A.colour(x, 0.4, 0.0, 1.0, gen)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    jittered = A.colour(x, 0.4, 1.0, 0.0, gen)
    assert (jittered - x).abs().mean() > 0.01 and jittered.min() >= -1 and jittered.max() <= 1


def test_a_generated_view_of_another_size_is_cropped_to_the_real_size():
    x16 = torch.rand(4, 3, 16, 16) * 2 - 1
    view, theta = A.augment(x16, AugmentConfig(), (32, 32), torch.Generator().manual_seed(0))
    assert view.shape == (4, 3, 32, 32) and theta.shape == (4, 2, 3)


# ----------------------------------------------------------------------------- model and objectives


def test_the_network_returns_pooled_features_and_projections():
    from pipeline.genview.model import SSLNet

    net = SSLNet(width=4, proj_dim=8)
    h, z = net(torch.rand(5, 3, 32, 32) * 2 - 1)
    assert h.shape == (5, 32) and z.shape == (5, 8) and net.dim == 32
    assert torch.equal(net.features(torch.zeros(2, 3, 32, 32)), net(torch.zeros(2, 3, 32, 32))[0])
    assert "steps" in net.state_dict()


@pytest.mark.parametrize("encoder", ["pooled", "strided"])
def test_both_encoders_give_features_of_8_x_width(encoder):
    from pipeline.genview.model import SSLNet

    net = SSLNet(width=3, proj_dim=8, encoder=encoder)
    for size in (32, 16):
        h, z = net(torch.rand(4, 3, size, size) * 2 - 1)
        assert h.shape == (4, 24) and z.shape == (4, 8) and net.dim == 24
    assert "encoder.convs.0.weight" in net.state_dict() and "encoder.head.0.weight" in net.state_dict()
    strides = {m.stride for m in net.modules() if isinstance(m, torch.nn.Conv2d)}
    assert strides == ({(1, 1)} if encoder == "pooled" else {(2, 2)})
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == (encoder == "pooled")


def test_the_default_encoder_is_pooled_and_an_unknown_one_is_a_one_line_params_error():
    from pipeline.core.params import from_dict
    from pipeline.errors import ParamsError
    from pipeline.genview.params import GenViewParams

    assert SSLConfig().encoder == "pooled"
    with pytest.raises(ParamsError) as info:
        from_dict(GenViewParams, {"ssl": {"encoder": "resnet"}}, "genview")
    message = str(info.value)
    assert "genview.ssl.encoder" in message and "'resnet'" in message and "\n" not in message


def fake_train_images(n=16, s=16, k=4, grid=4, seed=0):
    from pipeline.genview.objective import TrainImages

    g = torch.Generator().manual_seed(seed)
    return TrainImages(real=torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g),
                       fixed=torch.randint(0, 256, (n, s, s, 3), dtype=torch.uint8, generator=g),
                       adaptive=torch.randint(0, 256, (n, s, s, 3), dtype=torch.uint8, generator=g),
                       tokens_real=torch.randn(n, k, grid, grid, generator=g),
                       tokens_adaptive=torch.randn(n, k, grid, grid, generator=g),
                       fg_real=torch.rand(n, grid, grid, generator=g), fg_adaptive=torch.rand(n, grid, grid, generator=g))


def test_the_training_dataset_holds_row_positions_only():
    data = fake_train_images()
    ds = data.dataset()
    assert len(ds.tensors) == 1 and torch.equal(ds.tensors[0], torch.arange(16))
    assert not any(hasattr(data, name) for name in ("labels", "bias"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_pairs_its_views_and_its_loss(variant):
    from pipeline.genview.model import SSLNet
    from pipeline.genview.objective import Objective, to_unit
    from pipeline.losses.genview import GenViewLoss, quality_weights
    from pipeline.losses.ntxent import NTXentLoss

    data, cfg = fake_train_images(), SSLConfig(temperature=0.3)
    objective = Objective(variant, cfg, data)
    net = SSLNet(4, 8)
    pos = torch.tensor([3, 0, 7, 9])
    torch.manual_seed(11)
    terms = objective(net, (pos,))
    # the same draws by hand
    torch.manual_seed(11)
    second = {"simclr": data.real, "fixed": data.fixed, "adaptive": data.adaptive, "genview": data.adaptive}[variant]
    x1, t1 = A.augment(to_unit(data.real[pos]), cfg.augment, (32, 32))
    x2, t2 = A.augment(to_unit(second[pos]), cfg.augment, (32, 32))
    z1, z2 = net(torch.cat([x1, x2]))[1].chunk(2)
    if variant == "genview":
        ta, fa = A.warp_maps(data.tokens_real[pos], data.fg_real[pos], t1)
        tb, fb = A.warp_maps(data.tokens_adaptive[pos], data.fg_adaptive[pos], t2)
        expected = GenViewLoss(0.3, cfg.gamma)(z1, z2, ta, tb, fa, fb)
        w = quality_weights(ta, tb, fa, fb, cfg.gamma)
        assert float(terms["w_std"]) == pytest.approx(float(w.std()), abs=1e-6) and float(terms["w_std"]) > 0
        assert float(terms["w_min"]) <= 1.0 <= float(terms["w_max"])
    else:
        expected = NTXentLoss(0.3)(z1, z2)
        assert set(terms) == {"loss"}
    assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()), abs=1e-5)


# ----------------------------------------------------------------------------- probes


def separable(n, seed, d=8, classes=4, noise=0.5):
    """Features around 4 class centres (the same centres for every seed; the samples differ by seed)."""
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(1234)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + noise * torch.randn(n, d, generator=g), y


def random_labels(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_the_linear_probe_separates_separable_features_and_is_at_chance_on_random_labels():
    from pipeline.genview.probe import linear_probe

    r = linear_probe(separable(400, 1), separable(200, 2), separable(200, 3), 4, [1e-2, 3e-3], [0.0, 1e-4],
                     epochs=20, batch_size=64)
    assert r["test"] > 0.95 and r["valid"] > 0.95
    args = (random_labels(400, 1), random_labels(400, 2), random_labels(2000, 3), 4, [1e-2], [0.0])
    r = linear_probe(*args, epochs=20, batch_size=64)
    assert abs(r["test"] - 0.25) < 0.05
    assert linear_probe(*args, epochs=20, batch_size=64) == r  # deterministic


def test_the_probe_is_selected_on_valid_only():
    from pipeline.genview.probe import linear_probe

    x, y = separable(300, 4, noise=3.0)
    xv, yv = separable(100, 5, noise=3.0)
    grid = dict(n_classes=4, lrs=[1e-1, 1e-4], weight_decays=[0.0, 0.5], epochs=3, batch_size=64)
    a = linear_probe((x, y), (xv, yv), (xv, yv), **grid)
    # other test labels: the same choice and valid accuracy; only test changes
    b = linear_probe((x, y), (xv, yv), (xv, (yv + 1) % 4), **grid)
    assert (a["lr"], a["weight_decay"], a["valid"], a["grid"]) == (b["lr"], b["weight_decay"], b["valid"], b["grid"])
    assert a["test"] != b["test"]
    # the kept config is the grid's best valid accuracy (ties: the earlier one)
    best = max(a["grid"], key=lambda r: r["valid"])
    assert (a["lr"], a["weight_decay"], a["valid"]) == (best["lr"], best["weight_decay"], best["valid"])
    # other valid labels change what is kept (selection reads valid)
    worst = min(a["grid"], key=lambda r: r["valid"])
    assert worst["valid"] < best["valid"]
    c = linear_probe((x, y), (xv, torch.zeros_like(yv)), (xv, yv), **grid)
    assert [r["valid"] for r in c["grid"]] != [r["valid"] for r in a["grid"]]


def test_knn_with_k_1_on_its_own_bank_is_exact_and_votes_are_weighted():
    from pipeline.genview.probe import knn_accuracy, knn_predict

    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(1))
    assert knn_accuracy(x, y, x, y, 5, k=1, temperature=0.07) == 1.0
    # two far neighbours of class 1 against one very close of class 0: a low temperature lets the close one win
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.01]])
    assert int(knn_predict(bank, labels, q, 2, k=3, temperature=0.05)[0]) == 0
    assert int(knn_predict(bank, labels, q, 2, k=3, temperature=100.0)[0]) == 1


# ----------------------------------------------------------------------------- the stage end to end


def fake_split(n: int, seed: int, split: str) -> ImageSet:
    """32x32 images: class c = a bright block in quadrant c, colour (bias) = one of 4 tints."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    bias = rng.integers(0, 4, n)
    tints = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255], [230, 230, 40]], dtype=np.uint8)
    images = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 2)
        images[i, 16 * r + 2 : 16 * r + 14, 16 * col + 2 : 16 * col + 14] = tints[bias[i]]
    return ImageSet(images, labels.astype(np.int64), CLASSES, [f"fake-{split}-{i}" for i in range(n)],
                    bias=bias.astype(np.int64))


def write_fake_views(folder: Path, n: int, size: int = 16, k: int = 4, grid: int = 4, seed: int = 0) -> Path:
    """A views file with genview-views' keys and shapes (random contents)."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"index": torch.arange(n, dtype=torch.int64),
               "fixed": torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
               "adaptive": torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
               "fg_real": torch.rand(n, grid, grid, generator=g), "fg_adaptive": torch.rand(n, grid, grid, generator=g),
               "tokens_real": torch.randn(n, k, grid, grid, generator=g).half(),
               "tokens_adaptive": torch.randn(n, k, grid, grid, generator=g).half(),
               "ratio": torch.rand(n, generator=g), "strength": torch.rand(n, generator=g)},
              str(folder / "views.safetensors"))
    return folder


PARAMS = {
    "genview": {
        "data": {"source": "shapes", "n_train": 48},
        "ssl": {"width": 4, "proj_dim": 8,
                "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32, "progress": False, "device": "cpu"}},
        "probe": {"epochs": 3, "lrs": [1e-2], "weight_decays": [0.0, 1e-4], "batch_size": 32, "knn_k": 3},
    },
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genview")
    for split, n, seed in (("train", 64, 0), ("valid", 32, 1), ("test", 32, 2)):
        write_split(root / "vision" / "shapes", split, fake_split(n, seed, split))
    write_fake_views(root / "views", 48)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def stage(work: Path, variant: str, out: str, params: str = "params.yaml", vision: str = "vision") -> list[str]:
    return ["genview", "--variant", variant, "--seed", "0", "--params", str(work / params), "--vision",
            str(work / vision), "--views", str(work / "views"), "--out", str(work / out),
            "--timing", str(work / f"{out}-timing.json")]


@pytest.fixture(scope="module")
def reference(work) -> dict[str, Path]:
    runs = {}
    for variant in VARIANTS:
        assert cli(stage(work, variant, f"runs/{variant}")) == 0
        runs[variant] = work / "runs" / variant
    return runs


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_writes_its_outputs(work, reference, variant):
    from safetensors.torch import load_file

    out = reference[variant]
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUT_FILES, ".pipeline-output"])
    assert not (work / "runs" / f"{variant}.run").exists() and not (work / "runs" / f"{variant}.tmp").exists()
    state = load_file(str(out / "model.safetensors"))
    assert int(state["steps"]) == 2 * (48 // 16)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all("seconds" not in h for h in history)
    assert all(set(h["valid"]) == {"loss", "steps"} for h in history)
    assert ("w_std" in history[0]["train"]) == (variant == "genview")
    doc = json.loads((out / "result.json").read_text())
    assert doc["variant"] == variant and doc["seed"] == 0 and doc["steps"] == 6 and doc["epochs"] == 2
    assert doc["n"] == {"ssl_train": 48, "probe_train": 64, "valid": 32, "test": 32}
    for attr in ("shape", "colour"):
        p = doc["probe"][attr]
        assert set(p) == {"valid", "test", "lr", "weight_decay", "grid"} and len(p["grid"]) == 2
        assert 0 <= p["valid"] <= 1 and 0 <= p["test"] <= 1 and 0 <= doc["knn"][attr] <= 1
    timing = json.loads((work / "runs" / f"{variant}-timing.json").read_text())
    assert {"load", "train", "features", "train_epochs"} <= set(timing)


def test_variants_of_a_seed_start_from_the_same_weights_and_differ_after_training(reference):
    from safetensors.torch import load_file

    from pipeline.genview.params import GenViewParams
    from pipeline.core.params import from_dict
    from pipeline.genview.run import build

    params = from_dict(GenViewParams, PARAMS["genview"], "genview")
    a, b = build(params, 0).state_dict(), build(params, 0).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    models = {v: load_file(str(reference[v] / "model.safetensors")) for v in VARIANTS}
    key = "encoder.convs.0.weight"
    assert not torch.equal(models["simclr"][key], models["fixed"][key])
    assert not torch.equal(models["adaptive"][key], models["genview"][key])


def test_same_params_and_seed_give_the_same_bytes(work, reference):
    for variant in ("simclr", "genview"):
        assert cli(stage(work, variant, f"runs/again-{variant}")) == 0
        for name in OUT_FILES:
            assert (reference[variant] / name).read_bytes() == (work / "runs" / f"again-{variant}" / name).read_bytes()


def test_ssl_never_reads_labels_or_bias(work, reference):
    """The corpus with its training labels and bias shuffled trains the very same encoder (the probes differ)."""
    train = fake_split(64, 0, "train")
    rng = np.random.default_rng(9)
    shuffled = ImageSet(train.images, rng.permutation(train.labels), CLASSES, train.ids, bias=rng.permutation(train.bias))
    for split, n, seed in (("valid", 32, 1), ("test", 32, 2)):
        write_split(work / "vision-shuffled" / "shapes", split, fake_split(n, seed, split))
    write_split(work / "vision-shuffled" / "shapes", "train", shuffled)
    assert cli(stage(work, "genview", "runs/shuffled", vision="vision-shuffled")) == 0
    got = work / "runs" / "shuffled"
    assert (got / "model.safetensors").read_bytes() == (reference["genview"] / "model.safetensors").read_bytes()
    assert (got / "history.jsonl").read_bytes() == (reference["genview"] / "history.jsonl").read_bytes()


def slow_stage(argv: list[str]) -> None:
    """Subprocess entry: the stage's CLI with argv[0] seconds of sleep per training step (to be killed in time)."""
    from pipeline.genview import objective

    pause, original = float(argv[0]), objective.Objective.__call__

    def slow(self, model, batch):
        time.sleep(pause)
        return original(self, model, batch)

    objective.Objective.__call__ = slow
    sys.exit(cli(argv[1:]))


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(work, reference, capsys):
    partial = work / "runs/killed.run.partial"
    cmd = stage(work, "genview", "runs/killed")
    done = kill_at_first_checkpoint("test_genview_ssl", 0.3, cmd, partial)
    assert done == 1 and not (work / "runs/killed/model.safetensors").exists()
    assert cli(cmd) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    for name in OUT_FILES:
        assert (reference["genview"] / name).read_bytes() == (work / "runs/killed" / name).read_bytes(), name
    assert not partial.exists() and not (work / "runs/killed.run").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["ssl"].update(variants=["foo"]), "params: genview.ssl.variants: ['foo']: a non-empty list of"),
    (lambda d: d["ssl"].update(encoder="resnet"), "params: genview.ssl.encoder: 'resnet': one of pooled, strided"),
    (lambda d: d["ssl"].update(augment={"crop_scale": [0, 1]}), "params: genview.ssl.augment.crop_scale: [0.0, 1.0]: [min, max] area shares"),
    (lambda d: d["ssl"]["train"].update(select_metric="loss"), "params: genview.ssl.train.select_metric:"),
    (lambda d: d["probe"].update(lrs=[]), "params: genview.probe.lrs:"),
    (lambda d: d["data"].update(n_train=40), "views.safetensors: views of 48 training images, but genview.data.n_train"),
])
def test_bad_params_are_one_line_errors(work, capsys, edit, message):
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    edit(raw["genview"])
    (work / "params-bad.yaml").write_text(yaml.safe_dump(raw))
    assert cli(stage(work, "genview", "runs/bad", "params-bad.yaml")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (work / "runs/bad").exists() and not (work / "runs/bad.run").exists()


def test_a_bad_variant_or_a_missing_views_file_is_one_line(work, capsys, tmp_path):
    assert cli(stage(work, "foo", "runs/bad")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "genview.ssl.variants" in err[0] and "'foo'" in err[0], err
    cmd = stage(work, "simclr", "runs/bad")
    cmd[cmd.index("--views") + 1] = str(tmp_path / "nothing")
    assert cli(cmd) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "views.safetensors: missing; run the genview-views stage" in err[0], err
