"""Stage ``prepare-vision``: the image corpora of the vision tracks.

Reads the params section ``vision`` only. Writes one folder (default ``data/vision``)::

    <source>/{train,valid,test,test_conflicting}.{safetensors,jsonl}   (pipeline.data.vision.imageset)
    <source>/classes.json        class names (index = label)
    <source>/attributes.json     the vocabulary table (attributes, synonyms, templates, prompt), the values
                                 this corpus uses, its class and bias attributes and each class's dominant bias
    <source>/grid.png            a few training images per class, then their masks
    stats.json                   per source and split: counts, bias-aligned share

``<source>`` is ``shapes`` and/or ``digits`` (``vision.sources``), plus the real dataset's kind when
``vision.real.kind`` is not ``none`` (read by ``pipeline.data.vision.readers.read_real``; its splits as the
reader returns them). The whole folder is bit-identical for the same params, so the stages that read it
re-run only when it changes; the timings (seconds and images/s per source) go to ``--timing`` (default
``reports/vision/prepare-vision.json``, a DVC metrics file that no stage reads).

Built in ``<out>.tmp`` and renamed into place (:func:`pipeline.core.atomic.atomic_dir`); an existing
``--out`` is replaced only if prepare-vision wrote it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.core.atomic import atomic_dir
from pipeline.data.params import VisionConfig, load_vision
from pipeline.errors import DataError


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="data/vision", help="output folder (default: data/vision)")
    parser.add_argument("--timing", default="reports/vision/prepare-vision.json",
                        help="where the timings go (default: reports/vision/prepare-vision.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_source(name: str, cfg: VisionConfig, progress: bool) -> tuple[dict, dict]:
    """The splits of source ``name`` (shapes, digits or the real dataset's kind) and its attributes table."""
    if name == "shapes":
        from pipeline.data.vision import shapes

        return shapes.make_shapes(cfg.shapes, cfg.seed, cfg.image_size, progress), shapes.table(cfg.shapes)
    if name == "digits":
        from pipeline.data.vision import digits

        return digits.make_digits(cfg.digits, cfg.seed), digits.table(cfg.digits)
    from pipeline.data.vision.readers import read_real

    splits = read_real(cfg.real.kind, Path(cfg.real.root), seed=cfg.seed, **real_options(cfg.real))
    if not splits:
        raise DataError(f"{cfg.real.root}: no {cfg.real.kind} split found")
    return splits, {"kind": cfg.real.kind, "root": cfg.real.root, "classes": next(iter(splits.values())).class_names}


def real_options(real) -> dict:
    """The ``vision.real`` options the kind's reader takes; one set to a non-default value that the reader does
    not take is a params error (it would otherwise be ignored silently)."""
    from dataclasses import fields

    from pipeline.core.params import require
    from pipeline.data.params import RealConfig
    from pipeline.data.vision.readers import options_of

    accepted, defaults = set(options_of(real.kind)), {f.name: f.default for f in fields(RealConfig)}
    for name in RealConfig.OPTIONS:
        require(name in accepted or getattr(real, name) == defaults[name], f"vision.real.{name}",
                f"does not apply to kind {real.kind!r} (it takes: {', '.join(sorted(accepted - {'seed'}))})")
    return {name: getattr(real, name) for name in RealConfig.OPTIONS if name in accepted}


def main(args) -> None:
    from pipeline.data.vision.output import write_source

    t0 = time.time()
    cfg = load_vision(args.params)
    names = list(cfg.sources) + ([cfg.real.kind] if cfg.real.kind != "none" else [])  # output folder per source
    stats: dict = {"sources": {}}
    timing: dict = {"sources": {}}
    with atomic_dir(Path(args.out), owner="prepare-vision") as work:
        for name in names:
            t = time.time()
            splits, table = load_source(name, cfg, not args.no_progress)
            counts = write_source(work / name, splits, table)
            seconds = time.time() - t
            n = sum(c["images"] for s, c in counts.items() if s != "test_conflicting")  # a subset of test
            stats["sources"][name] = {"images": n, "splits": counts}
            timing["sources"][name] = {"images": n, "seconds": round(seconds, 2),
                                       "images_per_s": round(n / max(seconds, 1e-9), 1)}
        (work / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    timing["seconds"] = round(time.time() - t0, 2)
    Path(args.timing).parent.mkdir(parents=True, exist_ok=True)
    Path(args.timing).write_text(json.dumps(timing, indent=1) + "\n")
    print(f"prepare-vision: {summary(stats)}, {timing['seconds']:.1f} s")


def summary(stats: dict) -> str:
    """"shapes 20000 images (train aligned 0.125), digits 1797 images (...)"."""
    parts = []
    for name, s in stats["sources"].items():
        share = s["splits"].get("train", {}).get("aligned_share")
        parts.append(f"{name} {s['images']} images" + (f" (train aligned {share:.3f})" if share is not None else ""))
    return ", ".join(parts)
