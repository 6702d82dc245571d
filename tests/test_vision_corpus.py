"""The embedded image corpora of stage prepare-vision: rendered shapes (masks, attributes, captions, bias
control) and coloured handwritten digits; the stage's params, determinism and refusals. Small sizes only."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.__main__ import main as cli
from pipeline.data.params import DigitsConfig, ShapesConfig
from pipeline.data.vision import digits, shapes
from pipeline.data.vision.imageset import ImageSet, read_split
from pipeline.data.vision.vocab import (ATTRIBUTES, COLOUR_RGB, DIGIT_TEMPLATES, FULL_TEMPLATES, PARTIAL_TEMPLATES, SLOT_RE, TEMPLATES,
                                        tokens, vocabulary)

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_train": 800, "n_valid": 100, "n_test": 400}
RHO = 0.9


@pytest.fixture(scope="module")
def biased() -> dict[str, ImageSet]:
    return shapes.make_shapes(ShapesConfig(**SMALL, rho=RHO, captions_per_image=3), seed=3, size=32)


@pytest.fixture(scope="module")
def coloured_digits() -> dict[str, ImageSet]:
    return digits.make_digits(DigitsConfig(rho=RHO), seed=0)


def within_binomial(share: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(share - p) <= sigmas * np.sqrt(p * (1 - p) / n) + 1 / n


def same(a: ImageSet, b: ImageSet) -> bool:
    return (np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks) and a.captions == b.captions
            and a.attributes == b.attributes and np.array_equal(a.bias, b.bias) and a.ids == b.ids)


# ----------------------------------------------------------------------------- determinism


def test_same_params_same_corpus_other_seed_another(biased):
    again = shapes.make_shapes(ShapesConfig(**SMALL, rho=RHO, captions_per_image=3), seed=3, size=32)
    assert all(same(biased[s], again[s]) for s in biased)
    other = shapes.make_shapes(ShapesConfig(**SMALL, rho=RHO), seed=4, size=32)
    assert not np.array_equal(biased["train"].images, other["train"].images)


def test_captions_and_train_size_leave_other_streams_alone(biased):
    """Separate random streams: other captions leave the images alone, another n_train leaves the test split."""
    cfg = ShapesConfig(**{**SMALL, "n_train": 300}, rho=RHO, captions_per_image=1)
    other = shapes.make_shapes(cfg, seed=3, size=32)
    assert np.array_equal(other["valid"].images, biased["valid"].images)
    assert other["valid"].captions != biased["valid"].captions
    assert np.array_equal(other["test"].images, biased["test"].images)


def run_stage(params: Path, out: Path, *extra: str) -> int:
    timing = out.with_name(out.name + "-timing.json")
    return cli(["prepare-vision", "--params", str(params), "--out", str(out), "--timing", str(timing), "--no-progress",
                *extra])


def write_params(tmp_path: Path, vision: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"vision": vision}))
    return p


TINY = {"seed": 1, "shapes": {"n_train": 120, "n_valid": 24, "n_test": 48, "rho": 0.95}, "digits": {"rho": 0.99}}


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_stage_twice_gives_the_same_bytes(tmp_path):
    """In this process and in a fresh one (another hash seed): every file is identical (timings go elsewhere)."""
    params = write_params(tmp_path, TINY)
    assert run_stage(params, tmp_path / "a") == 0
    cmd = [sys.executable, "-m", "pipeline", "prepare-vision", "--params", str(params), "--out", str(tmp_path / "b"),
           "--timing", str(tmp_path / "b-timing.json"), "--no-progress"]
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
    a = hashes(tmp_path / "a")
    assert a == hashes(tmp_path / "b")
    for source in ("shapes", "digits"):
        for name in ("classes.json", "attributes.json", "grid.png"):
            assert f"{source}/{name}" in a
        for split in ("train", "valid", "test", "test_conflicting"):
            assert {f"{source}/{split}.safetensors", f"{source}/{split}.jsonl"} <= set(a)
    stats = json.loads((tmp_path / "a/stats.json").read_text())
    assert stats["sources"]["shapes"]["images"] == 120 + 24 + 48
    assert stats["sources"]["digits"]["images"] == 1797
    timing = json.loads((tmp_path / "a-timing.json").read_text())
    assert timing["sources"]["shapes"]["images_per_s"] > 0 and timing["seconds"] > 0
    # an earlier output of the stage is replaced; what is read back is what was rendered
    assert run_stage(params, tmp_path / "a") == 0 and hashes(tmp_path / "a") == a
    back = read_split(tmp_path / "a/shapes", "train")
    fresh = shapes.make_shapes(ShapesConfig(**TINY["shapes"]), seed=1, size=32)["train"]
    assert same(back, fresh) and back.aligned == fresh.aligned


# ----------------------------------------------------------------------------- masks


def test_masks_are_exactly_the_drawn_pixels(biased):
    for split, data in biased.items():
        rgb = np.array([a["rgb"] for a in data.attributes], dtype=np.uint8)  # [N, 3]
        again = shapes.masks_from_attributes(data.attributes, 32)  # re-rendered from the stored geometry alone
        assert np.array_equal(again, data.masks), split
        blank = np.where(again[..., None] == 1, rgb[:, None, None, :], 0)  # the same shapes on a black canvas
        assert np.array_equal(blank.any(-1), data.masks.astype(bool)), split
        fg = data.masks.astype(bool)
        assert np.array_equal(data.images[fg], np.repeat(rgb, fg.reshape(len(rgb), -1).sum(1), axis=0)), split
        assert fg.reshape(len(rgb), -1).sum(1).min() >= 8, "every shape is drawn"
        base = np.array([COLOUR_RGB[a["colour"]] for a in data.attributes])
        assert np.abs(rgb.astype(int) - base).max() <= 24  # the colour name is the painted colour, jittered
        assert data.images[~fg].max() <= shapes.BACKGROUND_MAX  # backgrounds stay darker than every colour


def test_shape_areas_match_their_geometry():
    """At 64 px, radius 28, every shape's mask has its analytic area (in radius^2) within 3 %, at any rotation,
    and an image rendered alone is the same as in a batch."""
    area = {"circle": np.pi, "square": 4 * 0.72 ** 2, "triangle": 3 * np.sqrt(3) / 4, "diamond": 2 * 0.62,
            "star": 5 * 0.45 * np.sin(np.pi / 5), "cross": 2 * 0.6 * 1.84 - 0.36, "hexagon": 3 * np.sqrt(3) / 2}
    n = len(shapes.SHAPES)
    for rot in (0, 17, 90, -133):
        masks = shapes.render_masks(np.arange(n), np.full(n, 32.0), np.full(n, 32.0), np.full(n, 28.0),
                                    np.full(n, rot), 64)
        for k, name in enumerate(shapes.SHAPES):
            if name in area:
                assert masks[k].sum() / 28 ** 2 == pytest.approx(area[name], rel=0.03), (name, rot)
            alone = shapes.render_masks(np.array([k]), np.array([32.0]), np.array([32.0]), np.array([28.0]),
                                        np.array([rot]), 64)
            assert np.array_equal(alone[0], masks[k])
    tri = masks[shapes.SHAPES.index("triangle")]
    assert not np.array_equal(tri, np.rot90(tri)), "rotation changes the mask"


# ----------------------------------------------------------------------------- bias control


def test_bias_ratio_on_train_unbiased_test_and_conflicting_split(biased):
    colours = list(ATTRIBUTES["colour"])[:8]
    for split, data in biased.items():
        aligned = np.array(data.aligned)
        assert np.array_equal(aligned, data.bias == data.labels % 8), split
        assert [a["colour"] for a in data.attributes] == [colours[b] for b in data.bias]
        assert [a["shape"] for a in data.attributes] == [data.class_names[y] for y in data.labels]
    train, test, conf = biased["train"], biased["test"], biased["test_conflicting"]
    assert within_binomial(np.mean(train.aligned), RHO, len(train))
    assert within_binomial(np.mean(test.aligned), 1 / 8, len(test))
    assert within_binomial(np.mean(biased["valid"].aligned), 1 / 8, len(biased["valid"]))
    assert len(conf) == len(test) - sum(test.aligned) and not any(conf.aligned)
    assert set(conf.ids) <= set(test.ids)
    # conflicting training images take the other colours uniformly, not one neighbour
    off = train.bias[~np.array(train.aligned)] - train.labels[~np.array(train.aligned)]
    assert len(np.unique(off % 8)) == 7


def test_bias_on_other_attributes_and_unbiased_default():
    cfg = ShapesConfig(n_train=600, n_valid=10, n_test=10, rho=0.8, class_attribute="colour", bias_attribute="background")
    train = shapes.make_shapes(cfg, seed=0, size=16)["train"]
    assert train.class_names == list(ATTRIBUTES["colour"])[:8]
    assert [a["background"] for a in train.attributes] == [cfg.backgrounds[b] for b in train.bias]
    assert np.array_equal(np.array(train.aligned), train.bias == train.labels % 3)
    assert within_binomial(np.mean(train.aligned), 0.8, len(train))
    unbiased = shapes.make_shapes(ShapesConfig(n_train=1600, n_valid=10, n_test=10), seed=0, size=16)["train"]
    assert within_binomial(np.mean(unbiased.aligned), 1 / 8, len(unbiased))


# ----------------------------------------------------------------------------- captions


def template_regex(template: str, attrs: dict) -> re.Pattern:
    """The captions ``template`` can give for an image with ``attrs`` (its own values' synonyms only)."""
    return _regex(template, tuple(sorted((k, v) for k, v in attrs.items() if k in ATTRIBUTES)))


@functools.lru_cache(maxsize=None)
def _regex(template: str, values: tuple) -> re.Pattern:
    attrs = dict(values)
    out, pos = "", 0
    for m in SLOT_RE.finditer(template):
        out += re.escape(template[pos:m.start()])
        slot = m.group(1)
        words = [attrs["position"]] if slot == "position_name" else ATTRIBUTES[slot][attrs[slot]]
        out += "(?:" + "|".join(re.escape(w) for w in words) + ")"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]))


