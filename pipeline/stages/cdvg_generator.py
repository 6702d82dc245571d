"""Stage ``cdvg-generator@<rho>``: the bias-transformation generator of one ratio.

The diffusion track's class-conditional generator (:mod:`pipeline.diffusion`: UNet2DModel, DDPM epsilon
training, EMA, classifier-free guidance), trained on cdvg-data's BIASED training set of ``--rho`` with its class
labels only: the split is read through :func:`pipeline.cdvg.data.read_training`, which loads pixels and class
labels and never the bias labels. Reads the params section ``cdvg.generator``. Trains through the plain trainer
into ``<out>.run`` (a killed run resumes after its last finished epoch, same bytes), then writes ``--out`` all
at once, in the layout :func:`pipeline.diffusion.io.load_generator` reads::

    model.safetensors   the Generator's state_dict (unet.*, ema.*, ema_updates)
    config.json         the model section, the classes, the source (cdvg-<rho>), the steps trained
    history.jsonl       per epoch: train loss, valid loss (fixed draws), lr
    samples.png         8 samples per class (rows), EMA weights, the model's DDIM steps and guidance

Wall times go to ``--timing``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

OWNER = "cdvg-generator"
GRID_PER_CLASS = 8


def add_arguments(parser) -> None:
    parser.add_argument("--rho", type=float, required=True, help="the ratio (one of cdvg.data.rhos)")
    parser.add_argument("--sets", default="data/cdvg/sets", help="cdvg-data's folder (default: data/cdvg/sets)")
    parser.add_argument("--out", default=None, help="default: models/cdvg/generator/rho<rho>")
    parser.add_argument("--timing", default=None, help="wall seconds as JSON (optional; outside --out)")


def main(args) -> None:
    import torch
    from torch.utils.data import TensorDataset

    from pipeline.cdvg.data import read_training
    from pipeline.cdvg.params import check_rho, load_cdvg_params
    from pipeline.core.atomic import check_replaceable
    from pipeline.core.checkpoint import tensor_digest
    from pipeline.core.params import require
    from pipeline.core.runtime import write_timing
    from pipeline.core.trainer import publish
    from pipeline.diffusion import quality as Q
    from pipeline.diffusion import train as T
    from pipeline.diffusion.params import DiffusionParams

    t0 = time.time()
    cdvg = load_cdvg_params(args.params)
    cfg = cdvg.generator
    tag = check_rho(args.rho, cdvg.data)
    out = Path(args.out or f"models/cdvg/generator/{tag}")
    check_replaceable(out, OWNER)
    data = read_training(Path(args.sets) / tag)
    size = cfg.model.unet.image_size
    require(size == data.train_images.shape[1], "cdvg.generator.model.unet.image_size",
            f"{size}: must equal the sets' image size {data.train_images.shape[1]} (cdvg.data.image_size)")
    nv = len(data.valid_labels) if cfg.n_valid == 0 else min(cfg.n_valid, len(data.valid_labels))
    train = TensorDataset(T.to_unit(data.train_images.numpy()), data.train_labels)
    valid = TensorDataset(T.to_unit(data.valid_images[:nv].numpy()), data.valid_labels[:nv])
    params = DiffusionParams(source=f"cdvg-{tag}", n_train=0, n_valid=nv, model=cfg.model, train=cfg.train,
                             seed=cfg.seed)
    digest = tensor_digest(*train.tensors, *valid.tensors)
    generator = T.build(params, data.n_classes)
    run = out.with_name(out.name + ".run")
    result, trainer = T.fit(generator, params, train, valid, run, T.fingerprint(params, digest, data.n_classes),
                            label=f"cdvg-generator-{tag}")
    train_seconds = sum(row["seconds"] for row in result.history)
    generator.eval()
    labels = torch.arange(data.n_classes).repeat_interleave(GRID_PER_CLASS)
    samples = generator.sample(labels.to(trainer.device), steps=cfg.model.sampling_steps,
                               guidance=cfg.model.guidance, generator=torch.Generator().manual_seed(cfg.seed))
    steps = int(generator.ema_updates)
    config = {"source": params.source, "classes": data.classes, "model": asdict(cfg.model), "seed": cfg.seed,
              "steps": steps, "null_class": data.n_classes, "rho": args.rho, "keys_read": list(data.keys_read)}
    with publish(run, out, OWNER, result.history) as work:
        (work / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        Q.write_png(work / "samples.png", Q.grid(T.to_uint8(samples), data.n_classes), scale=2)
    write_timing(args.timing, {"train": train_seconds, "stage": time.time() - t0})
    print(f"cdvg-generator {tag}: {steps} steps on {len(train)} biased training images (class labels only) in "
          f"{train_seconds:.0f} s; final valid loss {result.history[-1].get('valid', {}).get('loss', float('nan')):.4f} "
          f"[{time.time() - t0:.0f} s]")
