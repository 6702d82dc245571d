"""Stage ``cdvg@<method>-<backbone>-<rho>-<seed>``: one debiasing run (erm, lff, cdvg or cdvg_lff) on one ratio's
biased training set, selected on valid accuracy and scored on the unbiased, bias-conflicting and bias-aligned
test sets.

Reads the params ``cdvg.train`` (and ``cdvg.data.source``, for the result's record only), cdvg-data's sets
(``--sets``/rho<R>) and, for cdvg and cdvg_lff, cdvg-views' views (``--views``/rho<R>/views.safetensors).
Writes ``--out`` as :mod:`pipeline.cdvg.run` describes; wall times go to ``--timing``.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--method", required=True, help="erm, lff, cdvg or cdvg_lff")
    parser.add_argument("--backbone", required=True, help="mlp or cnn")
    parser.add_argument("--rho", type=float, required=True, help="the bias-aligned ratio, e.g. 0.99")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sets", default="data/cdvg/sets", help="cdvg-data's folder (default: data/cdvg/sets)")
    parser.add_argument("--views", default="data/cdvg/views", help="cdvg-views' folder (default: data/cdvg/views)")
    parser.add_argument("--out", default=None, help="default: models/cdvg/<method>/<backbone>/rho<R>/s<seed>")
    parser.add_argument("--timing", default=None, help="where the wall times go (outside --out)")


def main(args) -> None:
    from pipeline.cdvg.params import check_rho, load_cdvg_params
    from pipeline.cdvg.run import execute

    params = load_cdvg_params(args.params)
    tag = check_rho(args.rho, params.data)
    out = args.out or f"models/cdvg/{args.method}/{args.backbone}/{tag}/s{args.seed}"
    execute(params.train, method=args.method, backbone=args.backbone, rho=args.rho, seed=args.seed,
            source=params.data.source, sets=Path(args.sets), views=Path(args.views), out=Path(out),
            timing=args.timing)
