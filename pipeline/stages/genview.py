"""Stage ``genview@<variant>-<seed>``: one self-supervised run of the GenView track (simclr, fixed, adaptive or
genview), then its frozen-encoder evaluation (linear probes on shape and colour selected on valid, k-NN).

Reads the params ``genview.data``, ``genview.ssl`` and ``genview.probe``, prepare-vision's corpus
(``--vision``/<genview.data.source>) and genview-views' folder (``--views``). Writes ``--out`` as
:mod:`pipeline.genview.run` describes; wall times go to ``--timing``.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--variant", required=True, help="simclr, fixed, adaptive or genview")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--vision", default="data/vision", help="prepare-vision's folder (default: data/vision)")
    parser.add_argument("--views", default="data/genview", help="genview-views' folder (default: data/genview)")
    parser.add_argument("--out", default=None, help="default: models/genview/<variant>/s<seed>")
    parser.add_argument("--timing", default=None, help="where the wall times go (outside --out)")


def main(args) -> None:
    from pipeline.genview.params import load_genview_params
    from pipeline.genview.run import execute

    params = load_genview_params(args.params)
    execute(params, variant=args.variant, seed=args.seed, vision=Path(args.vision), views=Path(args.views),
            out=Path(args.out or f"models/genview/{args.variant}/s{args.seed}"), timing=args.timing)
