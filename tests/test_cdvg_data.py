"""CDvG's data side: the biased sets (rho per class, unbiased test, held-out oracle split, Colored MNIST from IDX
files), the oracles (their own accuracy on clean data), the translation helpers, and the generator and views
stages (no bias label read, same bytes again, one-line errors)."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.cdvg import translate as TR
from pipeline.cdvg.data import ORACLE, build_sets, measured_rho, read_training
from pipeline.cdvg.oracles import greyscale, judge, train_oracle
from pipeline.cdvg.params import CdvgData, OracleConfig, rho_tag
from pipeline.data.vision.bias import dominant
from pipeline.diffusion.train import to_unit

pytestmark = pytest.mark.usefixtures("restore_torch_globals")
ROOT = Path(__file__).resolve().parents[1]


def aligned_per_class(split) -> dict[int, tuple[int, int]]:
    a = np.asarray(split.aligned, dtype=bool)
    return {int(k): (int(a[split.labels == k].sum()), int((split.labels == k).sum())) for k in np.unique(split.labels)}


@pytest.fixture(scope="module")
def digits():
    return build_sets(CdvgData(rhos=[0.95, 0.99]))


def test_each_class_has_round_rho_aligned_images_and_test_is_unbiased(digits):
    sets, oracle = digits
    for rho in (0.95, 0.99):
        s = sets[rho_tag(rho)]
        for k, (hits, n) in aligned_per_class(s["train"]).items():
            assert hits == round(rho * n), (rho, k)
        assert abs(measured_rho(s["train"]) - rho) < 0.01
        # aligned means: the colour is the class's dominant colour; conflicting: any other
        assert np.array_equal(np.asarray(s["train"].aligned), s["train"].bias == dominant(s["train"].labels, 10))
        assert measured_rho(s["valid"]) < 0.25 and measured_rho(s["test"]) < 0.25  # about 1/10 by chance
        assert len(s["test_conflicting"]) + len(s["test_aligned"]) == len(s["test"])
        assert not any(s["test_conflicting"].aligned) and all(s["test_aligned"].aligned)
    a, b = sets["rho0.95"], sets["rho0.99"]
    assert np.array_equal(a["test"].images, b["test"].images)  # one test set for the whole rho sweep
    src = lambda d: {x["source_index"] for x in d.attributes}  # noqa: E731
    assert src(a["train"]) == src(b["train"])  # the same digits, only their colours differ
    parts = [src(a[s]) for s in ("train", "valid", "test")] + [src(oracle)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 1797  # disjoint, and all of sklearn's digits
    assert measured_rho(oracle) < 0.25


def test_valid_biased_takes_the_training_rho():
    sets, _ = build_sets(CdvgData(rhos=[0.95], valid="biased"))
    for k, (hits, n) in aligned_per_class(sets["rho0.95"]["valid"]).items():
        assert hits == round(0.95 * n)


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_real_mnist_by_path_becomes_colored_mnist(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train, test = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8), rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    ytrain, ytest = (np.arange(400) % 10).astype(np.uint8), (np.arange(50) % 10).astype(np.uint8)
    for name, arr in (("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", ytrain),
                      ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", ytest)):
        (raw / name).write_bytes(idx(arr))
    sets, oracle = build_sets(CdvgData(source="mnist", root=str(tmp_path), rhos=[0.9]))
    s = sets["rho0.9"]
    assert len(s["test"]) == 50 and len(s["train"]) + len(s["valid"]) + len(oracle) == 400
    for k, (hits, n) in aligned_per_class(s["train"]).items():
        assert hits == round(0.9 * n)
    # pixel = rint(ink x the image's RGB) on black: MNIST's own grey levels, coloured
    first = s["test"]
    rgb = np.array(first.attributes[0]["rgb"], dtype=np.float32)
    want = np.rint(test[0][..., None].astype(np.float32) / 255.0 * rgb).astype(np.uint8)
    assert np.array_equal(first.images[0], want)


def test_shapes_source_is_biased_by_colour():
    sets, oracle = build_sets(CdvgData(source="shapes", rhos=[0.9], n_train=160, n_valid=40, n_test=40, n_oracle=40,
                                       image_size=32))
    s = sets["rho0.9"]
    assert len(s["train"]) == 160 and len(oracle) == 40 and s["train"].images.shape[1:] == (32, 32, 3)
    assert abs(measured_rho(s["train"]) - 0.9) < 0.03 and measured_rho(s["test"]) < 0.4


def test_greyscale_removes_the_colour_and_keeps_the_stroke():
    ink = torch.zeros(1, 1, 8, 8)
    ink[..., 2:6, 3] = 1.0
    red, blue = ink * torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1), ink * torch.tensor([0.2, 0.2, 0.9]).view(1, 3, 1, 1)
    a, b = greyscale(red * 2 - 1), greyscale(blue * 2 - 1)
    assert torch.allclose(a, b, atol=1e-6) and torch.equal(a[0, 0] > 0, ink[0, 0] > 0)


def test_the_oracles_are_accurate_on_clean_unbiased_test_images(digits):
    sets, oracle = digits
    test = sets["rho0.99"]["test"]
    cfg = OracleConfig()  # the defaults the stage uses
    x_o, x_t = to_unit(oracle.images), to_unit(test.images)
    content = train_oracle("content", x_o, torch.as_tensor(oracle.labels), 10, cfg)
    bias = train_oracle("bias", x_o, torch.as_tensor(oracle.bias), 10, cfg)
    content_acc = float((judge(content, "content", x_t) == torch.as_tensor(test.labels)).double().mean())
    bias_acc = float((judge(bias, "bias", x_t) == torch.as_tensor(test.bias)).double().mean())
    assert content_acc > 0.9 and bias_acc > 0.98, (content_acc, bias_acc)
    # the content oracle reads the digit, not the colour: recolouring every test image changes little
    swapped = x_t.flip(1)  # RGB -> BGR: other colours, same strokes
    again = float((judge(content, "content", swapped) == torch.as_tensor(test.labels)).double().mean())
    assert abs(again - content_acc) < 0.05


def test_targets_are_other_classes_uniformly_and_seeded():
    y = torch.arange(10).repeat(500)
    t = TR.targets(y, 10, seed=3)
    assert not bool((t == y).any()) and torch.equal(t, TR.targets(y, 10, seed=3))
    counts = torch.bincount((t - y) % 10, minlength=10)  # the shift y' - y: 1..9, uniform
    assert counts[0] == 0 and counts[1:].min() > 0.8 * 5000 / 9


class Fixed(torch.nn.Module):
    """A stub oracle naming fixed answers, in order of the images it is given."""

    def __init__(self, answers):
        super().__init__()
        self.answers = torch.as_tensor(answers)

    def forward(self, x):
        return torch.nn.functional.one_hot(self.answers[: len(x)], 10).float()


def test_rates_count_what_the_oracles_say():
    y, target = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8])
    dom = torch.arange(10)
    content = Fixed([0, 1, 7, 9])  # kept for rows 0, 1; moved to the target for row 2
    colour = Fixed([5, 1, 7, 3])  # the colour oracle names the same for the original (the stub ignores pixels)
    rates = TR.rates({"content": content, "bias": colour}, torch.zeros(4, 3, 4, 4), torch.zeros(4, 3, 4, 4), y,
                     target, dom)
    assert rates["content_kept"] == 0.5 and rates["content_to_target"] == 0.25
    assert rates["bias_to_target"] == 0.5 and rates["both"] == 0.25 and rates["bias_kept"] == 1.0


# ----------------------------------------------------------------------------- the stages

# rendered shapes at 16 px keep the stages' processes short (the digits' 990 training images are fixed)
TINY = {"data": {"source": "shapes", "rhos": [0.99], "image_size": 16, "n_train": 80, "n_valid": 16, "n_test": 16,
                 "n_oracle": 40},
        "oracle": {"epochs": 1, "width": 8},
        "generator": {"model": {"unet": {"image_size": 16, "channels": [8, 16], "norm_groups": 4,
                                         "attention_head_dim": 4},
                                "sampling_steps": 2},
                      "train": {"epochs": 1, "batch_size": 32, "threads": 1, "progress": False}, "n_valid": 16},
        "translate": {"steps": 2, "compare_n": 8, "batch_size": 512,
                      "compare": [{"method": "sdedit", "strength": 0.5, "guidance": 3.0}]}}


def cli(work: Path, *args: str, capsys=None) -> tuple[int, str]:
    """``python -m pipeline <stage> --params params.yaml <options>`` run in this process from ``work`` (no
    interpreter start-up per stage): (exit code, what it wrote to stderr)."""
    import contextlib

    from pipeline.__main__ import main

    with contextlib.chdir(work):
        code = main([args[0], "--params", "params.yaml", *args[1:]])
    return code, capsys.readouterr().err if capsys is not None else ""


def write_params(work: Path, cdvg: dict) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump({"cdvg": cdvg}))


@pytest.mark.parametrize("data, key", [({"rhos": [1.5]}, "cdvg.data.rhos"), ({"rhos": [0.0]}, "cdvg.data.rhos"),
                                       ({"source": "cifar"}, "cdvg.data.source"),
                                       ({"source": "mnist"}, "cdvg.data.root")])
def test_bad_data_params_are_one_line_errors(tmp_path, capsys, data, key):
    write_params(tmp_path, {"data": data})
    code, err = cli(tmp_path, "cdvg-data", "--out", "sets", "--no-progress", capsys=capsys)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and key in err, err
    assert not (tmp_path / "sets").exists()


def test_generator_and_views_read_no_bias_label_and_repeat_to_the_byte(tmp_path, capsys):
    work = tmp_path / "w"
    write_params(work, TINY)
    for args in (("cdvg-data", "--out", "sets", "--no-progress"), ("cdvg-oracles", "--sets", "sets", "--out", "oracles"),
                 ("cdvg-generator", "--rho", "0.99", "--sets", "sets", "--out", "gen")):
        code, err = cli(work, *args, capsys=capsys)
        assert code == 0, err[-2000:]
    config = json.loads((work / "gen/config.json").read_text())
    assert config["keys_read"] == ["train.images", "train.labels", "valid.images", "valid.labels"]
    assert read_training(work / "sets/rho0.99").keys_read == tuple(config["keys_read"])
    # replace the training split's bias labels: the generator is the same to the byte (it never read them)
    from safetensors.torch import load_file, save_file

    path = work / "sets/rho0.99/train.safetensors"
    tensors = load_file(str(path))
    tensors["bias"] = torch.zeros_like(tensors["bias"])
    save_file(tensors, str(path))
    code, err = cli(work, "cdvg-generator", "--rho", "0.99", "--sets", "sets", "--out", "gen2", capsys=capsys)
    assert code == 0, err[-2000:]
    assert (work / "gen/model.safetensors").read_bytes() == (work / "gen2/model.safetensors").read_bytes()
    outs = []
    for name in ("v1", "v2"):
        code, err = cli(work, "cdvg-views", "--rho", "0.99", "--sets", "sets", "--generator", "gen", "--oracles",
                        "oracles", "--out", name, "--no-progress", capsys=capsys)
        assert code == 0, err[-2000:]
        outs.append({f: (work / name / f).read_bytes() for f in ("views.safetensors", "translation.json", "pairs.png")})
    assert outs[0] == outs[1]
    doc = json.loads(outs[0]["translation.json"])
    n = len(read_training(work / "sets/rho0.99").train_labels)
    assert doc["n"] == n and all(0.0 <= v <= 1.0 for v in doc["rates"].values())
    assert [c["recipe"]["name"] for c in doc["compare"]] == ["sdedit s0.5 w3"] and doc["compare"][0]["n"] == 8
    views = load_file(str(work / "v1/views.safetensors"))
    assert views["views"].dtype == torch.uint8 and views["views"].shape == (n, 16, 16, 3)
    assert not bool((views["target"] == read_training(work / "sets/rho0.99").train_labels).any())
    # a rho that is not in the params, a missing generator: one line each
    code, err = cli(work, "cdvg-views", "--rho", "0.95", "--sets", "sets", "--generator", "gen", "--out", "v3",
                    capsys=capsys)
    assert code == 2 and "cdvg.data.rhos" in err and "Traceback" not in err
    code, err = cli(work, "cdvg-views", "--rho", "0.99", "--sets", "sets", "--generator", "nowhere", "--out", "v3",
                    capsys=capsys)
    assert code == 2 and "cdvg-generator" in err and len(err.strip().splitlines()) == 1
