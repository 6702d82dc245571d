"""Stage ``cwcl-speech@<loss>-<seed>``: a speech encoder aligned to the frozen text tower, zero-shot tested.

Reads the params section ``cwcl`` (its ``speech`` part and the shared keys), the prepared speech corpus
(``--prepared``) and the embed stage's text embeddings (``--embeddings``). ``--loss``: ``cl`` (one-hot
InfoNCE against the locked tower), ``cwcl`` (continuously weighted targets) or ``supervised`` (a classifier
on all intents: the upper bound). Writes ``--out`` as :mod:`pipeline.cwcl.run` describes: zero-shot intents
(held-out intents never trained on) and keyword spotting on the prepared keyword clips.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from pipeline.cwcl.run import stage_arguments

    stage_arguments(parser, "speech")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder")


def main(args) -> None:
    from pipeline.core.checkpoint import content_digest
    from pipeline.core.runtime import Clock
    from pipeline.cwcl import run
    from pipeline.cwcl.align import Aligned
    from pipeline.cwcl.params import load_cwcl_params
    from pipeline.cwcl.speech import build_speech_model, check_encoder, intent_scores, keyword_scores, load_speech

    clock = Clock()
    cfg = load_cwcl_params(args.params)
    task, supervised = cfg.speech, args.loss == "supervised"
    heldout_seed = args.seed if cfg.heldout_seed is None else cfg.heldout_seed
    prepared, embeddings = Path(args.prepared), Path(args.embeddings)
    data = load_speech(task, prepared, embeddings, heldout_seed, "cwcl.speech", supervised)
    check_encoder(task.encoder, data.prepared, "cwcl.speech.encoder")
    tau, learn = task.tau.get(args.loss, 1.0), cfg.learn_temperature and not supervised
    run.seed_init(args.seed)
    model = Aligned(build_speech_model(task.encoder, data, supervised), tau, learn)
    clock.mark("load")
    batch = task.train.eval_batch_size
    test_sets = {"intents": lambda m, device: intent_scores(m, run.loader(data.test, batch, device), data, supervised)}
    if task.keywords and not supervised:  # a classifier has no class for words it never trained on
        test_sets["keywords"] = lambda m, device: keyword_scores(m, prepared, embeddings, batch, device)
    inputs = {"prepared": data.prepared.digest,
              "embeddings": content_digest(embeddings, [f"text/{name}.{ext}" for name in ("intents", "transcripts")
                                                        for ext in ("safetensors", "json")])}
    run.execute(task="speech", loss=args.loss, seed=args.seed, heldout_seed=heldout_seed, task_cfg=task, learn=learn,
                data=data, model=model, tau=tau, valid_scores=lambda m, loader: intent_scores(m, loader, data, supervised),
                test_sets=test_sets, inputs=inputs, out=Path(args.out or f"models/cwcl/speech/{args.loss}/s{args.seed}"),
                timing=args.timing, clock=clock)
