"""Stage ``first@<seed>``: train the first task once per group of strategies that would train it alike.

Reads the params sections ``model``, ``train``, ``cil.strategies`` and ``recipes`` (and, for a recipe
with ``mm_target: frozen_text``, the embed stage's cached transcript embeddings). On task 0 most
continual-learning ingredients have nothing to act on (no buffer contents, teacher or Fisher yet), so
e.g. fine-tuning, replay and joint train the same first-task model, bit for bit
(:mod:`pipeline.continual.first_task` says which settings matter). This stage trains each distinct first
task once, from the same init weights the ``init`` stage writes, and writes ``models/cil/first/s<seed>/<strategy>``
for every strategy; ``train@<strategy>-<seed>-task0`` adopts it and runs only the end-of-task work and the
evaluation. A killed run resumes from its last finished epoch (``models/cil/first/s<seed>.work``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

#: end the process with os._exit once main returns (pipeline.__main__.exit_now): no interpreter teardown
FAST_EXIT = True


def add_arguments(parser) -> None:
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder")
    parser.add_argument("--models", default="models/cil", help="checkpoint root (default: models/cil)")
    parser.add_argument("--embeddings", default="data/embeddings",
                        help="the embed stage's folder, read only by recipes with mm_target: frozen_text")


def main(args) -> None:
    from pipeline.continual import avalanche_import, optim

    avalanche_import.fast_import()  # this process's start-up shortcuts (see the two modules)
    optim.enable_fast_path()
    from pipeline.config import load_train
    from pipeline.data.prepared import load_prepared
    from pipeline.continual.first_task import describe, first_task_groups, write_shared
    from pipeline.continual.run import TaskRun
    from pipeline.core import runtime
    from pipeline.core.atomic import atomic_dir
    from pipeline.models.build import build_model, write_init

    params = load_train(args.params)
    prep = load_prepared(Path(args.prepared))
    out = Path(args.models) / "first" / f"s{args.seed}"
    work = out.with_name(out.name + ".work")  # outside the stage's output: DVC removes that before a run
    write_init(work / "init", params.model, prep, args.seed)  # the init stage's weights, byte for byte
    timing = {}
    # legacy: a folder written before owner markers holds the strategies' folders and timing.json
    with atomic_dir(out, owner="first", legacy=[*params.cil.strategies, "timing.json"]) as tmp:
        for recipe, members in first_task_groups(params.recipes, params.cil.strategies):
            t0 = time.time()
            device = runtime.setup(params.train.device, args.seed, params.train.threads)  # as in a fresh train stage
            label = "+".join(members)
            run = TaskRun(params, f"first@{args.seed} [{label}]", args.seed, 0, prep, work / "init", work / label,
                          device, recipe=recipe, embeddings=Path(args.embeddings))
            # its .partial folder then holds the state after the last epoch; it stays in work/ until the whole
            # stage is done, so a run killed during a later group resumes this one with no epoch left to train
            run.train(build_model(params.model, prep))
            for name in members:
                write_shared(run.partial, tmp / name)
            seconds = round(time.time() - t0 + run.resume.previous_seconds, 2)
            timing.update({name: seconds for name in members})
            loss = (run.resume.history + run.progress.history)[-1]["loss"]
            print(f"first task of {', '.join(members)} ({describe(recipe)}): loss {loss:.3f}, {seconds:.1f} s")
        (tmp / "timing.json").write_text(json.dumps(timing, indent=1))
    shutil.rmtree(work)
