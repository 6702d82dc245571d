"""Stage ``cwcl-image@<loss>-<seed>``: a caption encoder aligned to the frozen image tower, zero-shot tested.

Reads the params section ``cwcl`` (its ``image`` part and the shared keys), the image corpus (``--vision``:
captions and colour/shape attributes) and the embed stage's image embeddings (``--embeddings``).
``--loss``: ``cl``, ``cwcl`` or ``supervised`` (a linear classifier on the frozen image embeddings over all
colour x shape combinations: the upper bound). Writes ``--out`` as :mod:`pipeline.cwcl.run` describes:
zero-shot classification of the test images among the combinations, held-out ones never trained on.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from pipeline.cwcl.run import stage_arguments

    stage_arguments(parser, "image")
    parser.add_argument("--vision", default="data/vision", help="the prepare-vision stage's folder")


def main(args) -> None:
    from pipeline.core.checkpoint import content_digest
    from pipeline.core.runtime import Clock
    from pipeline.cwcl import run
    from pipeline.cwcl.align import Aligned
    from pipeline.cwcl.image import (build_image_model, image_scores, input_digests, load_image, param_groups,
                                     pretrained_folder)
    from pipeline.cwcl.params import load_cwcl_params

    clock = Clock()
    cfg = load_cwcl_params(args.params)
    task, supervised = cfg.image, args.loss == "supervised"
    heldout_seed = args.seed if cfg.heldout_seed is None else cfg.heldout_seed
    vision, embeddings = Path(args.vision), Path(args.embeddings)
    data = load_image(task, vision, embeddings, heldout_seed, "cwcl.image", supervised)
    tau, learn = task.tau.get(args.loss, 1.0), cfg.learn_temperature and not supervised
    run.seed_init(args.seed)
    model = Aligned(build_image_model(task, data, supervised), tau, learn)
    clock.mark("load")
    batch = task.train.eval_batch_size
    inputs = input_digests(task, vision, embeddings)
    if task.text_encoder.kind == "pretrained" and not supervised:  # the initial weights are an input too
        folder = pretrained_folder(task.text_encoder, "cwcl.image.text_encoder")
        inputs["text_init"] = content_digest(folder, [f.name for f in sorted(folder.iterdir()) if f.is_file()])
    run.execute(task="image", loss=args.loss, seed=args.seed, heldout_seed=heldout_seed, task_cfg=task, learn=learn,
                data=data, model=model, tau=tau, valid_scores=lambda m, loader: image_scores(m, loader, data, supervised),
                test_sets={"combos": lambda m, device: image_scores(m, run.loader(data.test, batch, device), data,
                                                                    supervised)},
                inputs=inputs, out=Path(args.out or f"models/cwcl/image/{args.loss}/s{args.seed}"),
                timing=args.timing, clock=clock, param_groups=None if supervised else param_groups(task))
