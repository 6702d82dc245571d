"""Stage ``m3col-image@<variant>-<seed>``: one variant of the image + caption fusion task.

Reads the params ``m3col.image`` and ``m3col.loss`` and prepare-m3col's ``image/`` folder (``--data``): the
degraded images' and noisy captions' frozen embeddings (``m3col.image.encoders: embeddings``) or the pixels
and words themselves (``end_to_end``). ``--variant``: ``image`` or ``text`` (unimodal), ``concat``
(UniConcat), ``aux``, ``clip``, ``m3co`` or ``m3col``. Writes ``--out`` as :mod:`pipeline.m3col.run` describes.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from pipeline.m3col.run import stage_arguments

    stage_arguments(parser, "image")


def main(args) -> None:
    from pipeline.core.runtime import Clock
    from pipeline.m3col.params import load_m3col_params
    from pipeline.m3col.run import execute
    from pipeline.m3col.tasks import image_encoders, load_image

    clock = Clock()
    cfg = load_m3col_params(args.params)
    task = cfg.image
    data = load_image(Path(args.data), task.encoders)
    execute(data=data, variant=args.variant, seed=args.seed, encoders=lambda: image_encoders(data, task.encoders, task.heads),
            task_cfg=task, loss_cfg=cfg.loss, out=Path(args.out or f"models/m3col/image/{args.variant}/s{args.seed}"),
            timing=args.timing, key="m3col.image", clock=clock)
