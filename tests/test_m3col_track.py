"""The M3CoL track (pipeline.m3col): the degradations and corruptions (corrupt.py) and their analytic ceilings,
the variants' objectives and the M3Co -> SoftCLIP schedule, the fusion model's heads, prepare-m3col's task
builders, and the m3col-image stage end to end on a tiny fake prepare-m3col folder (outputs, determinism, model
selection on the valid split only, the schedule in a real run, kill -9 resume, one-line errors)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file

from conftest import kill_at_first_checkpoint
from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.data.vision.vocab import ATTRIBUTES, COLOUR_RGB
from pipeline.errors import DataError
from pipeline.m3col import corrupt
from pipeline.m3col.model import FeatureEncoder, FusionModel
from pipeline.m3col.objective import Objective, Scorer, phase, switch_epoch
from pipeline.m3col.params import CaptionNoiseConfig, DegradeConfig, ImageDataConfig, LossConfig, TranscriptNoiseConfig

ROOT = Path(__file__).resolve().parents[1]


# the stages run in this process set torch's threads and deterministic flag: conftest gives them back
pytestmark = pytest.mark.usefixtures("restore_torch_globals")


# ----------------------------------------------------------------------------- corrupt.degrade

SIZE, RADIUS, BACKGROUND = 16, 4.0, (30, 60, 90)


def scenes(colours: list[str], bg=BACKGROUND):
    """Images of one centred disc per colour over a flat background: (images, masks, attributes)."""
    n = len(colours)
    centres = np.arange(SIZE) + 0.5
    disc = ((centres[None, :] - SIZE / 2) ** 2 + (centres[:, None] - SIZE / 2) ** 2 <= RADIUS ** 2).astype(np.uint8)
    masks = np.repeat(disc[None], n, axis=0)
    rgb = np.array([COLOUR_RGB[c] for c in colours], dtype=np.uint8)
    images = np.where(masks[..., None] == 1, rgb[:, None, None, :], np.array(bg, dtype=np.uint8)).astype(np.uint8)
    attrs = [{"colour": c, "shape": "circle", "cx": SIZE / 2, "cy": SIZE / 2, "radius": RADIUS} for c in colours]
    return images, masks, attrs


def random_colours(n: int, seed: int) -> list[str]:
    names = list(COLOUR_RGB)[:8]
    return [names[i] for i in np.random.default_rng(seed).integers(0, len(names), n)]


PLAIN = dict(noise_std=0.0, contrast_min=1.0, contrast_max=1.0)  # no noise, no contrast change


def test_degrade_leaves_its_inputs_unchanged_and_is_deterministic_for_a_seeded_rng():
    images, masks, attrs = scenes(random_colours(20, 0))
    kept = (images.copy(), masks.copy(), copy.deepcopy(attrs))
    cfg = DegradeConfig(greyscale=0.5, occlusion=0.5)
    a = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(3))
    b = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(3))
    c = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(4))
    assert np.array_equal(images, kept[0]) and np.array_equal(masks, kept[1]) and attrs == kept[2]
    assert a[0].dtype == np.uint8 and a[0].shape == images.shape and a[1].shape == a[2].shape == (20,)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert 0 < a[1].sum() < 20 and 0 < a[2].sum() < 20  # both kinds drawn at 0.5 over 20 images


def test_degrade_with_every_degradation_off_is_the_identity():
    images, masks, attrs = scenes(random_colours(10, 1))
    out, grey, occluded = corrupt.degrade(images, masks, attrs, DegradeConfig(**PLAIN, greyscale=0.0, occlusion=0.0),
                                          np.random.default_rng(0))
    assert np.array_equal(out, images) and not grey.any() and not occluded.any()


def test_grey_images_keep_no_colour_not_even_as_brightness():
    colours = random_colours(30, 2)
    images, masks, attrs = scenes(colours)
    cfg = DegradeConfig(**PLAIN, greyscale=1.0, occlusion=0.0)
    out, grey, occluded = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(0))
    assert grey.all() and not occluded.any()
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])  # R == G == B
    levels = []
    for i in range(len(out)):
        shape_px = out[i, ..., 0][masks[i] == 1]
        assert len(set(shape_px.tolist())) == 1  # one grey level for the whole shape
        levels.append(int(shape_px[0]))
        bg_lum = round(0.299 * BACKGROUND[0] + 0.587 * BACKGROUND[1] + 0.114 * BACKGROUND[2])
        assert set(out[i, ..., 0][masks[i] == 0].tolist()) == {bg_lum}  # the background: its luminance
    assert all(110 <= v <= 240 for v in levels) and len(set(levels)) > 10  # a random level per image
    # the level does not depend on the colour: another colour per image, the same draws -> the same pixels
    others, _, _ = scenes([{"red": "blue"}.get(c, "red") for c in colours])
    again, _, _ = corrupt.degrade(others, masks, attrs, cfg, np.random.default_rng(0))
    assert np.array_equal(out, again)
    # with noise, contrast and occlusion blocks on too, a grey image says nothing about its colour
    cfg = DegradeConfig(greyscale=1.0, occlusion=0.5)
    x = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(5))
    y = corrupt.degrade(others, masks, attrs, cfg, np.random.default_rng(5))
    assert x[2].any() and np.array_equal(x[0], y[0])
    blocks = corrupt.degrade(images, masks, attrs, DegradeConfig(**PLAIN, greyscale=1.0, occlusion=1.0),
                             np.random.default_rng(6))[0]
    assert np.array_equal(blocks[..., 0], blocks[..., 1]) and np.array_equal(blocks[..., 1], blocks[..., 2])


def test_occlusion_share_follows_the_config_and_every_draw_is_independent_of_the_class():
    n = 2000
    colours = random_colours(n, 3)
    images, masks, attrs = scenes(colours)
    cfg = DegradeConfig(**PLAIN, greyscale=0.0, occlusion=0.3)
    out, grey, occluded = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(0))
    assert 0.26 < occluded.mean() < 0.34 and not grey.any()  # 4 sigma of a 0.3 share over 2000
    # the block covers the shape's centre (shift <= 0.5 r < half side 0.7 r) with a dark colour; nothing else moves
    centre = out[:, SIZE // 2, SIZE // 2]
    assert (centre[occluded] <= 110).all()
    assert np.array_equal(out[~occluded], images[~occluded])
    changed = (out != images).any(axis=-1)  # [N, S, S]
    rows, cols = np.nonzero(changed.any(axis=0))
    reach = (0.5 + cfg.occlusion_size) * RADIUS
    assert (np.abs(cols + 0.5 - SIZE / 2) <= reach).all() and (np.abs(rows + 0.5 - SIZE / 2) <= reach).all()
    # class-independent draws: other colours (classes), same seed -> the same grey and occluded flags
    cfg = DegradeConfig(greyscale=0.3, occlusion=0.3)
    _, g1, o1 = corrupt.degrade(images, masks, attrs, cfg, np.random.default_rng(9))
    others = scenes(random_colours(n, 4))
    _, g2, o2 = corrupt.degrade(*others, cfg, np.random.default_rng(9))
    assert np.array_equal(g1, g2) and np.array_equal(o1, o2)
    assert 0.26 < g1.mean() < 0.34 and 0.26 < o1.mean() < 0.34
    labels = np.array([list(COLOUR_RGB).index(c) for c in colours])
    for k in range(8):  # the grey share within each class is the overall share
        assert abs(g1[labels == k].mean() - 0.3) < 0.12


# ----------------------------------------------------------------------------- corrupt.caption


def _phrase_in(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def check_caption(text: str, colour: str, shape: str, names_colour: bool, names_shape: bool) -> None:
    """The flags say what the text names: the colour's (shape's) synonym appears iff its flag; no other value."""
    assert text and text == text.strip() and "{" not in text
    assert any(_phrase_in(text, s) for s in ATTRIBUTES["colour"][colour]) == names_colour, text
    assert any(_phrase_in(text, s) for s in ATTRIBUTES["shape"][shape]) == names_shape, text
    other_colours = [s for c, syns in ATTRIBUTES["colour"].items() if c != colour for s in syns]
    other_shapes = [s for v, syns in ATTRIBUTES["shape"].items() if v != shape for s in syns
                    if s not in ATTRIBUTES["shape"][shape]]
    assert not any(_phrase_in(text, s) for s in other_colours + other_shapes), text


def draw_captions(n: int, cfg, seed: int):
    pick = np.random.default_rng(100 + seed)
    colours, shapes = list(ATTRIBUTES["colour"])[:8], list(ATTRIBUTES["shape"])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c, s = colours[int(pick.integers(8))], shapes[int(pick.integers(8))]
        out.append((c, s, *corrupt.caption(c, s, cfg, rng)))
    return out


def test_caption_omission_rates_follow_the_config_and_the_flags_agree_with_the_text():
    rows = draw_captions(2000, CaptionNoiseConfig(omit_colour=0.25, omit_shape=0.15, word_dropout=0.0), 0)
    for c, s, text, has_c, has_s in rows:
        check_caption(text, c, s, has_c, has_s)
    has_c = np.array([r[3] for r in rows])
    has_s = np.array([r[4] for r in rows])
    assert 0.21 < 1 - has_c.mean() < 0.29 and 0.12 < 1 - has_s.mean() < 0.18
    assert (has_c | has_s).all()  # exclusive omissions, no dropout: every caption names one at least
    assert len({r[2] for r in rows}) > 100  # templates x synonyms
    assert rows == draw_captions(2000, CaptionNoiseConfig(omit_colour=0.25, omit_shape=0.15, word_dropout=0.0), 0)


def test_caption_word_dropout_drops_attribute_phrases_whole_and_never_empties_a_caption():
    rows = draw_captions(2000, CaptionNoiseConfig(omit_colour=0.0, omit_shape=0.0, word_dropout=0.2), 1)
    for c, s, text, has_c, has_s in rows:
        check_caption(text, c, s, has_c, has_s)
    lost_c = 1 - np.mean([r[3] for r in rows])
    assert 0.16 < lost_c < 0.24  # the colour phrase alone drops at the word dropout
    heavy = draw_captions(1000, CaptionNoiseConfig(omit_colour=0.25, omit_shape=0.25, word_dropout=0.999), 2)
    for c, s, text, has_c, has_s in heavy:
        check_caption(text, c, s, has_c, has_s)
        assert text.split()
    assert np.mean([r[3] or r[4] for r in heavy]) < 0.9  # mostly one phrase kept, often neither attribute


# ----------------------------------------------------------------------------- corrupt.corrupt_transcript


def test_transcript_without_noise_is_unchanged():
    rng = np.random.default_rng(0)
    for text in ("turn on the lights", "lamp", "bring me my shoes please"):
        assert corrupt.corrupt_transcript(text, ["x", "y", "z"], TranscriptNoiseConfig(0.0, 0.0), rng) == (text, 0, 0)


def test_transcript_dropout_and_substitution_rates_and_substitutes_from_the_vocabulary():
    words = [f"w{i}" for i in range(20)]
    vocab = [f"v{i}" for i in range(50)]
    cfg = TranscriptNoiseConfig(word_dropout=0.3, substitution=0.2)
    rng = np.random.default_rng(0)
    dropped = substituted = 0
    for _ in range(500):
        text, d, s = corrupt.corrupt_transcript(" ".join(words), vocab, cfg, rng)
        out = text.split()
        assert len(out) == len(words) - d >= 1
        assert sum(w in vocab for w in out) == s  # the substitutes, all from the vocabulary
        kept = [w for w in out if w not in vocab]
        assert kept == [w for w in words if w in kept]  # the kept words in order
        dropped, substituted = dropped + d, substituted + s
    assert abs(dropped / 10000 - 0.3) < 0.02 and abs(substituted / 10000 - 0.2) < 0.02
    # a substitute is another word than the one it replaces, even when the vocabulary holds that word
    sub_all = TranscriptNoiseConfig(word_dropout=0.0, substitution=1.0)
    for _ in range(200):
        text, d, s = corrupt.corrupt_transcript("a b c", ["a", "b", "c"], sub_all, rng)
        assert (d, s) == (0, 3) and all(x != y and x in "abc" for x, y in zip(text.split(), "abc"))


def test_transcript_is_never_empty():
    rng = np.random.default_rng(1)
    cfg = TranscriptNoiseConfig(word_dropout=0.999, substitution=0.0)
    for n in (1, 2, 3, 7):
        words = [f"w{i}" for i in range(n)]
        for _ in range(50):
            text, d, s = corrupt.corrupt_transcript(" ".join(words), ["v"], cfg, rng)
            assert len(text.split()) == 1 and text in words and (d, s) == (n - 1, 0)


# ----------------------------------------------------------------------------- ceilings


def test_ceilings_closed_form():
    c, s = np.array([True, False, True, False]), np.array([True, True, False, False])
    assert corrupt.text_ceiling(c, s, 8, 4) == pytest.approx((1 + 1 / 8 + 1 / 4 + 1 / 32) / 4)
    grey = np.array([True, False, False, False, True])
    assert corrupt.image_ceiling(grey, 8) == pytest.approx((2 / 8 + 3) / 5)
    grey, has_c = np.array([True, True, False, False]), np.array([True, False, False, True])
    assert corrupt.fused_ceiling(grey, has_c, np.array([False] * 4), 8) == pytest.approx((3 + 1 / 8) / 4)
    assert corrupt.fused_ceiling(grey, has_c, np.array([True] * 4), 8) == pytest.approx((3 + 1 / 8) / 4)
    assert corrupt.image_ceiling(np.zeros(3, bool), 8) == corrupt.fused_ceiling(np.zeros(3, bool), np.zeros(3, bool),
                                                                              np.zeros(3, bool), 8) == 1.0


# ----------------------------------------------------------------------------- objective: the schedule


def test_phase_and_switch_epoch_of_every_variant():
    third = LossConfig(m3co_share=1 / 3)
    assert [phase("m3col", e, third, 12) for e in range(1, 13)] == ["m3co"] * 4 + ["softclip"] * 8
    assert switch_epoch("m3col", third, 12) == 5
    assert [phase("m3col", e, third, 4) for e in range(1, 5)] == ["m3co"] + ["softclip"] * 3  # round(4/3) = 1
    assert switch_epoch("m3col", third, 4) == 2
    none = LossConfig(m3co_share=0.0)
    assert [phase("m3col", e, none, 5) for e in range(1, 6)] == ["softclip"] * 5 and switch_epoch("m3col", none, 5) == 1
    whole = LossConfig(m3co_share=1.0)
    assert [phase("m3col", e, whole, 5) for e in range(1, 6)] == ["m3co"] * 5 and switch_epoch("m3col", whole, 5) is None
    for variant, expected in (("clip", "infonce"), ("m3co", "m3co"), ("aux", "none"), ("concat", "none"),
                              ("image", "none"), ("text", "none"), ("speech", "none")):
        assert {phase(variant, e, third, 12) for e in range(1, 13)} == {expected}
        assert switch_epoch(variant, third, 12) is None


# ----------------------------------------------------------------------------- model and objective terms

D_IMAGE, D_TEXT, N_CLASSES = 5, 3, 3


def tiny_model(variant: str, seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    train = {"image": torch.randn(30, D_IMAGE), "text": torch.randn(30, D_TEXT)}
    encoders = {m: FeatureEncoder(m, train[m], 8, 4, 0.0) for m in train}
    return FusionModel(variant, ("image", "text"), encoders, N_CLASSES, 4, 8, 0.0)  # no dropout: exact re-runs


def tiny_batch(n: int = 6, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, D_IMAGE, generator=g), "text": torch.randn(n, D_TEXT, generator=g),
            "y": torch.arange(n) % N_CLASSES}


HEADS = {"image": {"image"}, "text": {"text"}, "concat": {"fusion"}, "aux": {"fusion", "image", "text"},
         "clip": {"fusion", "image", "text"}, "m3co": {"fusion", "image", "text"}, "m3col": {"fusion", "image", "text"}}


@pytest.mark.parametrize("variant", list(HEADS))
def test_the_heads_and_encoders_of_each_variant(variant):
    model = tiny_model(variant)
    assert set(model.heads) == HEADS[variant]
    assert set(model.encoders) == ({variant} if variant in ("image", "text") else {"image", "text"})
    assert model.inference_head == (variant if variant in ("image", "text") else "fusion")
    out = model(tiny_batch())
    assert set(out["logits"]) == HEADS[variant] and all(v.shape == (6, N_CLASSES) for v in out["logits"].values())
    assert set(out["z"]) == set(model.encoders) and all(v.shape == (6, 4) for v in out["z"].values())


class Refuse(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("a unimodal head was used at inference")


def test_predict_uses_the_fusion_head_only_and_a_unimodal_variant_its_own_head():
    batch = tiny_batch()
    model = tiny_model("m3col").eval()
    expected = model(batch)["logits"]["fusion"]
    model.heads["image"], model.heads["text"] = Refuse(), Refuse()
    assert torch.equal(model.predict(batch), expected)
    with pytest.raises(AssertionError, match="unimodal head"):
        model(batch)  # training uses them (the replacements are really in place)
    uni = tiny_model("text").eval()
    logits = uni.predict({"text": batch["text"]})  # the image input is never read
    assert torch.equal(logits, uni.heads["text"](uni.encoders["text"](batch)))


@pytest.mark.parametrize("variant", list(HEADS))
def test_the_objective_terms_of_each_variant(variant):
    from pipeline.losses.cwcl import ContrastiveLoss
    from pipeline.losses.m3co import M3CoLoss
    from pipeline.losses.softclip import SoftCLIPLoss

    cfg = LossConfig(weight=0.37, m3co_share=0.5)
    model, batch = tiny_model(variant), tiny_batch()
    objective = Objective(variant, cfg, 4)
    torch.manual_seed(11)
    terms = objective(model, batch)
    contrastive = variant in ("clip", "m3co", "m3col")
    assert set(terms) == {"loss", *(f"ce_{h}" for h in HEADS[variant])} | ({"contrastive"} if contrastive else set())
    out = model(batch)
    for head in HEADS[variant]:
        assert torch.equal(terms[f"ce_{head}"], F.cross_entropy(out["logits"][head], batch["y"]))
    ce = sum(terms[f"ce_{h}"] for h in out["logits"])  # the heads in the model's order, as the objective sums
    if not contrastive:
        assert torch.equal(terms["loss"], ce)
        return
    assert torch.equal(terms["loss"], ce + 0.37 * terms["contrastive"])
    # the contrastive term trains both encoders (its gradient is in the loss's), neither side is detached
    for m in ("image", "text"):
        w = model.encoders[m].net[0].weight
        g_loss = torch.autograd.grad(terms["loss"], w, retain_graph=True)[0]
        g_ce = torch.autograd.grad(ce, w, retain_graph=True)[0]
        assert not torch.allclose(g_loss, g_ce), m
    a, b = out["z"]["image"], out["z"]["text"]
    if variant == "clip":  # symmetric InfoNCE summed over its two directions (CWCL's CL value, nothing detached)
        assert torch.allclose(terms["contrastive"], ContrastiveLoss(temperature=cfg.tau)(a, b), rtol=1e-6, atol=0)
    else:
        torch.manual_seed(11)  # the same mixup draws
        loss = M3CoLoss(temperature=cfg.tau, beta=cfg.beta, fraction=cfg.mix_fraction)
        assert torch.equal(terms["contrastive"], loss(a, b))
    if variant == "m3col":  # epochs 3, 4: SoftCLIP
        assert objective.phase == "m3co"
        objective.set_epoch(3)
        assert objective.phase == "softclip"
        terms = objective(model, batch)
        assert torch.equal(terms["contrastive"], SoftCLIPLoss(temperature=cfg.soft_tau)(a, b))
        assert torch.equal(terms["loss"], ce + 0.37 * terms["contrastive"])
        objective.set_epoch(2)
        assert objective.phase == "m3co"


# ----------------------------------------------------------------------------- a fake prepare-m3col folder

CLASSES = ["red circle", "blue circle", "red square", "blue square"]
SIZES = {"train": 40, "valid": 24, "test": 24}


def fake_attributes(i: int, label: int) -> dict:
    colour, shape = CLASSES[label].split()
    return {"colour": colour, "shape": shape, "grey": i % 3 == 0, "occluded": i % 4 == 1,
            "caption_colour": i % 5 != 0, "caption_shape": i % 2 == 0}


def write_task(root: Path, sizes=SIZES, seed: int = 0) -> Path:
    """prepare-m3col's image layout: splits with captions and attributes, class-informative embeddings
    (float16, image [N, 16], text [N, 8]) and manifest.json."""
    rng = np.random.default_rng(seed)
    centre_i, centre_t = rng.normal(0, 1, (4, 16)), rng.normal(0, 1, (4, 8))
    emb = {}
    for split, n in sizes.items():
        labels = np.arange(n) % len(CLASSES)
        data = ImageSet(rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8), labels.astype(np.int64), CLASSES,
                        [f"m3col-{split}-{i:03d}" for i in range(n)], captions=[[f"a {CLASSES[k]}"] for k in labels],
                        attributes=[fake_attributes(i, int(k)) for i, k in enumerate(labels)])
        write_split(root / "image", split, data)
        emb[f"{split}.image"] = torch.tensor(centre_i[labels] + rng.normal(0, 0.7, (n, 16))).half()
        emb[f"{split}.text"] = torch.tensor(centre_t[labels] + rng.normal(0, 0.7, (n, 8))).half()
    save_file(emb, str(root / "image" / "embeddings.safetensors"))
    (root / "manifest.json").write_text(json.dumps({"source": "shapes",
                                                    "ceiling": {"image": 0.9, "text": 0.8, "fused": 0.95}}) + "\n")
    return root


def write_params(path: Path, epochs: int = 3, share: float = 1 / 3, **image) -> Path:
    train = {"epochs": epochs, "batch_size": 8, "lr": 0.01, "threads": 1, "progress": False, "device": "cpu",
             **image.pop("train", {})}
    raw = {"m3col": {"loss": {"m3co_share": share},
                     "image": {"heads": {"dim": 8, "hidden": 16}, "train": train, **image}}}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("m3col")
    write_task(root / "data")
    write_params(root / "params.yaml")  # epochs 3, m3co_share 1/3: M3Co in epoch 1, SoftCLIP from 2
    write_params(root / "params-4.yaml", epochs=4, share=0.5)  # switch at 3: after the kill of the resume test
    return root


def stage(work: Path, out: str, params: str = "params.yaml", variant: str = "m3col", seed: int = 0,
          data: Path | None = None) -> list[str]:
    return ["m3col-image", "--params", str(work / params), "--variant", variant, "--seed", str(seed),
            "--data", str(data or work / "data"), "--out", str(work / out)]


def record_steps(monkeypatch) -> list[tuple[str, set]]:
    """Every training step's (phase, splits of its batch)."""
    steps = []
    original = Objective.__call__

    def recorded(self, model, batch):
        steps.append((self.phase, set(batch["split"])))
        return original(self, model, batch)

    monkeypatch.setattr(Objective, "__call__", recorded)
    return steps


