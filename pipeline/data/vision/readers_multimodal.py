"""Image-text classification datasets of the M3CoL fusion track: N24News and UPMC-Food-101, as released.

**N24News** (Wang et al., LREC 2022; ``root`` is the dataset folder)::

    news/nytimes_train.json   a JSON list of news items: {"section": "Health", "headline": ..., "abstract": ...,
    news/nytimes_dev.json       "caption": ..., "image_id": "...", "body" (or "article"): ...}
    news/nytimes_test.json
    imgs/<image_id>.jpg

The three files are train, valid (dev) and test. The class is ``section`` (24 of them); classes are the
sorted sections over all three files, the same list for every split. Option ``text_field`` (``headline``,
``caption``, ``abstract`` (the default) or ``body``: the ``body`` key, else ``article``) picks the text that
becomes each image's single caption (whitespace stripped; an empty one is an error). Ids are the
``image_id`` values, unique over the three files. ``seed`` is accepted (as by every reader) but unused:
nothing is drawn.

**UPMC-Food-101** (Wang et al. 2015; ``root`` is the dataset folder, as distributed)::

    images/{train,test}/<class>/<filename>      e.g. images/train/apple_pie/apple_pie_0.jpg
    texts/train_titles.csv, texts/test_titles.csv

CSV rows, no header, ``filename,text,class`` (read by the csv module: a quoted text may hold commas, quotes
and newlines; a first row whose filename is not an image file name is taken for a header and skipped). The
image of a row is ``images/<split>/<class>/<filename>``. train and test are the files; valid is a seeded
(``seed``) ``valid_fraction`` of train. Classes are the sorted class names over both files. Ids are
``<split>/<class>/<filename>`` (``train/apple_pie/apple_pie_0.jpg``). A row whose image is missing is an
error naming the CSV line and the image (M3CoL drops such pairs before training); with ``skip_missing``
those rows are left out instead, and every split's ``extra["skipped"]`` is how many were (over both files;
``extra["skipped_by_file"]`` per file).

Both: option ``image_size`` (None: all sizes must agree, as in the other readers; an int side or
[height, width]: resize). Images are decoded and converted to RGB by PIL. Bad data is one
:class:`~pipeline.errors.DataError` line naming the file (and the row or line, and the image).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_common import IMAGE_SUFFIXES, check_image_size, finish_splits, load_images
from pipeline.errors import DataError, ParamsError, one_line

N24_FILES = {"train": "nytimes_train.json", "valid": "nytimes_dev.json", "test": "nytimes_test.json"}
N24_TEXT_FIELDS = ("headline", "caption", "abstract", "body")
FOOD_FILES = {"train": "train_titles.csv", "test": "test_titles.csv"}


def assemble(rows: list[tuple[str, str, str, str, Path]], size) -> dict[str, ImageSet]:
    """``{split: ImageSet}`` from rows ``(split, class name, id, caption, image path)``; the images are loaded
    in one call, so every split must share the image size (unless ``size`` resizes them)."""
    classes = sorted({r[1] for r in rows})
    index = {c: k for k, c in enumerate(classes)}
    images = load_images([r[4] for r in rows], size)
    labels = np.array([index[r[1]] for r in rows], dtype=np.int64)
    everything = ImageSet(images, labels, classes, [r[2] for r in rows], captions=[[r[3]] for r in rows])
    order = list(dict.fromkeys(r[0] for r in rows))
    return {s: everything.subset([i for i, r in enumerate(rows) if r[0] == s]) for s in order}


# ----------------------------------------------------------------------------- N24News


def n24_items(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"{path}: missing (N24News split file; expected news/{'|'.join(N24_FILES.values())})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable N24News JSON ({one_line(exc)})") from None
    if not isinstance(doc, list):
        raise DataError(f"{path}: expected a JSON list of news items, got {type(doc).__name__}")
    return doc


def n24_text(item: dict, text_field: str, where: str) -> str:
    keys = ("body", "article") if text_field == "body" else (text_field,)
    key = next((k for k in keys if k in item), None)
    if key is None:
        raise DataError(f"{where}: missing key {' or '.join(repr(k) for k in keys)} (text_field {text_field})")
    text = item[key]
    if not isinstance(text, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{where}: empty {key!r} (text_field {text_field})")
    return text.strip()


def read_n24news(root: Path, *, text_field: str = "abstract", image_size=None, seed: int = 0) -> dict[str, ImageSet]:
    del seed  # the three splits are given: nothing to draw
    if text_field not in N24_TEXT_FIELDS:
        raise ParamsError(f"read_real(n24news): text_field must be one of {', '.join(N24_TEXT_FIELDS)}, "
                          f"got {text_field!r}")
    size = check_image_size(image_size, "n24news")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the N24News folder holding news/ and imgs/)")
    rows, seen = [], {}  # seen: image id -> where it was first given
    for split, name in N24_FILES.items():
        path = root / "news" / name
        for i, item in enumerate(n24_items(path)):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(item).__name__}")
            for key in ("section", "image_id"):
                if key not in item:
                    raise DataError(f"{where}: missing key {key!r}")
            section, image_id = item["section"], item["image_id"]
            if not isinstance(section, str) or not section.strip():
                raise DataError(f"{where}: 'section' must be a non-empty string, got {section!r}")
            if isinstance(image_id, bool) or not isinstance(image_id, (str, int)) or not str(image_id).strip():
                raise DataError(f"{where}: 'image_id' must be a non-empty string, got {image_id!r}")
            image_id = str(image_id)
            if "/" in image_id or "\\" in image_id or image_id.startswith("."):
                raise DataError(f"{where}: image_id {image_id!r} is not a file name")
            if image_id in seen:
                raise DataError(f"{where}: image_id {image_id} given twice (first at {seen[image_id]})")
            seen[image_id] = where
            text = n24_text(item, text_field, f"{where} (image_id {image_id})")
            image = root / "imgs" / f"{image_id}.jpg"
            if not image.is_file():
                raise DataError(f"{where}: image {image} missing (image_id {image_id})")
            rows.append((split, section, image_id, text, image))
    if not rows:
        raise DataError(f"{root / 'news'}: no news items in {', '.join(N24_FILES.values())}")
    return finish_splits(assemble(rows, size), 0.0, 0.0, 0)


# ----------------------------------------------------------------------------- UPMC-Food-101


def food_rows(path: Path) -> list[tuple[str, list[str]]]:
    """``("<file>:<line>", [filename, text, class])`` per non-blank CSV row of ``path``."""
    if not path.is_file():
        raise DataError(f"{path}: missing (UPMC-Food-101 texts; expected texts/{'|'.join(FOOD_FILES.values())})")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    reader = csv.reader(io.StringIO(content, newline=""))
    out, line, first = [], 1, True
    try:
        for row in reader:
            where, line = f"{path}:{line}", reader.line_num + 1  # a quoted text may span lines
            if not row or not any(f.strip() for f in row):
                continue
            if len(row) != 3:
                raise DataError(f"{where}: expected 3 fields filename,text,class, got {len(row)}")
            if first and not row[0].strip().lower().endswith(IMAGE_SUFFIXES):
                first = False
                continue  # a header row (filename,text,class or image_path,text,food)
            first = False
            out.append((where, row))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: bad CSV ({one_line(exc)})") from None
    return out


def read_food101(root: Path, *, image_size=None, valid_fraction: float = 0.1, seed: int = 0,
                 skip_missing: bool = False) -> dict[str, ImageSet]:
    if not isinstance(skip_missing, bool):
        raise ParamsError(f"read_real(food101): skip_missing must be true or false, got {skip_missing!r}")
    size = check_image_size(image_size, "food101")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the UPMC-Food-101 folder holding images/ and texts/)")
    rows, seen, skipped = [], {}, {}
    for split, name in FOOD_FILES.items():
        path = root / "texts" / name
        skipped[name] = 0
        for where, (filename, text, cls) in food_rows(path):
            filename, cls = filename.strip(), cls.strip()
            for what, value in (("filename", filename), ("class", cls)):
                if not value or "/" in value or "\\" in value or value.startswith("."):
                    raise DataError(f"{where}: {what} {value!r} is not a file or folder name")
            if not text.strip():
                raise DataError(f"{where}: empty text for {filename}")
            image_id = f"{split}/{cls}/{filename}"
            if image_id in seen:
                raise DataError(f"{where}: {image_id} given twice (first at {seen[image_id]})")
            seen[image_id] = where
            image = root / "images" / split / cls / filename
            if not image.is_file():
                if skip_missing:
                    skipped[name] += 1
                    continue
                raise DataError(f"{where}: image {image} missing (set skip_missing to leave such rows out)")
            rows.append((split, cls, image_id, text.strip(), image))
    if not rows:
        raise DataError(f"{root / 'texts'}: no rows with an image in {', '.join(FOOD_FILES.values())}")
    sets = finish_splits(assemble(rows, size), valid_fraction, 0.0, seed)
    for data in sets.values():
        data.extra.update(skipped=sum(skipped.values()), skipped_by_file=dict(skipped))
    return sets
