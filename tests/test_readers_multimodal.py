"""The N24News and UPMC-Food-101 readers (pipeline.data.vision.readers_multimodal) on tiny fixtures written in
tmp_path in the released layouts; images are PNG bytes under .jpg names (PIL reads by content, lossless), each
one colour so its pixels say which row it came from. Every kind of bad data is one DataError line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.data.vision.readers import options_of, read_real
from pipeline.errors import DataError, ParamsError
from conftest import one_error

def write_image(path, value: int, size=(8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path, format="PNG")


def pixel(data, i) -> int:
    return int(data.images[i, 0, 0, 0])


# ----------------------------------------------------------------------------- N24News

SECTIONS = ["Health", "Books", "Art & Design"]


def n24_item(k: int, section: str, body_key: str = "body") -> dict:
    return {"section": section, "headline": f"headline {k}", "abstract": f"abstract {k}", "caption": f"caption {k}",
            body_key: f"body {k}", "image_id": f"img{k:03d}", "article_url": f"https://example.org/{k}"}


def write_n24(root, sizes=None) -> dict[str, list[dict]]:
    """train 6 items (2 per section), dev 3, test 3; item k's image is filled with value 10 * k."""
    splits, k = {"train": 6, "dev": 3, "test": 3}, 0
    items = {}
    for split, n in splits.items():
        items[split] = []
        for j in range(n):
            item = n24_item(k, SECTIONS[j % 3], "article" if k == 4 else "body")  # one item with "article" only
            write_image(root / "imgs" / f"{item['image_id']}.jpg", 10 * k, (sizes or {}).get(k, (8, 8)))
            items[split].append(item)
            k += 1
    save_n24(root, items)
    return items


def save_n24(root, items) -> None:
    (root / "news").mkdir(parents=True, exist_ok=True)
    for split, rows in items.items():
        (root / "news" / f"nytimes_{split}.json").write_text(json.dumps(rows), encoding="utf-8")


def test_n24news_splits_classes_ids_and_abstract_captions(tmp_path):
    write_n24(tmp_path)
    sets = read_real("n24news", tmp_path)
    assert list(sets) == ["train", "valid", "test"]
    assert [len(s) for s in sets.values()] == [6, 3, 3]
    for s in sets.values():
        assert s.class_names == ["Art & Design", "Books", "Health"]  # sorted over all three files
        assert s.images.shape[1:] == (8, 8, 3) and s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    train, valid, test = sets["train"], sets["valid"], sets["test"]
    assert train.ids == [f"img{k:03d}" for k in range(6)]
    assert valid.ids == ["img006", "img007", "img008"] and test.ids == ["img009", "img010", "img011"]
    assert [train.class_names[y] for y in train.labels] == SECTIONS * 2
    assert train.captions == [[f"abstract {k}"] for k in range(6)]
    assert [pixel(test, i) for i in range(3)] == [90, 100, 110]  # each id with its own image


@pytest.mark.parametrize("field", ["headline", "caption", "abstract", "body"])
def test_n24news_text_field_picks_the_caption(tmp_path, field):
    write_n24(tmp_path)
    sets = read_real("n24news", tmp_path, text_field=field)
    assert sets["train"].captions == [[f"{field} {k}"] for k in range(6)]  # body: item 4 has only "article"
    assert sets["test"].captions[0] == [f"{field} 9"]


def test_n24news_resizes_mixed_sizes_only_when_asked(tmp_path):
    write_n24(tmp_path, sizes={7: (12, 10)})
    one_error(lambda: read_real("n24news", tmp_path), "img007.jpg", "image_size")
    sets = read_real("n24news", tmp_path, image_size=16)
    assert all(s.images.shape[1:] == (16, 16, 3) for s in sets.values())
    assert read_real("n24news", tmp_path, image_size=[6, 10])["valid"].images.shape == (3, 6, 10, 3)


def test_n24news_bad_data_is_one_line_naming_the_file(tmp_path):
    items = write_n24(tmp_path)
    news = tmp_path / "news"
    dev = news / "nytimes_dev.json"

    dev.unlink()
    one_error(lambda: read_real("n24news", tmp_path), dev, "missing")
    dev.write_text('{"section": "Health"}')
    one_error(lambda: read_real("n24news", tmp_path), dev, "JSON list")
    dev.write_text("[{,")
    one_error(lambda: read_real("n24news", tmp_path), dev, "unreadable")

    def broken(change, *names):
        rows = json.loads(json.dumps(items["dev"]))
        change(rows[1])
        save_n24(tmp_path, {"dev": rows})
        one_error(lambda: read_real("n24news", tmp_path), dev, "[1]", *names)

    broken(lambda r: r.pop("section"), "'section'")
    broken(lambda r: r.pop("image_id"), "'image_id'")
    broken(lambda r: r.pop("abstract"), "'abstract'", "img007")
    broken(lambda r: r.update(abstract="   "), "empty", "img007")
    broken(lambda r: r.update(image_id="img000"), "given twice", "nytimes_train.json[0]")
    broken(lambda r: r.update(image_id="nothere"), "nothere.jpg", "missing")
    save_n24(tmp_path, {"dev": items["dev"]})
    (tmp_path / "imgs" / "img010.jpg").unlink()  # a missing image named with its row and id
    one_error(lambda: read_real("n24news", tmp_path), news / "nytimes_test.json", "[1]", "img010")
    items["test"][1].pop("body")
    save_n24(tmp_path, {"test": items["test"]})
    one_error(lambda: read_real("n24news", tmp_path, text_field="body"), "nytimes_test.json[1]", "'article'")
    write_image(tmp_path / "imgs" / "img010.jpg", 100)
    (tmp_path / "imgs" / "img003.jpg").write_bytes(b"not an image")
    one_error(lambda: read_real("n24news", tmp_path, text_field="headline"), "img003.jpg", "unreadable")


