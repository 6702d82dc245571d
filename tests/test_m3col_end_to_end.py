"""The M3CoL image task with ``m3col.image.encoders: end_to_end`` (a CNN on the pixels, a word-level
Transformer on the captions, from scratch): on a tiny fake prepare-m3col folder the stage trains, writes its
output, switches M3Co -> SoftCLIP at the scheduled epoch, and repeats byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import ImageSet, write_split
from pipeline.m3col.params import LossConfig

COLOURS, SHAPES = ["red", "blue"], ["circle", "square"]
CLASSES = [f"{c} {s}" for s in SHAPES for c in COLOURS]
SIZES = {"train": 24, "valid": 8, "test": 8}
EPOCHS, SHARE = 2, 0.5


def fake_prepared(root: Path) -> Path:
    """prepare-m3col's layout: image/{split}.safetensors+.jsonl, classes.json, embeddings.safetensors, manifest."""
    rng = np.random.default_rng(0)
    emb = {}
    for k, (split, n) in enumerate(SIZES.items()):
        labels = np.arange(n, dtype=np.int64) % len(CLASSES)
        images = rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
        attrs, captions = [], []
        for i, y in enumerate(labels):
            colour, shape = CLASSES[y].split()
            images[i, 4:12, 4:12] = (200, 30, 30) if colour == "red" else (30, 30, 200)
            word = "testonly" if split == "test" else "a"  # never in a training caption: <unk>
            captions.append([f"{word} {colour} {shape}" if i % 3 else f"{word} {shape}"])
            attrs.append({"colour": colour, "shape": shape, "grey": False, "occluded": i % 4 == 0,
                          "caption_colour": bool(i % 3), "caption_shape": True})
        ids = [f"{split}-{i}" for i in range(n)]
        write_split(root / "image", split, ImageSet(images, labels, CLASSES, ids, captions=captions, attributes=attrs))
        gen = torch.Generator().manual_seed(k)
        emb[f"{split}.image"] = torch.randn(n, 8, generator=gen).half()
        emb[f"{split}.text"] = torch.randn(n, 6, generator=gen).half()
    save_file(emb, str(root / "image" / "embeddings.safetensors"))
    (root / "manifest.json").write_text(json.dumps({"source": "shapes", "ceiling": None}) + "\n")
    return root


def params_file(path: Path) -> Path:
    train = {"epochs": EPOCHS, "batch_size": 8, "eval_batch_size": 16, "threads": 1, "device": "cpu",
             "progress": False, "warmup": 0.0}
    raw = {"seeds": [0], "m3col": {"loss": {"m3co_share": SHARE},
                                   "image": {"encoders": "end_to_end", "heads": {"dim": 16, "hidden": 16},
                                             "train": train}}}
    path.write_text(yaml.safe_dump(raw))
    return path


def test_end_to_end_vocabulary_is_the_training_captions_and_enters_the_identity(tmp_path):
    from pipeline.m3col.tasks import load_image

    root = fake_prepared(tmp_path / "m3col")
    e2e, emb = load_image(root, "end_to_end"), load_image(root, "embeddings")
    assert e2e.digest != emb.digest and e2e.digest.startswith(emb.digest)
    assert e2e.extra["vocab"] == 2 + len({"a", *COLOURS, *SHAPES})  # <pad>, <unk>, the training words
    item = e2e.splits["test"][1]
    assert item["pixels"].dtype == torch.uint8 and tuple(item["pixels"].shape) == (16, 16, 3)
    assert item["tokens"][0] == 1  # "testonly": <unk>
    assert "pixels" not in emb.splits["train"][0]


def test_end_to_end_m3col_trains_writes_and_repeats_byte_for_byte(tmp_path):
    root = fake_prepared(tmp_path / "m3col")
    params = params_file(tmp_path / "params.yaml")
    outs = []
    for name in ("a", "b"):
        out = tmp_path / "models" / name
        assert cli(["m3col-image", "--params", str(params), "--variant", "m3col", "--seed", "0", "--data", str(root),
                    "--out", str(out)]) == 0
        outs.append(out)
    doc = json.loads((outs[0] / "result.json").read_text())
    assert doc["task"] == "image" and doc["variant"] == "m3col" and doc["epochs"] == EPOCHS
    assert 0.0 <= doc["test"]["accuracy"] <= 1.0 and doc["n"] == SIZES
    assert doc["switch_epoch"] == LossConfig(m3co_share=SHARE).m3co_epochs(EPOCHS) + 1 == 2
    phases = [json.loads(line)["phase"] for line in (outs[0] / "history.jsonl").read_text().splitlines()]
    assert phases == ["m3co", "softclip"]
    from safetensors.torch import load_file

    state = load_file(str(outs[0] / "model.safetensors"))
    assert any(k.startswith("encoders.image.convs.") for k in state)  # the CNN and the Transformer were trained
    assert any(k.startswith("encoders.text.layers.") for k in state)
    for name in ("model.safetensors", "scores.safetensors", "result.json", "history.jsonl"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
