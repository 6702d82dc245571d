"""The ``genview-views`` stage on a tiny corpus and a tiny untrained generator (saved as the diffusion stage saves
one): the chunked foreground PCA against foreground_ratio, the noise bins, strength 0 = the input bytes, the
output format, same bytes twice, a resized corpus, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.genview.views import ForegroundPCA, bin_index, image_noise
from pipeline.losses.genview import foreground_ratio, noise_bin

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 20
PARAMS = {
    "towers": {"image": {"batch_size": 8}, "device": "cpu", "threads": 2},
    "genview": {"data": {"source": "shapes", "n_train": N_TRAIN},
                "views": {"steps": 4, "fixed_strength": 0.5, "levels": [0, 250, 500, 750, 1000], "tower_size": 64,
                          "components": 4, "batch_size": 8}},
}


# the stages run in this process set torch's threads and deterministic flag: conftest gives them back
pytestmark = pytest.mark.usefixtures("restore_torch_globals")


def tiny_split(n: int, size: int, seed: int, split: str) -> ImageSet:
    """Coloured squares of varied size on a noisy dark background, with their exact masks."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 50, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        side = int(rng.integers(size // 4, size))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        images[i, top : top + side, left : left + side] = rng.integers(120, 256, 3, dtype=np.uint8)
        masks[i, top : top + side, left : left + side] = 1
    labels = (np.arange(n) % 2).astype(np.int64)
    return ImageSet(images, labels, ["a", "b"], [f"tiny-{split}-{i}" for i in range(n)], masks=masks)


def save_generator(folder: Path, source: str = "shapes") -> None:
    """A tiny untrained generator, written as pipeline/stages/diffusion.py's write_output writes one."""
    from safetensors.torch import save_file

    from pipeline.diffusion.config import DiffusionConfig, UNetConfig
    from pipeline.diffusion.generator import Generator

    cfg = DiffusionConfig(unet=UNetConfig(image_size=16, channels=[8, 16], norm_groups=4, attention_head_dim=4),
                          sampling_steps=4)
    gen = Generator(cfg, 2, seed=0)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(folder / "model.safetensors"))
    config = {"source": source, "classes": ["a", "b"], "model": asdict(cfg), "seed": 0, "steps": 0, "null_class": 2}
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genview_views")
    write_split(root / "vision" / "shapes", "train", tiny_split(24, 16, 0, "train"))
    write_split(root / "vision" / "big", "train", tiny_split(12, 24, 1, "train"))
    save_generator(root / "generator")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def stage(work: Path, out: str, params: str = "params.yaml", generator: str = "generator") -> list[str]:
    return ["genview-views", "--params", str(work / params), "--vision", str(work / "vision"),
            "--generator", str(work / generator), "--out", str(work / out), "--no-progress"]


def with_params(work: Path, name: str, edit) -> str:
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    edit(raw["genview"])
    (work / name).write_text(yaml.safe_dump(raw))
    return name