def test_n24news_options(tmp_path):
    write_n24(tmp_path)
    assert options_of("n24news") == ["text_field", "image_size", "seed"]
    with pytest.raises(ParamsError, match="text_field"):
        read_real("n24news", tmp_path, text_field="title")
    with pytest.raises(ParamsError, match="valid_fraction"):
        read_real("n24news", tmp_path, valid_fraction=0.2)  # the dev file is the valid split
    with pytest.raises(ParamsError, match="skip_missing"):
        read_real("n24news", tmp_path, skip_missing=True)


# ----------------------------------------------------------------------------- UPMC-Food-101

FOODS = ["apple_pie", "sushi", "beef_tartare"]
TRICKY = 'Apple pie, "the best" recipe, ever'


def write_food(root, n_train=4, n_test=2) -> dict[str, list[list[str]]]:
    """n_train, n_test images per class; image values differ per (split, class, index)."""
    rows = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for c, cls in enumerate(FOODS):
            for i in range(n):
                name = f"{cls}_{i}.jpg"
                write_image(root / "images" / split / cls / name, (100 if split == "test" else 0) + 10 * c + i)
                text = TRICKY if (split, c, i) == ("train", 0, 1) else f"{cls} recipe {split} {i}"
                rows[split].append([name, text, cls])
    save_food(root, rows)
    return rows