def matches(template: str, attrs: dict, caption: str) -> bool:
    """Whether ``caption`` is ``template`` filled for ``attrs`` ("an" read as the template's "a")."""
    return template_regex(template, attrs).fullmatch(re.sub(r"\ban ", "a ", caption)) is not None


def test_captions_are_true_of_their_image_and_in_the_vocabulary(biased):
    assert len(FULL_TEMPLATES) >= 10 and len(TEMPLATES) >= 15
    vocab = vocabulary()
    n_partial = n_total = 0
    for data in biased.values():
        for caps, attrs in zip(data.captions, data.attributes):
            assert len(caps) == 3
            for cap in caps:
                assert set(tokens(cap)) <= vocab, cap
                assert not re.search(r"\ba [aeiou]|\ban [^aeiou]", cap), cap
                full = [t for t in FULL_TEMPLATES if matches(t, attrs, cap)]
                partial = [t for t in PARTIAL_TEMPLATES if matches(t, attrs, cap)]
                assert full or partial, f"{cap!r} says something untrue of {attrs}"
                n_partial += bool(partial) and not full
                n_total += 1
    assert within_binomial(n_partial / n_total, 0.3, n_total)
    words = {t for caps in biased["train"].captions for c in caps for t in tokens(c)}
    assert {"crimson", "tiny", "left", "an"} <= words  # synonyms, the bare position word, a/an agreement