def load(folder: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    return load_file(str(folder / "views.safetensors")), json.loads((folder / "views.json").read_text())


@pytest.fixture(scope="module")
def reference(work) -> Path:
    assert cli(stage(work, "runs/ref") + ["--timing", str(work / "runs/ref-timing.json")]) == 0
    return work / "runs/ref"


# ----------------------------------------------------------------------------- the chunked PCA


def structured_tokens(b: int = 6, t: int = 5, c: int = 12, seed: int = 0) -> torch.Tensor:
    """Background tokens around 0 and a minority of 'object' tokens shifted along one direction."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, c, generator=g)
    shift = torch.randn(c, generator=g) * 4
    fg = torch.rand(b, t, generator=g) < 0.35
    return x + fg.unsqueeze(-1) * shift


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_chunked_pca_on_one_chunk_is_foreground_ratio_exactly(dtype):
    tokens = structured_tokens().to(dtype)
    pca = ForegroundPCA.fit(tokens, 0.4)
    ratio, proj = pca.apply(tokens)
    want_ratio, want_proj = foreground_ratio(tokens, 0.4)
    assert ratio.dtype == want_ratio.dtype == proj.dtype == dtype
    assert torch.equal(ratio, want_ratio) and torch.equal(proj, want_proj)


def test_the_chunked_pca_over_several_chunks_agrees_and_is_applied_unchanged_to_other_tokens():
    tokens = structured_tokens(b=9, seed=1).double()
    whole = ForegroundPCA.fit(tokens, 0.4)
    chunked = ForegroundPCA.fit(tokens, 0.4, chunk=2)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=0, atol=1e-12)
    assert abs(chunked.threshold - whole.threshold) < 1e-9
    r1, p1 = chunked.apply(tokens, chunk=4)
    r2, p2 = foreground_ratio(tokens, 0.4)
    assert torch.equal(r1, r2)
    torch.testing.assert_close(p1, p2, rtol=0, atol=1e-9)
    # the fitted (mean, direction, threshold) applies to any tokens, row by row: a subset gives the same rows
    r3, p3 = chunked.apply(tokens[3:5])
    torch.testing.assert_close(p3, p1[3:5], rtol=0, atol=1e-12)
    assert torch.equal(r3, r1[3:5])
    # the reduction's first component is the (centred, unshifted) foreground projection
    red = chunked.reduce(tokens, 3)
    assert red.shape == (9, 5, 3)
    torch.testing.assert_close(red[..., 0] - chunked.threshold, p1, rtol=0, atol=1e-9)
    assert 0 < chunked.explained <= 1


def test_noise_bins_and_per_image_noise():
    ratio = torch.tensor([0.0, 0.2, 0.25, 0.4, 0.5, 0.8, 0.81, 1.0])
    assert bin_index(ratio, [0.2, 0.4, 0.6, 0.8]).tolist() == [0, 0, 1, 1, 2, 3, 4, 4]
    assert noise_bin(ratio, [0.2, 0.4, 0.6, 0.8], [0, 100, 200, 300, 400]).tolist() == [0, 0, 100, 100, 200, 300, 400, 400]
    a = image_noise(0, range(0, 6), (3, 4, 4))
    b = torch.cat([image_noise(0, range(0, 2), (3, 4, 4)), image_noise(0, range(2, 6), (3, 4, 4))])
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert not torch.equal(image_noise(1, [0], (3, 4, 4))[0], a[0])


# ----------------------------------------------------------------------------- the stage


def test_the_stage_writes_views_of_the_documented_format(work, reference):
    from pipeline.data.vision.imageset import read_split

    t, info = load(reference)
    n, k = N_TRAIN, PARAMS["genview"]["views"]["components"]
    expect = {"fixed": (torch.uint8, (n, 16, 16, 3)), "adaptive": (torch.uint8, (n, 16, 16, 3)),
              "ratio": (torch.float32, (n,)), "strength": (torch.float32, (n,)),
              "fg_real": (torch.float32, (n, 2, 2)), "fg_adaptive": (torch.float32, (n, 2, 2)),
              "tokens_real": (torch.float16, (n, k, 2, 2)), "tokens_adaptive": (torch.float16, (n, k, 2, 2)),
              "index": (torch.int64, (n,))}
    assert set(t) == set(expect)
    for name, (dtype, shape) in expect.items():
        assert t[name].dtype == dtype and tuple(t[name].shape) == shape, name
    assert t["index"].tolist() == list(range(n))
    levels = PARAMS["genview"]["views"]["levels"]
    want = noise_bin(t["ratio"], [0.2, 0.4, 0.6, 0.8], levels).float() / 1000
    torch.testing.assert_close(t["strength"], want)
    assert ((t["fg_real"] >= 0) & (t["fg_real"] <= 1)).all() and ((t["fg_adaptive"] >= 0) & (t["fg_adaptive"] <= 1)).all()
    # ratios are shares of a 2x2 grid; about share = 0.4 of all tokens are foreground
    assert set((t["ratio"] * 4).round().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert abs(float(t["ratio"].mean()) - 0.4) <= 1 / (4 * n) + 1e-6
    # images of strength 0 come back as they were (SDEdit at 0 is the input); the others were redrawn
    real = read_split(work / "vision" / "shapes", "train").images[:n]
    zero = (t["strength"] == 0).numpy()
    assert np.array_equal(t["adaptive"].numpy()[zero], real[zero])
    assert not np.array_equal(t["fixed"].numpy(), real)
    assert info["n"] == n and info["source"] == "shapes" and info["token_grid"] == [2, 2]
    assert sum(info["bin_counts"]) == n and len(info["bin_counts"]) == 5
    assert info["bin_counts"] == [int(((t["strength"] * 1000).round() == v).sum()) for v in levels]
    assert info["views"]["steps"] == 4 and info["tower"]["size"] == 64 and info["tower"]["model"] == "efficientnet_lite0"
    assert info["generator"]["same_source"] and len(info["generator"]["config_digest"]) == 64
    assert not info["resized"] and 0 < info["pca"]["explained_first"] <= 1
    timing = json.loads((work / "runs/ref-timing.json").read_text())
    assert {"tower_real", "pca", "sdedit_fixed", "sdedit_adaptive", "tower_views", "stage"} <= set(timing)


def test_same_params_give_the_same_bytes(work, reference):
    assert cli(stage(work, "runs/again")) == 0
    for name in ("views.safetensors", "views.json"):
        assert (reference / name).read_bytes() == (work / "runs/again" / name).read_bytes(), name


def test_strength_zero_gives_the_input_bytes_and_the_noise_does_not_depend_on_the_batches(work, reference):
    from pipeline.data.vision.imageset import read_split

    def edit(g):
        g["views"].update(fixed_strength=0.0, batch_size=3)

    assert cli(stage(work, "runs/zero", with_params(work, "params-zero.yaml", edit))) == 0
    t, _ = load(work / "runs/zero")
    real = read_split(work / "vision" / "shapes", "train").images[:N_TRAIN]
    assert np.array_equal(t["fixed"].numpy(), real)
    ref, _ = load(reference)
    # other batches (3 instead of 8): the same per-image noise; the UNet's float rounding may differ by shape
    for name in ("ratio", "strength", "fg_real", "tokens_real"):
        assert torch.equal(t[name], ref[name]), name
    diff = (t["adaptive"].int() - ref["adaptive"].int()).abs()
    assert int(diff.max()) <= 1


def test_a_corpus_of_another_size_is_resized_and_another_source_is_recorded(work):
    def edit(g):
        g["data"].update(source="big", n_train=0)

    assert cli(stage(work, "runs/big", with_params(work, "params-big.yaml", edit))) == 0
    t, info = load(work / "runs/big")
    assert tuple(t["fixed"].shape) == (12, 16, 16, 3) and info["resized"] and info["corpus_size"] == [24, 24]
    assert info["generator"]["source"] == "shapes" and not info["generator"]["same_source"]


@pytest.mark.parametrize("edit,message", [
    (lambda g: g["views"].update(fixed_strength=1.5), "params: genview.views.fixed_strength: 1.5"),
    (lambda g: g["views"].update(levels=[0, 100, 200]), "params: genview.views.levels: 3 levels for 4 edges"),
    (lambda g: g["views"].update(components=2000), "params: genview.views.components: 2000"),
])
def test_bad_params_are_one_line_errors(work, capsys, edit, message):
    assert cli(stage(work, "runs/bad", with_params(work, "params-bad.yaml", edit))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not (work / "runs/bad").exists()


def test_a_missing_corpus_split_is_one_line(work, capsys):
    def edit(g):
        g["data"].update(source="nowhere")

    assert cli(stage(work, "runs/bad", with_params(work, "params-nowhere.yaml", edit))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no train split" in err[0] and "prepare-vision" in err[0], err


def test_a_missing_generator_is_one_line_without_traceback(work):
    cmd = [sys.executable, "-m", "pipeline", *stage(work, "runs/nogen", generator="no-such-generator")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no-such-generator" in err[0] and "dvc repro diffusion" in err[0]
    assert not (work / "runs/nogen").exists()