def save_food(root, rows) -> None:
    (root / "texts").mkdir(parents=True, exist_ok=True)
    for split, r in rows.items():
        with open(root / "texts" / f"{split}_titles.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(r)


def test_food101_splits_classes_ids_and_csv_texts(tmp_path):
    write_food(tmp_path)
    assert '"Apple pie, ""the best"" recipe, ever"' in (tmp_path / "texts" / "train_titles.csv").read_text()
    sets = read_real("food101", tmp_path, valid_fraction=0.25, seed=3)
    assert list(sets) == ["train", "valid", "test"]
    assert [len(s) for s in sets.values()] == [9, 3, 6]
    for s in sets.values():
        assert s.class_names == ["apple_pie", "beef_tartare", "sushi"]
        assert s.images.shape[1:] == (8, 8, 3)
        assert s.extra["skipped"] == 0
        for i, image_id in enumerate(s.ids):  # label, image and caption all belong to the id
            split, cls, name = image_id.split("/")
            index = int(name.rsplit("_", 1)[1].split(".")[0])
            assert s.class_names[s.labels[i]] == cls and name == f"{cls}_{index}.jpg"
            assert pixel(s, i) == (100 if split == "test" else 0) + 10 * FOODS.index(cls) + index
            assert s.captions[i] == [TRICKY if (split, cls, index) == ("train", "apple_pie", 1)
                                     else f"{cls} recipe {split} {index}"]
    assert sets["test"].ids[:2] == ["test/apple_pie/apple_pie_0.jpg", "test/apple_pie/apple_pie_1.jpg"]
    assert all(i.startswith("train/") for s in ("train", "valid") for i in sets[s].ids)
    assert TRICKY in [c[0] for s in ("train", "valid") for c in sets[s].captions]


def test_food101_valid_draw_is_seeded_and_disjoint(tmp_path):
    write_food(tmp_path, n_train=10)
    a = read_real("food101", tmp_path, seed=5, valid_fraction=0.2)
    b = read_real("food101", tmp_path, seed=5, valid_fraction=0.2)
    c = read_real("food101", tmp_path, seed=6, valid_fraction=0.2)
    assert len(a["valid"]) == 6 and len(a["train"]) == 24
    assert a["valid"].ids == b["valid"].ids and a["train"].ids == b["train"].ids
    assert np.array_equal(a["valid"].images, b["valid"].images)
    assert a["valid"].ids != c["valid"].ids
    assert not set(a["valid"].ids) & set(a["train"].ids)
    assert sorted(a["valid"].ids + a["train"].ids) == sorted(f"train/{c}/{c}_{i}.jpg" for c in FOODS for i in range(10))
    default = read_real("food101", tmp_path)  # valid_fraction 0.1, seed 0
    assert [len(s) for s in default.values()] == [27, 3, 6]


def test_food101_resize_header_and_multiline_text(tmp_path):
    rows = write_food(tmp_path)
    write_image(tmp_path / "images" / "test" / "sushi" / "sushi_1.jpg", 7, (10, 12))
    one_error(lambda: read_real("food101", tmp_path), "sushi_1.jpg", "image_size")
    assert read_real("food101", tmp_path, image_size=4)["test"].images.shape == (6, 4, 4, 3)
    rows["test"] = [["image_path", "text", "food"]] + rows["test"]  # a header row is tolerated
    rows["test"][1][1] = "two\nlines, one text"
    save_food(tmp_path, rows)
    test = read_real("food101", tmp_path, image_size=8)["test"]
    assert len(test) == 6 and test.captions[0] == ["two\nlines, one text"]


def test_food101_missing_images_error_or_skip(tmp_path):
    write_food(tmp_path)
    (tmp_path / "images" / "train" / "sushi" / "sushi_2.jpg").unlink()
    (tmp_path / "images" / "test" / "apple_pie" / "apple_pie_0.jpg").unlink()
    train_csv = tmp_path / "texts" / "train_titles.csv"
    one_error(lambda: read_real("food101", tmp_path), f"{train_csv}:7", "sushi_2.jpg", "missing", "skip_missing")
    sets = read_real("food101", tmp_path, skip_missing=True)
    assert [len(s) for s in sets.values()] == [10, 1, 5]
    assert all(s.extra["skipped"] == 2 for s in sets.values())
    assert sets["test"].extra["skipped_by_file"] == {"train_titles.csv": 1, "test_titles.csv": 1}
    assert "train/sushi/sushi_2.jpg" not in sets["train"].ids + sets["valid"].ids
    assert "test/apple_pie/apple_pie_0.jpg" not in sets["test"].ids


def test_food101_bad_data_is_one_line_naming_the_file(tmp_path):
    rows = write_food(tmp_path)
    test_csv = tmp_path / "texts" / "test_titles.csv"

    def broken(change, *names):
        r = [list(x) for x in rows["test"]]
        change(r)
        save_food(tmp_path, {"test": r})
        one_error(lambda: read_real("food101", tmp_path), test_csv, *names)

    broken(lambda r: r[2].append("extra"), ":3", "3 fields")
    broken(lambda r: r[2].__setitem__(1, " "), ":3", "empty text")
    broken(lambda r: r.append(list(r[0])), ":7", "given twice")
    broken(lambda r: r[3].__setitem__(2, "../train"), ":4", "class")
    broken(lambda r: r[3].__setitem__(2, "pizza"), ":4", "images/test/pizza/sushi_1.jpg", "missing")
    save_food(tmp_path, {"test": rows["test"]})
    test_csv.write_bytes(b"apple_pie_0.jpg,caf\xe9,apple_pie\n")
    one_error(lambda: read_real("food101", tmp_path), test_csv, "UTF-8")
    test_csv.unlink()
    one_error(lambda: read_real("food101", tmp_path), test_csv, "missing")
    one_error(lambda: read_real("food101", tmp_path / "nowhere"), "nowhere", "missing")


def test_food101_options(tmp_path):
    write_food(tmp_path)
    assert options_of("food101") == ["image_size", "valid_fraction", "seed", "skip_missing"]
    for bad in ({"text_field": "abstract"}, {"test_fraction": 0.1}, {"images": "x"}):
        with pytest.raises(ParamsError, match="unknown option"):
            read_real("food101", tmp_path, **bad)
    with pytest.raises(ParamsError, match="valid_fraction"):
        read_real("food101", tmp_path, valid_fraction=1.5)
    with pytest.raises(ParamsError, match="skip_missing"):
        read_real("food101", tmp_path, skip_missing="yes")
    with pytest.raises(ParamsError, match="image_size"):
        read_real("food101", tmp_path, image_size=0)


def test_prepare_vision_params_accept_the_two_kinds():
    from pipeline.data.params import RealConfig
    from pipeline.stages.prepare_vision import real_options

    assert real_options(RealConfig(kind="n24news", root="/x", text_field="body")) == {
        "image_size": None, "text_field": "body"}
    assert real_options(RealConfig(kind="food101", root="/x", skip_missing=True)) == {
        "image_size": None, "valid_fraction": 0.1, "skip_missing": True}
    with pytest.raises(ParamsError, match="vision.real.skip_missing"):
        real_options(RealConfig(kind="n24news", root="/x", skip_missing=True))
    with pytest.raises(ParamsError, match="vision.real.text_field"):
        real_options(RealConfig(kind="imagefolder", root="/x", text_field="caption"))