def test_partial_share_follows_its_param():
    data = shapes.make_shapes(ShapesConfig(n_train=200, n_valid=1, n_test=1, partial_caption_share=1.0), 0, 16)
    assert all(any(matches(t, a, c) for t in PARTIAL_TEMPLATES)
               for caps, a in zip(data["train"].captions, data["train"].attributes) for c in caps)
    one = shapes.make_shapes(ShapesConfig(n_train=50, n_valid=1, n_test=1, captions_per_image=5), 0, 16)
    assert {len(c) for c in one["train"].captions} == {5}


# ----------------------------------------------------------------------------- digits


def test_digits_are_the_1797_real_ones_stratified_and_coloured(coloured_digits):
    d = coloured_digits
    grey, labels = digits.load_grey()
    idx = {s: [a["source_index"] for a in d[s].attributes] for s in ("train", "valid", "test")}
    assert sorted(sum(idx.values(), [])) == list(range(1797))
    for s in ("valid", "test"):
        share = np.bincount(d[s].labels, minlength=10) / np.bincount(labels, minlength=10)
        assert np.allclose(share, 0.15, atol=0.01), s  # stratified
    train, test, conf = d["train"], d["test"], d["test_conflicting"]
    assert train.images.shape[1:] == (28, 28, 3) and train.class_names[3] == "three"
    assert abs(np.mean(train.aligned) - RHO) < 0.01  # exactly round(rho n_k) per class
    assert within_binomial(np.mean(test.aligned), 1 / 10, len(test))
    assert not any(conf.aligned) and len(conf) == len(test) - sum(test.aligned)
    colours = list(COLOUR_RGB)
    assert np.array_equal(np.array(train.aligned), train.bias == train.labels)  # digit k's dominant colour is colour k
    for data in (train, test):
        rgb = np.array([a["rgb"] for a in data.attributes], dtype=np.float32)
        assert [a["colour"] for a in data.attributes] == [colours[b] for b in data.bias]
        assert np.abs(rgb - np.array([COLOUR_RGB[colours[b]] for b in data.bias])).max() <= 16
        # pixel = ink x rgb; the mask is ink >= 0.5, so on the brightest channel of each image:
        c = rgb.argmax(1)
        ink = np.take_along_axis(data.images, c[:, None, None, None], 3)[..., 0] / rgb.max(1)[:, None, None]
        tol = np.broadcast_to(0.5 / rgb.max(1)[:, None, None], ink.shape)  # the rounding to uint8
        m = data.masks.astype(bool)
        assert (ink[m] >= 0.5 - tol[m]).all() and (ink[~m] <= 0.5 + tol[~m]).all()
        assert data.images[:, :4].max() == 0 and data.images[:, :, -4:].max() == 0  # MNIST's 4 px margin
        assert data.masks.reshape(len(data), -1).sum(1).min() > 10
        for caps, attrs in zip(data.captions, data.attributes):
            assert len(caps) == 1 and any(matches(t, attrs, caps[0]) for t in DIGIT_TEMPLATES), caps
            assert set(tokens(caps[0])) <= vocabulary()