# ----------------------------------------------------------------------------- the stage end to end


def test_the_image_stage_writes_its_outputs_and_switches_at_the_configured_epoch(work, monkeypatch):
    steps = record_steps(monkeypatch)
    assert cli(stage(work, "runs/e2e")) == 0
    out = work / "runs/e2e"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "history.jsonl", "model.safetensors", "result.json", "scores.safetensors", "state.json"]
    assert not (work / "runs/e2e.run").exists() and not (work / "runs/e2e.run.partial").exists()
    doc = json.loads((out / "result.json").read_text())
    assert set(doc) == {"task", "variant", "kind", "modalities", "seed", "source", "classes", "n", "epochs",
                        "best_epoch", "switch_epoch", "contrastive", "valid", "test", "per_class", "conditions",
                        "ceiling", "fingerprint"}
    assert (doc["task"], doc["variant"], doc["kind"], doc["seed"], doc["source"]) == ("image", "m3col", "fusion", 0, "shapes")
    assert doc["modalities"] == ["image", "text"] and doc["classes"] == CLASSES and doc["n"] == SIZES
    assert doc["epochs"] == 3 and doc["switch_epoch"] == 2 and doc["contrastive"] == "m3co>softclip"
    assert 1 <= doc["best_epoch"] <= 3 and re.fullmatch(r"[0-9a-f]{16}", doc["fingerprint"])
    assert doc["ceiling"] == {"image": 0.9, "text": 0.8, "fused": 0.95}
    assert 0.5 < doc["test"]["accuracy"] <= 1 and 0 < doc["test"]["macro_f1"] <= 1  # chance: 0.25
    assert 0.25 < doc["valid"]["accuracy"] <= 1

    # the schedule in the real run: history.jsonl and what each training step used
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in history] == ["m3co", "softclip", "softclip"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and all("seconds" not in h for h in history)
    assert all(set(h["train"]) == {"loss", "ce_fusion", "ce_image", "ce_text", "contrastive"} for h in history)
    assert doc["valid"] == history[doc["best_epoch"] - 1]["valid"]
    assert [p for p, _ in steps] == ["m3co"] * 5 + ["softclip"] * 10  # 40 / 8 steps per epoch
    assert all(splits == {"train"} for _, splits in steps)

    # what result.json says is what the stored scores give
    scores = load_file(str(out / "scores.safetensors"))
    logits, labels = scores["test.logits"], scores["test.labels"]
    assert logits.shape == (24, 4) and logits.dtype == torch.float32 and labels.shape == (24,)
    assert labels.tolist() == [i % 4 for i in range(24)]
    right = logits.argmax(1) == labels
    assert doc["test"]["accuracy"] == pytest.approx(float(right.float().mean()))
    assert len(doc["per_class"]) == len(CLASSES)
    for k, acc in enumerate(doc["per_class"]):
        assert acc == pytest.approx(float(right[labels == k].float().mean()))
    attrs = [fake_attributes(i, i % 4) for i in range(24)]
    masks = {"grey": [a["grey"] for a in attrs], "occluded": [a["occluded"] for a in attrs],
             "caption_no_colour": [not a["caption_colour"] for a in attrs],
             "caption_no_shape": [not a["caption_shape"] for a in attrs],
             "colour_lost_in_both": [a["grey"] and not a["caption_colour"] for a in attrs],
             "clean": [not (a["grey"] or a["occluded"]) and a["caption_colour"] and a["caption_shape"] for a in attrs]}
    assert set(doc["conditions"]) == set(masks)
    for name, mask in masks.items():
        mask = torch.tensor(mask)
        assert doc["conditions"][name]["n"] == int(mask.sum()) > 0, name
        assert doc["conditions"][name]["accuracy"] == pytest.approx(float(right[mask].float().mean())), name
    cond = doc["conditions"]
    assert cond["colour_lost_in_both"]["n"] <= min(cond["grey"]["n"], cond["caption_no_colour"]["n"])
    assert cond["clean"]["n"] + cond["grey"]["n"] + cond["occluded"]["n"] + cond["caption_no_colour"]["n"] \
        + cond["caption_no_shape"]["n"] >= 24  # every test image is clean or lost something
    # the model file holds the selected weights of the variant's model
    state = load_file(str(out / "model.safetensors"))
    assert {k.split(".")[1] for k in state if k.startswith("heads.")} == {"fusion", "image", "text"}


@pytest.mark.parametrize("variant,heads", [("image", {"image"}), ("concat", {"fusion"})])
def test_baseline_variants_train_their_own_heads_without_a_contrastive_term(work, variant, heads):
    assert cli(stage(work, f"runs/{variant}", variant=variant)) == 0
    doc = json.loads((work / f"runs/{variant}/result.json").read_text())
    assert doc["kind"] == ("unimodal" if variant == "image" else "fusion")
    assert doc["switch_epoch"] is None and doc["contrastive"] == "none"
    history = [json.loads(line) for line in (work / f"runs/{variant}/history.jsonl").read_text().splitlines()]
    assert all(h["phase"] == "none" and set(h["train"]) == {"loss", *(f"ce_{h}" for h in heads)} for h in history)
    state = load_file(str(work / f"runs/{variant}/model.safetensors"))
    assert {k.split(".")[1] for k in state if k.startswith("heads.")} == heads


def test_model_selection_reads_the_valid_split_only_once_per_evaluated_epoch(work, tmp_path, monkeypatch):
    from pipeline.m3col.params import load_m3col_params
    from pipeline.m3col.run import build_model, fit
    from pipeline.m3col.tasks import image_encoders, load_image

    steps = record_steps(monkeypatch)
    params = write_params(tmp_path / "params.yaml", epochs=3, train={"eval_every": 2})
    cfg = load_m3col_params(params)
    data = load_image(work / "data", "embeddings")
    model = build_model("m3col", data, lambda: image_encoders(data, "embeddings", cfg.image.heads), cfg.image.heads, 0)
    scorer = Scorer()
    result, _, used, _ = fit(model, data, cfg.image, cfg.loss, variant="m3col", seed=0, out=tmp_path / "sel",
                             key="m3col.image.train", scorer=scorer)
    assert used is scorer
    valid = [("valid", i) for i in range(SIZES["valid"])]
    assert scorer.read == valid * 2  # epochs 2 and 3 (eval_every 2, and the last)
    assert [("valid" in h) for h in result.history] == [False, True, True] and result.best_epoch in (2, 3)
    assert len(steps) == 15 and all(splits == {"train"} for _, splits in steps)


@pytest.fixture(scope="module")
def reference(work) -> Path:
    """An uninterrupted 4-epoch m3col run, in this process."""
    assert cli(stage(work, "runs/ref", "params-4.yaml")) == 0
    return work / "runs/ref"


FILES = ("model.safetensors", "result.json", "history.jsonl", "scores.safetensors", "state.json")


def test_same_params_and_seed_give_the_same_bytes(work, reference):
    assert cli(stage(work, "runs/again", "params-4.yaml")) == 0
    for name in FILES:
        assert (reference / name).read_bytes() == (work / "runs/again" / name).read_bytes(), name
    assert cli(stage(work, "runs/seed1", "params-4.yaml", seed=1)) == 0
    assert (reference / "model.safetensors").read_bytes() != (work / "runs/seed1/model.safetensors").read_bytes()
    phases = [json.loads(line)["phase"] for line in (reference / "history.jsonl").read_text().splitlines()]
    assert phases == ["m3co", "m3co", "softclip", "softclip"]


def slow_stage(argv: list[str]) -> None:
    """Subprocess entry: the stage's CLI with argv[0] seconds of sleep per training step (to be killed in time)."""
    pause, original = float(argv[0]), Objective.__call__

    def slow(self, model, batch):
        time.sleep(pause)
        return original(self, model, batch)

    Objective.__call__ = slow
    sys.exit(cli(argv[1:]))


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(work, reference, capsys):
    """kill -9 the stage process after its first epoch checkpoint (the M3Co -> SoftCLIP switch, epoch 3, still
    ahead); the re-run (in this process: one start-up less) resumes and ends with the reference run's files."""
    partial = work / "runs/killed.run.partial"
    cmd = stage(work, "runs/killed", "params-4.yaml")
    done = kill_at_first_checkpoint("test_m3col_track", 0.05, cmd, partial)
    assert not (work / "runs/killed/result.json").exists()  # nothing that looks finished
    assert 1 <= done < 4
    assert cli(cmd) == 0
    assert f"resuming after epoch {done}" in capsys.readouterr().out
    for name in FILES:
        assert (reference / name).read_bytes() == (work / "runs/killed" / name).read_bytes(), name
    assert not partial.exists() and not (work / "runs/killed.run").exists()


# ----------------------------------------------------------------------------- one-line errors


def bad_params(work: Path, name: str, edit) -> str:
    raw = yaml.safe_load((work / "params.yaml").read_text())
    edit(raw["m3col"])
    (work / name).write_text(yaml.safe_dump(raw))
    return name


PARAMS_ERRORS = [
    (lambda m: m["image"].update(variants=["speech"]), "params: m3col.image.variants[0]: 'speech': one of image, text"),
    (lambda m: m["loss"].update(mix_fraction=1.5), "params: m3col.loss.mix_fraction: must be a fraction in [0, 1]"),
    (lambda m: m.update(data={"image": {"source": "nope"}}), "params: m3col.data.image.source: 'nope': one of shapes"),
    (lambda m: m["image"]["train"].update(nope=1), "params: m3col.image.train.nope: unknown key"),
]


@pytest.mark.parametrize("edit,message", PARAMS_ERRORS)
def test_bad_params_are_one_line_errors(work, capsys, edit, message):
    name = bad_params(work, f"params-bad-{PARAMS_ERRORS.index((edit, message))}.yaml", edit)
    assert cli(stage(work, "runs/bad", name)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not (work / "runs/bad").exists() and not (work / "runs/bad.run").exists()


def test_a_variant_of_the_other_task_is_a_one_line_error(work, capsys):
    assert cli(stage(work, "runs/bad", variant="speech")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: params: m3col.image.variants: 'speech': one of image, text, concat, aux, clip, m3co, m3col"]
    assert not (work / "runs/bad").exists() and not (work / "runs/bad.run").exists()


def broken_copy(work: Path, tmp_path: Path, breakage: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(work / "data", data)
    if breakage == "manifest":
        (data / "manifest.json").unlink()
    else:
        t = load_file(str(data / "image/embeddings.safetensors"))
        t["valid.image"] = t["valid.image"][:-1].contiguous()
        save_file(t, str(data / "image/embeddings.safetensors"))
    return data


@pytest.mark.parametrize("breakage,message", [
    ("manifest", "/manifest.json: missing; run the prepare-m3col stage"),
    ("rows", "/image/embeddings.safetensors: valid.image has 23 rows for 24 images"),
])
def test_bad_data_is_a_one_line_error(work, tmp_path, capsys, breakage, message):
    data = broken_copy(work, tmp_path, breakage)
    assert cli(stage(work, "runs/bad", data=data)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {data}{message}"), err
    assert not (work / "runs/bad").exists()


def test_the_stage_process_exits_2_with_one_line_and_no_traceback(work, tmp_path):
    """The process itself (the tests above run the CLI in this process: same handler, one start-up each less)."""
    data = broken_copy(work, tmp_path, "manifest")
    cmd = stage(work, "runs/bad", bad_params(work, "params-bad-p.yaml", PARAMS_ERRORS[1][0]), data=data)
    message = PARAMS_ERRORS[1][1]  # the params are read before the data
    res = subprocess.run([sys.executable, "-m", "pipeline", *cmd], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}") and "Traceback" not in res.stderr, res.stderr
    assert not (work / "runs/bad").exists()


def fake_speech(root: Path, sizes: dict[str, int]) -> Path:
    """prepare-m3col's speech layout: rows, embeddings, classes and the manifest."""
    (root / "speech").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"source": "shapes", "ceiling": None}))
    for split, n in sizes.items():
        rows = [{"transcript": f"turn on {i}", "label": i % 2, "dropped": 0, "substituted": 0} for i in range(n)]
        (root / "speech" / f"{split}.json").write_text(json.dumps(rows))
    save_file({f"{s}.text": torch.randn(n, 4).half() for s, n in sizes.items()}, str(root / "speech/embeddings.safetensors"))
    (root / "speech/classes.json").write_text(json.dumps(["on", "off"]))
    return root


def test_speech_rows_not_matching_the_prepared_split_are_a_data_error(tmp_path):
    from pipeline.m3col.prepare import load_speech_task

    root = fake_speech(tmp_path / "m3col", {"train": 5, "valid": 3, "test": 2})
    task = load_speech_task(root, {"train": 5, "valid": 3, "test": 2})
    assert [len(task.rows[s]) for s in ("train", "valid", "test")] == [5, 3, 2]
    assert task.text["valid"].shape == (3, 4) and task.text["valid"].dtype == torch.float32
    assert task.classes == ["on", "off"]
    with pytest.raises(DataError) as exc:
        load_speech_task(root, {"train": 5, "valid": 4, "test": 2})
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{root}/speech/valid.json: 3 rows for 4 prepared valid utterances")


# ----------------------------------------------------------------------------- prepare: the task builders


@pytest.fixture(scope="module")
def vision(tmp_path_factory) -> Path:
    """A tiny prepare-vision folder with the shapes source."""
    from pipeline.data.params import ShapesConfig
    from pipeline.data.vision.output import write_source
    from pipeline.data.vision.shapes import make_shapes, table

    root = tmp_path_factory.mktemp("vision")
    cfg = ShapesConfig(n_train=60, n_valid=30, n_test=40)
    write_source(root / "shapes", make_shapes(cfg, 0, 32), table(cfg))
    return root


def shapes_cfg(**kw) -> ImageDataConfig:
    return ImageDataConfig(**{"n_train": 60, "n_valid": 30, "n_test": 40, **kw})


def same_split(a: ImageSet, b: ImageSet) -> bool:
    return (np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.ids == b.ids
            and a.captions == b.captions and a.attributes == b.attributes and a.class_names == b.class_names)


def test_shapes_task_labels_captions_flags_and_ceilings(vision):
    from pipeline.data.vision.imageset import read_split
    from pipeline.m3col.prepare import shapes_task

    splits, ceiling = shapes_task(vision, shapes_cfg(), 0)
    again, ceiling2 = shapes_task(vision, shapes_cfg(), 0)
    assert ceiling == ceiling2 and all(same_split(splits[s], again[s]) for s in splits)
    other, _ = shapes_task(vision, shapes_cfg(), 1)
    assert not np.array_equal(other["test"].images, splits["test"].images)
    colours, shapes = list(ATTRIBUTES["colour"])[:8], list(ATTRIBUTES["shape"])
    for split, n in (("train", 60), ("valid", 30), ("test", 40)):
        data, source = splits[split], read_split(vision / "shapes", split)
        assert len(data) == n and data.ids == source.ids
        assert len(data.class_names) == 64 and data.class_names[:2] == ["red circle", "orange circle"]
        assert data.class_names == [f"{c} {s}" for s in shapes for c in colours]
        for i, (a, src) in enumerate(zip(data.attributes, source.attributes)):
            assert (a["colour"], a["shape"]) == (src["colour"], src["shape"])
            assert data.class_names[data.labels[i]] == f"{src['colour']} {src['shape']}"
            assert len(data.captions[i]) == 1
            check_caption(data.captions[i][0], a["colour"], a["shape"], a["caption_colour"], a["caption_shape"])
        assert data.images.shape == source.images.shape and not np.array_equal(data.images, source.images)
    test = splits["test"].attributes
    grey, has_c, has_s = (np.array([a[k] for a in test]) for k in ("grey", "caption_colour", "caption_shape"))
    assert ceiling == {"image": corrupt.image_ceiling(grey, 8), "text": corrupt.text_ceiling(has_c, has_s, 8, 8),
                       "fused": corrupt.fused_ceiling(grey, has_c, has_s, 8)}
    assert 0 < ceiling["text"] < ceiling["fused"] <= 1 and ceiling["image"] < ceiling["fused"]
    # the grey images really are grey (no noise, no contrast change)
    plain, _ = shapes_task(vision, shapes_cfg(degrade=DegradeConfig(**PLAIN, greyscale=0.5, occlusion=0.0)), 0)
    g = np.array([a["grey"] for a in plain["train"].attributes])
    x = plain["train"].images.astype(int)
    assert 0 < g.sum() < 60 and (x[g, ..., 0] == x[g, ..., 2]).all() and (x[~g, ..., 0] != x[~g, ..., 2]).any()


def test_shapes_task_test_split_does_not_depend_on_n_train(vision, tmp_path):
    from pipeline.m3col.prepare import shapes_task

    full, ceiling = shapes_task(vision, shapes_cfg(), 0)
    fewer, ceiling2 = shapes_task(vision, shapes_cfg(n_train=25), 0)
    assert len(fewer["train"]) == 25 and ceiling == ceiling2
    assert same_split(full["test"], fewer["test"]) and same_split(full["valid"], fewer["valid"])
    everything, _ = shapes_task(vision, shapes_cfg(n_train=0), 0)  # 0: all of prepare-vision's split
    assert same_split(everything["train"], full["train"])
    (tmp_path / "shapes").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}/shapes/attributes.json: missing")):
        shapes_task(tmp_path, shapes_cfg(), 0)


def fake_prepared(root: Path) -> Path:
    """The prepare stage's meta/{split}.json (transcript, label_id) and tokenizer.json (classes)."""
    (root / "meta").mkdir(parents=True)
    rows = {"train": [("turn on the lights", 0), ("turn off the lights", 1), ("lights on", 0), ("switch lamp off", 1)] * 5,
            "valid": [("turn zzvalid on", 0), ("lamp off", 1)] * 4,
            "test": [("zztest the lights on", 0), ("off lights zztest", 1), ("lamp", 1)] * 4}
    for split, items in rows.items():
        (root / "meta" / f"{split}.json").write_text(json.dumps([{"transcript": t, "label_id": k, "speaker": "s"}
                                                                 for t, k in items]))
    (root / "tokenizer.json").write_text(json.dumps({"classes": ["on", "off"], "vocab": []}))
    return root


def test_speech_task_is_deterministic_keeps_labels_and_substitutes_from_the_training_vocabulary(tmp_path):
    from pipeline.m3col.prepare import speech_task

    prepared = fake_prepared(tmp_path / "prepared")
    meta = {s: json.loads((prepared / "meta" / f"{s}.json").read_text()) for s in ("train", "valid", "test")}
    cfg = TranscriptNoiseConfig()
    rows, classes = speech_task(prepared, cfg, 0)
    assert classes == ["on", "off"] and (rows, classes) == speech_task(prepared, cfg, 0)
    assert rows != speech_task(prepared, cfg, 1)[0]
    for split in ("train", "valid", "test"):
        assert [r["label"] for r in rows[split]] == [m["label_id"] for m in meta[split]]
        assert all(set(r) == {"transcript", "label", "dropped", "substituted"} and r["transcript"].split()
                   for r in rows[split])
    assert sum(r["dropped"] + r["substituted"] for s in rows for r in rows[s]) > 0
    vocab = {w for m in meta["train"] for w in m["transcript"].split()}
    every, _ = speech_task(prepared, TranscriptNoiseConfig(word_dropout=0.0, substitution=1.0), 0)
    for split in ("train", "valid", "test"):
        for r, m in zip(every[split], meta[split]):
            words = r["transcript"].split()
            assert len(words) == len(m["transcript"].split()) == r["substituted"] and set(words) <= vocab
    # the test split's own noise does not depend on the other splits (nor does the valid split's)
    fewer = tmp_path / "fewer"
    shutil.copytree(prepared, fewer)
    (fewer / "meta/valid.json").write_text(json.dumps(meta["valid"][:3]))
    assert speech_task(fewer, cfg, 0)[0]["test"] == rows["test"]


def test_speech_task_refuses_rows_without_a_transcript_in_one_line(tmp_path):
    from pipeline.m3col.prepare import speech_task

    prepared = fake_prepared(tmp_path / "prepared")
    for split in ("train", "test"):
        meta = json.loads((prepared / "meta" / f"{split}.json").read_text())
        good = json.dumps(meta)
        del meta[2]["transcript"]
        (prepared / "meta" / f"{split}.json").write_text(json.dumps(meta))
        with pytest.raises(DataError) as exc:
            speech_task(prepared, TranscriptNoiseConfig(), 0)
        assert str(exc.value) == f"{prepared}/meta/{split}.json: row 2 has no transcript or label_id"
        (prepared / "meta" / f"{split}.json").write_text(good)
