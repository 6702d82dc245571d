"""Stage ``cdvg-data``: the debiasing track's biased sets, one per rho, and the held-out oracle split.

Reads the params section ``cdvg.data`` only (and, for ``source: mnist``, MNIST from ``cdvg.data.root``). Writes
``--out`` (default ``data/cdvg/sets``) all at once (:mod:`pipeline.cdvg.data` says what each split holds)::

    rho<rho>/{train,valid,test,test_conflicting,test_aligned}.{safetensors,jsonl}, classes.json, grid.png
    oracle/{oracle.safetensors, oracle.jsonl, classes.json}
    meta.json    source, classes, colours, each class's dominant colour, and per rho and split: images, images
                 per class, the measured bias-aligned share

Bit-identical for the same params. The measured training shares are printed and checked against the asked
rho (to within one image per class).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

OWNER = "cdvg-data"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="data/cdvg/sets", help="output folder (default: data/cdvg/sets)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main(args) -> None:
    import numpy as np

    from pipeline.cdvg.data import ORACLE, build_sets, measured_rho
    from pipeline.cdvg.params import load_cdvg_params
    from pipeline.core.atomic import atomic_dir, check_replaceable
    from pipeline.data.vision.bias import dominant
    from pipeline.data.vision.imageset import write_split
    from pipeline.data.vision.output import split_stats, write_grid
    from pipeline.data.vision.vocab import values

    t0 = time.time()
    cfg = load_cdvg_params(args.params).data
    out = Path(args.out)
    check_replaceable(out, OWNER)
    sets, oracle = build_sets(cfg, progress=not args.no_progress)
    n_bias = int(max(int(s["test"].bias.max()) for s in sets.values())) + 1
    classes = list(oracle.class_names)
    meta = {"source": cfg.source, "classes": classes, "colours": values("colour")[:n_bias],
            "dominant": dominant(np.arange(len(classes)), n_bias).tolist(), "n_bias": n_bias,
            "valid": cfg.valid, "rhos": {}, "oracle": split_stats(oracle)}
    with atomic_dir(out, owner=OWNER) as work:
        for tag, splits in sets.items():
            for name, data in splits.items():
                write_split(work / tag, name, data)
            write_grid(work / tag / "grid.png", splits["train"])
            meta["rhos"][tag] = {name: {**split_stats(data), "aligned_share": round(measured_rho(data), 6)}
                                 for name, data in splits.items()}
        write_split(work / ORACLE, ORACLE, oracle)
        (work / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    shares = ", ".join(f"{tag} train aligned {s['train']['aligned_share']:.4f} ({s['train']['images']} images)"
                       for tag, s in meta["rhos"].items())
    test = next(iter(sets.values()))["test"]
    print(f"cdvg-data: {cfg.source}; {shares}; test {len(test)} (conflicting "
          f"{len(next(iter(sets.values()))['test_conflicting'])}), oracle {len(oracle)} [{time.time() - t0:.1f} s]")
