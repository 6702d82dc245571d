"""The M3CoL image + text task on a real dataset by path: a constructed N24News copy goes through
prepare-m3col (the real frozen towers) and a training stage, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.__main__ import main as cli
from pipeline.data.vision.imageset import read_split

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["Health", "Books", "Sports"]


def write_n24news(root: Path, per_split: dict[str, int]) -> None:
    """Each section's images carry its own colour and its texts its own words, so the task is learnable."""
    colours = {"Health": (200, 40, 40), "Books": (40, 200, 40), "Sports": (40, 40, 200)}
    (root / "news").mkdir(parents=True)
    (root / "imgs").mkdir()
    k = 0
    for split, n in per_split.items():
        rows = []
        for j in range(n):
            section = SECTIONS[j % 3]
            image_id = f"n{k:04d}"
            px = np.full((20, 24, 3), colours[section], dtype=np.uint8)  # sizes differ from image_size: resized
            Image.fromarray(px).save(root / "imgs" / f"{image_id}.jpg", format="PNG")
            rows.append({"section": section, "headline": f"{section.lower()} news {k}", "abstract": f"about {section}",
                         "caption": f"photo {k}", "image_id": image_id})
            k += 1
        (root / "news" / f"nytimes_{split}.json").write_text(json.dumps(rows))


def write_prepared(root: Path) -> None:
    """The speech side prepare-m3col also builds: metadata and classes only (no audio is read there)."""
    (root / "meta").mkdir(parents=True)
    for split, n in (("train", 6), ("valid", 3), ("test", 3)):
        rows = [{"transcript": f"turn {'on' if i % 2 else 'off'} the lights", "label_id": i % 2} for i in range(n)]
        (root / "meta" / f"{split}.json").write_text(json.dumps(rows))
    (root / "tokenizer.json").write_text(json.dumps({"classes": ["off", "on"], "words": []}))


def test_n24news_by_path_through_prepare_m3col_and_a_training_stage(tmp_path):
    write_n24news(tmp_path / "n24", {"train": 30, "dev": 9, "test": 9})
    write_prepared(tmp_path / "prepared")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["towers"]["threads"] = 1
    raw["m3col"]["data"]["image"].update(source="n24news", root=str(tmp_path / "n24"), text_field="headline",
                                         image_size=32, n_train=0, n_valid=0, n_test=0)
    raw["m3col"]["image"]["train"].update(epochs=2, batch_size=8, threads=1, progress=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    data = tmp_path / "m3col"
    assert cli(["prepare-m3col", "--params", str(params), "--vision", str(tmp_path / "none"), "--prepared",
                str(tmp_path / "prepared"), "--out", str(data), "--timing", str(tmp_path / "t.json"), "--no-progress"]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["source"] == "n24news" and manifest["ceiling"] is None
    assert manifest["n"]["image"] == {"train": 30, "valid": 9, "test": 9}
    test = read_split(data / "image", "test")
    assert test.class_names == sorted(SECTIONS) and test.images.shape == (9, 32, 32, 3)
    assert [c[0] for c in test.captions][:2] == ["health news 39", "books news 40"]  # the headline, one per image
    out = tmp_path / "run"
    assert cli(["m3col-image", "--params", str(params), "--variant", "m3col", "--seed", "0", "--data", str(data),
                "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "n24news" and result["classes"] == sorted(SECTIONS)
    assert result["conditions"] == {}  # a real source records no degradations
    assert result["test"]["accuracy"] == 1.0  # colour and words both name the section
