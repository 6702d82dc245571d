"""Frozen towers (MiniLM text, EfficientNet-Lite0 image), their fingerprints, and the embed stage's cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.__main__ import main as cli
from pipeline.core.params import section
from pipeline.data.embeddings import load_embeddings, read_manifest
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.errors import DataError, ParamsError
from pipeline.models.params import EmbedConfig, ImageTowerConfig, TextTowerConfig, TowersConfig
from pipeline.models.towers import fingerprints
from pipeline.models.towers_image import ImageTower, image_fingerprint, weights_file
from pipeline.models.towers_text import TextTower, text_fingerprint, text_folder


@pytest.fixture(scope="module")
def text_tower():
    return TextTower(TextTowerConfig())


@pytest.fixture(scope="module")
def image_tower():
    return ImageTower(ImageTowerConfig(input_size=224, crop_pct=0.875))  # timm's eval transform


def test_minilm_known_cosine(text_tower):
    e = text_tower.encode(["turn on the kitchen lights", "switch on the lights in the kitchen"])
    assert e.shape == (2, 384) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert round(float(e[0] @ e[1]), 3) == 0.886  # what sentence-transformers gives for this pair


def test_text_tower_agrees_with_sentence_transformers(text_tower):
    """The peer library's sentence embeddings of the same packaged model (mean pooling, normalised)."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["turn on the kitchen lights", "a tiny crimson triangle on the left", "yes", "decrease the heat in the bedroom"]
    ref = st.SentenceTransformer(str(text_folder(TextTowerConfig())), device="cpu").encode(texts, normalize_embeddings=True)
    assert torch.allclose(text_tower.encode(texts), torch.from_numpy(ref), atol=1e-5)


def test_text_order_kept_whatever_the_batching(text_tower):
    texts = ["a red circle", "bring me the newspaper from the kitchen table please", "yes", "a blue star"]
    batched = text_tower.encode(texts)
    for i, t in enumerate(texts):
        assert torch.allclose(batched[i], text_tower.encode([t])[0], atol=1e-5)


@pytest.mark.parametrize("photo, label", [("chelsea", "tabby, tabby cat"), ("coffee", "espresso")])
def test_image_tower_top1(image_tower, photo, label):
    from skimage import data
    from timm.data import ImageNetInfo

    with torch.no_grad():
        top = int(image_tower.logits(getattr(data, photo)()[None]).argmax())
    assert ImageNetInfo().index_to_description(top) == label


def test_image_tower_features_and_pooled(image_tower):
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        assert image_tower.features(x).shape == (2, 1280, 7, 7)
        assert image_tower.pooled(x).shape == (2, 1280)
    e = image_tower.encode(x)
    assert e.shape == (2, 1280) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)


def test_fingerprints_follow_weights_and_settings(tmp_path):
    text, image = TextTowerConfig(), ImageTowerConfig()
    assert text_fingerprint(text) == text_fingerprint(TextTowerConfig(batch_size=7))  # rounding only
    assert text_fingerprint(text) != text_fingerprint(TextTowerConfig(max_tokens=32))
    assert image_fingerprint(image) != image_fingerprint(ImageTowerConfig(input_size=96))
    assert image_fingerprint(image) == image_fingerprint(ImageTowerConfig(batch_size=7))
    # the same weights elsewhere: the same fingerprint; one byte changed: another
    copy = tmp_path / "lite0.pth"
    shutil.copy(weights_file(image), copy)
    assert image_fingerprint(ImageTowerConfig(weights=str(copy))) == image_fingerprint(image)
    with open(copy, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert image_fingerprint(ImageTowerConfig(weights=str(copy))) != image_fingerprint(image)
    folder = tmp_path / "minilm"
    shutil.copytree(text_folder(text), folder)
    assert text_fingerprint(TextTowerConfig(path=str(folder))) == text_fingerprint(text)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-6}))
    assert text_fingerprint(TextTowerConfig(path=str(folder))) != text_fingerprint(text)


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg


def test_bad_towers_are_one_line_naming_the_key(tmp_path):
    with pytest.raises(ParamsError) as exc:
        text_fingerprint(TextTowerConfig(path=str(tmp_path / "nowhere")))
    one_line(exc, "towers.text.path", "nowhere")
    with pytest.raises(ParamsError) as exc:
        image_fingerprint(ImageTowerConfig(weights=str(tmp_path / "missing.pth")))
    one_line(exc, "towers.image.weights", "missing.pth")
    with pytest.raises(ParamsError) as exc:
        ImageTower(ImageTowerConfig(model="no_such_net"))
    one_line(exc, "towers.image.model", "no_such_net")
    with pytest.raises(ParamsError) as exc:
        ImageTower(ImageTowerConfig(dim=512))
    one_line(exc, "towers.image.dim", "512", "1280")
    with pytest.raises(ParamsError) as exc:
        ImageTower(ImageTowerConfig(model="resnet18"))  # no packaged weights for it
    one_line(exc, "towers.image.weights", "resnet18")
    with pytest.raises(ParamsError) as exc:
        TextTower(TextTowerConfig(dim=768))
    one_line(exc, "towers.text.dim", "768", "384")
    bad = tmp_path / "bad.pth"
    torch.save({"a": torch.zeros(3)}, bad)
    with pytest.raises(DataError) as exc:
        ImageTower(ImageTowerConfig(weights=str(bad)))
    one_line(exc, "towers.image.weights", "1 tensors")
    with pytest.raises(ParamsError) as exc:
        section({"towers": {"text": {"max_tokens": 0}}}, TowersConfig, "towers")
    one_line(exc, "towers.text.max_tokens")
    with pytest.raises(ParamsError) as exc:
        section({"embed": {"intent_template": "{verb}"}}, EmbedConfig, "embed")
    one_line(exc, "embed.intent_template")


