"""Stage ``train@<strategy>-<seed>-task<k>``: train one strategy on one task, then score it.

Reads the params sections ``model``, ``train`` and ``recipes.<strategy>`` (plus ``cil.tasks`` to check
the chain; a recipe with ``mm_target: frozen_text`` also reads the embed stage's cached transcript
embeddings, ``--embeddings``). Starts from ``models/cil/<strategy>/s<seed>/<prev>`` (the init folder or task k-1) and writes
``models/cil/<strategy>/s<seed>/task<k>`` with the checkpoint and ``eval.json``, this task's row of the
accuracy matrix on the test data of every task seen so far. Task 0 adopts the first task that stage
``first@<seed>`` trained (``models/cil/first/s<seed>/<strategy>``) when it was trained for exactly these params
and init weights, and trains it itself otherwise (e.g. when run outside DVC without that stage).
"""

from __future__ import annotations

from pathlib import Path

#: end the process with os._exit once main returns (pipeline.__main__.exit_now): no interpreter teardown
FAST_EXIT = True


def add_arguments(parser) -> None:
    parser.add_argument("--strategy", required=True, help="strategy name (a key of recipes:)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--task", type=int, required=True, help="task index k (0-based)")
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder")
    parser.add_argument("--models", default="models/cil", help="checkpoint root (default: models/cil)")
    parser.add_argument("--embeddings", default="data/embeddings",
                        help="the embed stage's folder, read only by recipes with mm_target: frozen_text")
    parser.add_argument("--first", default=None,
                        help="task 0: the shared first-task folder to adopt (default: <models>/first/s<seed>/<strategy>)")
    parser.add_argument("--eval-split", default="test", choices=["test", "valid"],
                        help="split scored after the task (valid for hyper-parameter search)")


def main(args) -> None:
    from pipeline.continual import avalanche_import, optim

    avalanche_import.fast_import()  # this process's start-up shortcuts (see the two modules)
    optim.enable_fast_path()
    from pipeline.config import load_train
    from pipeline.data.prepared import load_prepared
    from pipeline.continual.run import TaskRun
    from pipeline.core import runtime
    from pipeline.models.build import build_model
    from pipeline.errors import ParamsError

    params = load_train(args.params)
    params.check_strategy(args.strategy)
    prep = load_prepared(Path(args.prepared))
    n_tasks = len(prep.manifest["tasks"])
    if len(params.cil.tasks) != n_tasks:
        raise ParamsError(f"params: cil.tasks: lists {len(params.cil.tasks)} tasks but the prepared split has {n_tasks} "
                          f"(split.preset {prep.manifest['preset']}); list k = 0..{n_tasks - 1}")
    if not 0 <= args.task < n_tasks:
        raise ParamsError(f"--task {args.task}: expected 0..{n_tasks - 1}")
    device = runtime.setup(params.train.device, args.seed, params.train.threads)
    root = Path(args.models) / args.strategy / f"s{args.seed}"
    prev = root / params.cil.tasks[args.task].prev
    first = Path(args.first) if args.first else Path(args.models) / "first" / f"s{args.seed}" / args.strategy
    run = TaskRun(params, args.strategy, args.seed, args.task, prep, prev, root / f"task{args.task}", device,
                  args.eval_split, shared=first, embeddings=Path(args.embeddings))
    row = run.run(build_model(params.model, prep))
    wer = "n/a" if row["wer_seen"] is None else f"{row['wer_seen']:.3f}"
    print(f"train {args.strategy} seed {args.seed} task {args.task}: loss {row['final_loss']:.3f}, "
          f"acc on seen {row['acc_seen']:.3f}, per task {[round(a, 3) for a in row['acc_per_task']]}, "
          f"WER {wer}, buffer {row['buffer_size']}, {row['train_seconds']:.1f} s"
          + (" (the first task's training: stage first)" if row["shared_first_task"] else ""))
