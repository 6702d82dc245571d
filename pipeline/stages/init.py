"""Stage ``init@<strategy>-<seed>``: the untrained model a strategy's task chain starts from.

Reads the params sections ``model`` and ``seeds``. Every strategy with the same seed starts from the
same weights (the model is built right after ``torch.manual_seed(seed)``), so strategies differ only
in how they learn.
"""

from __future__ import annotations

from pathlib import Path

#: end the process with os._exit once main returns (pipeline.__main__.exit_now): no interpreter teardown
FAST_EXIT = True


def add_arguments(parser) -> None:
    parser.add_argument("--strategy", required=True, help="strategy name (a key of recipes:)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder")
    parser.add_argument("--models", default="models/cil", help="checkpoint root (default: models/cil)")


def main(args) -> None:
    from pipeline.config import load_train
    from pipeline.data.prepared import load_prepared
    from pipeline.models.build import write_init

    params = load_train(args.params)
    params.check_strategy(args.strategy)
    prep = load_prepared(Path(args.prepared))
    folder = Path(args.models) / args.strategy / f"s{args.seed}" / "init"
    model = write_init(folder, params.model, prep, args.seed)
    print(f"init {args.strategy} seed {args.seed}: {sum(p.numel() for p in model.parameters()):,} parameters -> {folder}")
