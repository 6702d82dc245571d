"""``python -m pipeline evaluate-cdvg``: ERM, LfF, CDvG and CDvG + LfF over rho, backbones and seeds, and the report.

Reads the params ``seeds``, ``cdvg.data.rhos`` and ``cdvg.train.methods`` / ``backbones``, and every run folder
``<runs>/<method>/<backbone>/rho<rho>/s<seed>`` they imply (the ``cdvg`` stage's ``result.json``; a missing or
malformed one is one error line naming it and the stage to run, never a smaller report), the views stage's
translation check and views per rho (``--views``), the training originals the views were made from (``--sets``)
and the oracles' accuracies (``--oracles``). Writes ``--out`` (default ``reports/cdvg``) as a whole:
``metrics.json``, ``plots/*.json``, ``figures/*.png``, ``report.md`` and a self-contained ``report.html``
(:mod:`pipeline.report.cdvg`).
"""

from __future__ import annotations

import argparse

OWNER = "evaluate-cdvg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default="models/cdvg", help="the cdvg stage's runs (default: models/cdvg)")
    parser.add_argument("--views", default="data/cdvg/views", help="the cdvg-views stage's folders, one per rho")
    parser.add_argument("--sets", default="data/cdvg/sets", help="the cdvg-data stage's biased sets")
    parser.add_argument("--oracles", default="models/cdvg/oracles", help="the cdvg-oracles stage's folder")
    parser.add_argument("--out", default="reports/cdvg", help="report folder, replaced as a whole")


def main(args: argparse.Namespace) -> None:
    from pipeline.cdvg.params import load_cdvg_params
    from pipeline.core.atomic import atomic_dir
    from pipeline.core.params import parse_seeds, read_yaml
    from pipeline.report.cdvg import gather_inputs, load_runs, write_all

    seeds, cfg = parse_seeds(read_yaml(args.params)), load_cdvg_params(args.params)
    rhos, methods, backbones = list(cfg.data.rhos), list(cfg.train.methods), list(cfg.train.backbones)
    runs = load_runs(args.runs, methods, backbones, rhos, seeds)
    inputs = gather_inputs(args.views, args.sets, args.oracles, rhos)
    with atomic_dir(args.out, owner=OWNER) as tmp:
        summary = write_all(tmp, runs, methods, backbones, rhos, seeds, args.params, inputs)
    c = summary["claims"].get("cdvg_vs_erm", {}).get("conflicting")
    said = (f"CDvG vs ERM, conflicting: better in {c['better']}, worse in {c['worse']} of {c['cells']} cells"
            if c else "CDvG vs ERM not measured")
    print(f"evaluate-cdvg: {len(methods)} methods x {len(backbones)} backbones x {len(rhos)} rhos x {len(seeds)} "
          f"seeds -> {args.out}/report.html ({said})")