def test_weights_paired_in_order_check_shapes(tmp_path):
    from pipeline.models.towers_image import match_state_dict

    target = {"a.w": torch.zeros(2, 3), "a.b": torch.zeros(2)}
    assert match_state_dict(target, {"x": torch.ones(2, 3), "y": torch.ones(2)}, "f")["a.b"].sum() == 2
    with pytest.raises(DataError) as exc:
        match_state_dict(target, {"x": torch.ones(2), "y": torch.ones(2, 3)}, "f")
    one_line(exc, "towers.image.weights", "tensor 0")


# ----------------------------------------------------------------------------- the stage


def write_inputs(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        caps = [[f"a {c} circle", "a round shape"] for c in rng.choice(["red", "blue"], n)]
        write_split(root / "vision" / "shapes", split, ImageSet(
            rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 2, ["circle", "big_square"],
            [f"shapes-{split}-{i}" for i in range(n)], captions=caps))
    write_split(root / "vision" / "digits", "train", ImageSet(
        rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), np.arange(4) % 2, ["0", "1"], [f"d{i}" for i in range(4)]))
    (root / "prepared" / "meta").mkdir(parents=True)
    for split, texts in (("train", ["turn on the lights", "lamp off", "turn on the lights"]), ("valid", ["lamp off"]),
                         ("test", ["bring me my shoes"])):
        (root / "prepared" / "meta" / f"{split}.json").write_text(
            json.dumps([{"uid": f"{split}{i}", "transcript": t} for i, t in enumerate(texts)]))
    params = {"towers": {"text": {"batch_size": 4}, "image": {"input_size": 32, "batch_size": 4}, "device": "cpu",
                         "threads": 1},
              "embed": {"keywords": ["yes", "no", "yes"]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_embed(root: Path, out: str) -> int:
    return cli(["embed", "--params", str(root / "params.yaml"), "--vision", str(root / "vision"), "--prepared",
                str(root / "prepared"), "--out", str(root / out), "--timing", str(root / f"{out}-timing.json"),
                "--no-progress"])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    write_inputs(root)
    assert run_embed(root, "a") == 0 and run_embed(root, "b") == 0
    return root


def test_embed_stage_sets(embedded):
    out = embedded / "a"
    cfg = section(yaml.safe_load((embedded / "params.yaml").read_text()), TowersConfig, "towers")
    prints = fingerprints(cfg)
    manifest = read_manifest(out)
    assert manifest["towers"] == prints
    assert sorted(manifest["sets"]) == sorted(
        ["text/captions-shapes", "text/classes-shapes", "text/classes-digits", "text/transcripts", "text/intents",
         "text/keywords", "image/shapes-train", "image/shapes-test", "image/digits-train"])
    img = load_embeddings(out, "image", "shapes-train", prints["image"])
    assert img.emb.dtype == torch.float16 and img.emb.shape == (6, 1280) and img.ids[0] == "shapes-train-0"
    caps = load_embeddings(out, "text", "captions-shapes", prints["text"])
    assert len(caps) == len(set(caps.ids)) == 3  # "a red circle", "a blue circle", "a round shape": once each
    assert [caps.ids[r] for r in caps.refs["shapes-test-2"]][1] == "a round shape"
    tr = load_embeddings(out, "text", "transcripts")
    assert tr.emb.shape == (3, 384) and tr.refs["train"] == [0, 1, 0] and tr.refs["valid"] == [1]
    intents = load_embeddings(out, "text", "intents")
    texts = dict(zip(intents.ids, intents.texts))
    assert len(texts) == 31 and texts["activate_lights_kitchen"] == "activate the lights in the kitchen"
    assert texts["bring_socks_none"] == "bring the socks"
    assert load_embeddings(out, "text", "keywords").ids == ["yes", "no"]
    classes = load_embeddings(out, "text", "classes-shapes")
    assert classes.texts == ["a circle", "a big square"] and classes.ids == ["circle", "big_square"]
    assert load_embeddings(out, "text", "classes-digits").texts == ["the digit 0", "the digit 1"]
    # one string, one embedding across sets ("lamp off" is a transcript only; "yes" a keyword only: check rows)
    assert torch.equal(caps.rows(["a round shape"]), caps.emb[caps.index()["a round shape"]][None])


def test_embed_stage_is_deterministic(embedded):
    a, b = embedded / "a", embedded / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_cache_refuses_another_tower(embedded):
    changed = fingerprints(TowersConfig(text=TextTowerConfig(max_tokens=16), image=ImageTowerConfig(input_size=48)))
    stored = read_manifest(embedded / "a")["towers"]
    assert changed["text"] != stored["text"] and changed["image"] != stored["image"]  # the cache is invalidated
    for tower, set_name in (("text", "intents"), ("image", "digits-train")):
        with pytest.raises(DataError) as exc:
            load_embeddings(embedded / "a", tower, set_name, changed[tower])
        one_line(exc, f"towers.{tower}", "dvc repro embed")


def test_embed_stage_bad_inputs_one_line(embedded, tmp_path, capsys):
    root = tmp_path
    shutil.copytree(embedded / "vision", root / "vision")
    (root / "prepared").mkdir()
    shutil.copy(embedded / "params.yaml", root / "params.yaml")
    assert run_embed(root, "out") == 2  # no prepared meta
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "meta/train.json" in err and not (root / "out").exists()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["towers"]["image"]["weights"] = str(root / "nope.pth")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_embed(root, "out") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "towers.image.weights" in err
