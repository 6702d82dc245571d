"""``python -m pipeline evaluate-genview``: GenView's variants against SimCLR over seeds, and the report.

Reads the params ``seeds`` and ``genview.ssl.variants`` and every run folder ``<models>/<variant>/s<seed>``
they imply (the ``genview`` stage's outputs; a missing or malformed one is an error naming it), the generated
views (``--views``: the estimated foreground ratios, the views and their noise levels), the corpus's exact
training masks (``--vision``, to check the ratios) and the generator's measured quality (``--generator-metrics``,
the diffusion stage's metrics, and its sample grid in ``--generator``). Writes ``--out`` (default
``reports/genview``) as a whole: ``metrics.json``, ``plots/*.json``, ``figures/*.png``, ``report.md`` and a
self-contained ``report.html`` (:mod:`pipeline.report.genview`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OWNER = "evaluate-genview"
PAIRS_PER_LEVEL = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="models/genview", help="the genview stage's runs (default: models/genview)")
    parser.add_argument("--views", default="data/genview", help="the genview-views stage's folder (default: data/genview)")
    parser.add_argument("--vision", default="data/vision", help="prepare-vision's folder: the exact masks")
    parser.add_argument("--generator", default="models/diffusion", help="the diffusion stage's model folder")
    parser.add_argument("--generator-metrics", default="reports/diffusion/metrics.json",
                        help="the diffusion stage's measured quality (default: reports/diffusion/metrics.json)")
    parser.add_argument("--out", default="reports/genview", help="report folder, replaced as a whole")


def load_inputs(args, source: str):
    """The report's non-run inputs: foreground check, generator quality, view pairs per noise level."""
    import numpy as np
    from safetensors.numpy import load_file
    from scipy.stats import spearmanr

    from pipeline.data.vision.imageset import read_split
    from pipeline.errors import DataError
    from pipeline.report.genview import Inputs

    views_dir = Path(args.views)
    for name in ("views.safetensors", "views.json"):
        if not (views_dir / name).is_file():
            raise DataError(f"{views_dir / name}: missing; run `dvc repro genview-views`")
    views = load_file(str(views_dir / "views.safetensors"))
    meta = json.loads((views_dir / "views.json").read_text())
    train = read_split(Path(args.vision) / source, "train")
    if train.masks is None:
        raise DataError(f"{Path(args.vision) / source}: the training split has no masks to check the ratios against")
    index = views["index"]
    true_share = train.masks[index].reshape(len(index), -1).astype(np.float64).mean(axis=1)
    ratio = views["ratio"].astype(np.float64)
    rho = float(spearmanr(ratio, true_share).statistic)
    settings = meta["views"]
    levels = np.rint(views["strength"].astype(np.float64) * 1000).astype(int)
    counts = {str(lv): int((levels == lv).sum()) for lv in settings["levels"]}
    pairs = {}
    for lv in settings["levels"]:
        rows = np.flatnonzero(levels == lv)[:PAIRS_PER_LEVEL]
        pairs[lv] = (train.images[index[rows]], views["fixed"][rows], views["adaptive"][rows])
    grid = views["fg_real"].shape[1:]
    foreground = {"spearman": round(rho, 6), "n": int(len(ratio)), "bin_counts": counts,
                  "share": settings["share"], "edges": settings["edges"], "levels": settings["levels"],
                  "fixed_strength": settings["fixed_strength"], "grid": "x".join(map(str, grid)),
                  "tokens": int(np.prod(grid)), "tower": meta.get("tower"),
                  "pca_explained_first": meta.get("pca", {}).get("explained_first"), "mean_ratio": round(float(ratio.mean()), 6),
                  "mean_true_share": round(float(true_share.mean()), 6)}
    gm = Path(args.generator_metrics)
    if not gm.is_file():
        raise DataError(f"{gm}: missing; run `dvc repro diffusion`")
    generator = json.loads(gm.read_text())
    samples = Path(args.generator) / "samples.png"
    return Inputs(foreground=foreground, generator=generator, views_meta=meta, ratio=ratio, true_share=true_share,
                  pairs=pairs, samples_png=samples if samples.is_file() else None)


def main(args: argparse.Namespace) -> None:
    from pipeline.core.atomic import atomic_dir
    from pipeline.core.params import parse_seeds, read_yaml, section
    from pipeline.genview.params import GenViewParams
    from pipeline.report.genview import write_all
    from pipeline.report.genview_runs import load_runs

    raw = read_yaml(args.params)
    seeds, cfg = parse_seeds(raw), section(raw, GenViewParams, "genview")
    variants = list(cfg.ssl.variants)
    runs = load_runs(args.models, variants, seeds)
    inputs = load_inputs(args, cfg.data.source)
    with atomic_dir(args.out, owner=OWNER) as tmp:
        summary = write_all(tmp, runs, variants, seeds, args.params, inputs)
    verdict = summary["verdicts"].get("genview_vs_simclr", {}).get("probe_shape", {}).get("verdict", "not measured")
    print(f"evaluate-genview: {len(variants)} variants x {len(seeds)} seeds -> {args.out}/report.html "
          f"(GenView vs SimCLR, linear probe shape: {verdict}; foreground Spearman "
          f"{summary['foreground']['spearman']:.3f})")
