"""Stage ``cdvg-oracles``: the content and bias oracles that judge the bias translations.

Reads the params section ``cdvg.oracle`` and cdvg-data's ``--sets``: trains on ``oracle/oracle`` (the unbiased
split no debiasing run sees) and scores the oracles on the clean unbiased test set (the same images at every
rho). Writes ``--out`` (default ``models/cdvg/oracles``) all at once::

    content.safetensors, bias.safetensors   the SmallCNN state_dicts (pipeline.cdvg.oracles.load_oracles)
    oracles.json   per oracle: what it names, n_classes, width, n_train, test_accuracy (unbiased test),
                   test_conflicting_accuracy; the oracle params

Same params and sets, same bytes on the CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

OWNER = "cdvg-oracles"


def add_arguments(parser) -> None:
    parser.add_argument("--sets", default="data/cdvg/sets", help="cdvg-data's folder (default: data/cdvg/sets)")
    parser.add_argument("--out", default="models/cdvg/oracles", help="output folder (default: models/cdvg/oracles)")


def main(args) -> None:
    import torch
    from safetensors.torch import save_file

    from pipeline.cdvg.data import ORACLE, read_meta
    from pipeline.cdvg.oracles import KINDS, judge, train_oracle
    from pipeline.cdvg.params import load_cdvg_params
    from pipeline.core.atomic import atomic_dir, check_replaceable
    from pipeline.core.runtime import setup
    from pipeline.data.vision.imageset import read_split
    from pipeline.diffusion.train import to_unit

    t0 = time.time()
    cfg = load_cdvg_params(args.params).oracle
    out, sets = Path(args.out), Path(args.sets)
    check_replaceable(out, OWNER)
    setup("cpu", seed=cfg.seed, threads=2)
    meta = read_meta(sets)
    oracle = read_split(sets / ORACLE, ORACLE)
    tag = sorted(meta["rhos"])[0]  # test is the same images at every rho
    tests = {s: read_split(sets / tag, s) for s in ("test", "test_conflicting")}
    n_classes = {"content": len(meta["classes"]), "bias": int(meta["n_bias"])}
    target = {"content": lambda d: d.labels, "bias": lambda d: d.bias}
    doc: dict = {"params": asdict(cfg), "source": meta["source"]}
    with atomic_dir(out, owner=OWNER) as work:
        for kind in KINDS:
            net = train_oracle(kind, to_unit(oracle.images), torch.as_tensor(target[kind](oracle)), n_classes[kind], cfg)
            scores = {f"{s}_accuracy": float((judge(net, kind, to_unit(d.images)) == torch.as_tensor(target[kind](d)))
                                             .double().mean()) for s, d in tests.items()}
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(work / f"{kind}.safetensors"))
            doc[kind] = {"names": "the class from a greyscale image" if kind == "content" else "the colour",
                         "n_classes": n_classes[kind], "width": cfg.width, "n_train": len(oracle), **scores}
        (work / "oracles.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"cdvg-oracles: content {100 * doc['content']['test_accuracy']:.1f} % and bias (colour) "
          f"{100 * doc['bias']['test_accuracy']:.1f} % on the clean unbiased test set, trained on {len(oracle)} "
          f"held-out images [{time.time() - t0:.0f} s]")