# ----------------------------------------------------------------------------- params and refusals


@pytest.mark.parametrize("vision,key", [
    ({"shapes": {"rho": 1.5}}, "vision.shapes.rho"),
    ({"shapes": {"class_attribute": "colour"}}, "vision.shapes.bias_attribute"),
    ({"shapes": {"n_trian": 10}}, "vision.shapes.n_trian"),
    ({"image_size": 30}, "vision.image_size"),
    ({"sources": ["shapes", "pictures"]}, "vision.sources[1]"),
    ({"digits": {"rho": -0.1}}, "vision.digits.rho"),
    ({"real": {"kind": "mnist"}}, "vision.real.root"),
    ({"real": {"kind": "svhn", "root": "/x"}}, "vision.real.kind"),
])
def test_bad_params_are_one_line_naming_the_key(tmp_path, capsys, vision, key):
    out = tmp_path / "out"
    assert run_stage(write_params(tmp_path, vision), out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"params: {key}:" in err, err
    assert not out.exists() and not (tmp_path / "out.tmp").exists()


def test_a_folder_the_stage_did_not_write_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert run_stage(write_params(tmp_path, TINY), out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "prepare-vision" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and not (tmp_path / "mine.tmp").exists()


def test_a_real_dataset_goes_through_read_real(tmp_path, monkeypatch):
    calls = []

    def read_real(kind, root, **options):
        calls.append((kind, root, options))
        img = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
        return {s: ImageSet(img, np.array([0, 1]), ["cat", "dog"], [f"x-{s}-0", f"x-{s}-1"]) for s in ("train", "test")}

    from pipeline.data.vision import readers

    monkeypatch.setattr(readers, "read_real", read_real)
    params = write_params(tmp_path, {"sources": ["digits"], "real": {"kind": "cifar10", "root": str(tmp_path)}})
    assert run_stage(params, tmp_path / "out") == 0
    assert calls == [("cifar10", tmp_path, {"seed": 0, "valid_fraction": 0.1, "labels": "fine"})]  # what cifar10 takes
    back = read_split(tmp_path / "out/cifar10", "test")
    assert back.ids == ["x-test-0", "x-test-1"] and back.class_names == ["cat", "dog"]
    assert (tmp_path / "out/cifar10/grid.png").is_file() and (tmp_path / "out/digits/train.jsonl").is_file()
    assert not (tmp_path / "out/shapes").exists()


def test_params_counts_agree_with_the_vocabulary_table():
    """pipeline.data.params validates without importing the table (every stage imports it): same counts."""
    from pipeline.data import params

    assert params.N_VALUES == {a: len(ATTRIBUTES[a]) for a in params.N_VALUES}
    assert params.MAX_COLOURS == len(ATTRIBUTES["colour"]) == len(COLOUR_RGB)
    assert list(shapes.POSITION_ANCHOR) == list(ATTRIBUTES["position"]) and list(shapes.SIZE_FRACTION) == list(ATTRIBUTES["size"])


def test_a_real_image_folder_through_the_stage_with_its_options(tmp_path, capsys):
    """vision.real options reach the reader (image_size resizes mixed sizes); one that does not apply to the
    kind is refused by name, not ignored."""
    from PIL import Image

    root = tmp_path / "photos"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((10 + i, 12, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    real = {"kind": "imagefolder", "root": str(root)}
    assert run_stage(write_params(tmp_path, {"sources": [], "real": real}), tmp_path / "a") == 2
    assert "set vision.real.image_size" in capsys.readouterr().err
    assert run_stage(write_params(tmp_path, {"sources": [], "real": {**real, "image_size": 16}}), tmp_path / "b") == 0
    sets = {s: read_split(tmp_path / "b" / "imagefolder", s) for s in ("train", "valid", "test")}
    assert sum(len(v) for v in sets.values()) == 10 and sets["train"].images.shape[1:] == (16, 16, 3)
    assert run_stage(write_params(tmp_path, {"sources": [], "real": {**real, "labels": "coarse"}}), tmp_path / "c") == 2
    assert capsys.readouterr().err.startswith("error: params: vision.real.labels: does not apply to kind 'imagefolder'")
