"""Stage ``cdvg-views@<rho>``: one bias-transformed view per training image, and the check of CDvG's premise.

Reads the params section ``cdvg.translate``, cdvg-data's ``--sets``/rho<rho> (the training pixels and class
labels only, :func:`pipeline.cdvg.data.read_training`: no bias label is read here either), the ratio's generator
(``--generator``) and the oracles (``--oracles``). Every training image x of class y gets a target class
y' != y (uniform, seeded) and is translated by ``cdvg.translate``'s recipe (:mod:`pipeline.cdvg.translate`).
Writes ``--out`` all at once::

    views.safetensors   views uint8 [N, S, S, 3] (row i: training image i translated), target int64 [N] (y')
    translation.json    the recipe, the oracle rates of the views (content kept, content moved to y', colour
                        moved to y''s dominant colour, colour kept, both), the same rates for every recipe of
                        cdvg.translate.compare on the first compare_n training images, the generator's
                        class-conditional samples judged by the oracles, the oracles' own test accuracy
    pairs.png           per source class (rows): 4 training images, then their views

Same params, generator and sets: the same bytes on the CPU. Wall times go to ``--timing``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

OWNER = "cdvg-views"
SAMPLES_PER_CLASS = 20  # class-conditional samples judged by the oracles


def add_arguments(parser) -> None:
    parser.add_argument("--rho", type=float, required=True, help="the ratio (one of cdvg.data.rhos)")
    parser.add_argument("--sets", default="data/cdvg/sets", help="cdvg-data's folder (default: data/cdvg/sets)")
    parser.add_argument("--generator", default=None, help="default: models/cdvg/generator/rho<rho>")
    parser.add_argument("--oracles", default="models/cdvg/oracles", help="cdvg-oracles' folder")
    parser.add_argument("--out", default=None, help="default: data/cdvg/views/rho<rho>")
    parser.add_argument("--timing", default=None, help="wall seconds as JSON (optional; outside --out)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main(args) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from pipeline.cdvg import translate as TR
    from pipeline.cdvg.data import read_meta, read_training
    from pipeline.cdvg.oracles import load_oracles
    from pipeline.cdvg.params import check_rho, load_cdvg_params
    from pipeline.core.atomic import atomic_dir, check_replaceable
    from pipeline.core.params import require
    from pipeline.core.runtime import Clock, setup, write_timing
    from pipeline.diffusion import quality as Q
    from pipeline.diffusion.io import load_generator
    from pipeline.diffusion.train import to_uint8, to_unit

    clock = Clock()
    cdvg = load_cdvg_params(args.params)
    cfg = cdvg.translate
    tag = check_rho(args.rho, cdvg.data)
    out = Path(args.out or f"data/cdvg/views/{tag}")
    check_replaceable(out, OWNER)
    device = setup("cpu", seed=cfg.seed, threads=2)
    hint = f"run the cdvg-generator stage (dvc repro cdvg-generator@{args.rho})"
    generator, gen_config = load_generator(args.generator or f"models/cdvg/generator/{tag}", device, hint=hint)
    require(cfg.steps <= generator.cfg.train_timesteps, "cdvg.translate.steps",
            f"{cfg.steps}: more than the generator's {generator.cfg.train_timesteps} training timesteps")
    oracles, oracle_meta = load_oracles(args.oracles)
    meta = read_meta(Path(args.sets))
    dominant = torch.as_tensor(meta["dominant"], dtype=torch.long)
    data = read_training(Path(args.sets) / tag)
    x, y = to_unit(data.train_images.numpy()), data.train_labels
    target = TR.targets(y, data.n_classes, cfg.seed)
    clock.mark("load")

    def run(recipe, n, label):
        with tqdm(total=n, desc=f"cdvg-views {label}", unit="img", disable=args.no_progress, leave=False) as bar:
            return TR.translate(generator, x[:n], y[:n], target[:n], recipe, cfg.steps, cfg.batch_size, cfg.seed, bar)

    views = run(cfg.recipe, len(y), cfg.recipe.name)
    clock.mark("views")
    rates = TR.rates(oracles, x, views, y, target, dominant)
    n_cmp = min(cfg.compare_n, len(y))
    compare = [{"recipe": {**asdict(r), "name": r.name}, "n": n_cmp,
                **TR.rates(oracles, x[:n_cmp], run(r, n_cmp, r.name), y[:n_cmp], target[:n_cmp], dominant)}
               for r in cfg.compare]
    clock.mark("compare")
    labels = torch.arange(data.n_classes).repeat_interleave(SAMPLES_PER_CLASS)
    samples = generator.sample(labels, steps=cfg.steps, guidance=generator.cfg.guidance,
                               generator=torch.Generator().manual_seed(cfg.seed))
    doc = {"rho": args.rho, "recipe": {**asdict(cfg.recipe), "name": cfg.recipe.name}, "steps": cfg.steps,
           "n": len(y), "rates": rates, "compare": compare,
           "samples": {"per_class": SAMPLES_PER_CLASS, "guidance": generator.cfg.guidance,
                       **TR.sample_rates(oracles, samples, labels, dominant)},
           "oracles": {"content_test_accuracy": oracle_meta["content"]["test_accuracy"],
                       "bias_test_accuracy": oracle_meta["bias"]["test_accuracy"]},
           "generator": {"config_digest": gen_config["digest"], "steps_trained": gen_config.get("steps")},
           "target_rule": "uniform over the other classes, seeded by cdvg.translate.seed"}
    clock.mark("samples")
    originals, views_u8 = data.train_images.numpy(), to_uint8(views)
    tiles = TR.pair_grid(originals, views_u8, y.numpy(), data.n_classes)
    with atomic_dir(out, owner=OWNER) as work:
        save_file({"views": torch.from_numpy(np.ascontiguousarray(views_u8)), "target": target.contiguous()}, str(work / "views.safetensors"))
        (work / "translation.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        Q.write_png(work / "pairs.png", Q.grid(tiles, 2 * data.n_classes), scale=3)
    clock.mark("write")
    write_timing(args.timing, clock.marks)
    best = max(compare, key=lambda c: c["both"]) if compare else None
    print(f"cdvg-views {tag}: {len(y)} views by {cfg.recipe.name}: content kept {100 * rates['content_kept']:.1f} %, "
          f"colour moved to the target's {100 * rates['bias_to_target']:.1f} %, both {100 * rates['both']:.1f} % "
          f"(oracles on clean test: content {100 * doc['oracles']['content_test_accuracy']:.1f} %, colour "
          f"{100 * doc['oracles']['bias_test_accuracy']:.1f} %)"
          + (f"; best compared recipe {best['recipe']['name']}: both {100 * best['both']:.1f} %" if best else "")
          + f" [{sum(clock.marks.values()):.0f} s]")
