"""Stage ``m3col-speech@<variant>-<seed>``: one variant of the speech + transcript fusion task.

Reads the params ``m3col.speech`` and ``m3col.loss``, the prepare stage's features (``--prepared``; the speech
encoder is trained from scratch on them: no frozen speech tower exists offline) and prepare-m3col's
``speech/`` folder (``--data``: the ASR-like corrupted transcripts' frozen embeddings). ``--variant``:
``speech`` or ``text`` (unimodal), ``concat`` (UniConcat), ``aux``, ``clip``, ``m3co`` or ``m3col``. Writes
``--out`` as :mod:`pipeline.m3col.run` describes.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from pipeline.m3col.run import stage_arguments

    stage_arguments(parser, "speech")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder")


def main(args) -> None:
    from pipeline.core.runtime import Clock
    from pipeline.m3col.params import load_m3col_params
    from pipeline.m3col.run import execute
    from pipeline.m3col.tasks import load_speech, speech_encoders

    clock = Clock()
    cfg = load_m3col_params(args.params)
    task = cfg.speech
    data = load_speech(Path(args.data), Path(args.prepared))
    execute(data=data, variant=args.variant, seed=args.seed, encoders=lambda: speech_encoders(data, task.encoder, task.heads),
            task_cfg=task, loss_cfg=cfg.loss, out=Path(args.out or f"models/m3col/speech/{args.variant}/s{args.seed}"),
            timing=args.timing, key="m3col.speech", clock=clock)
