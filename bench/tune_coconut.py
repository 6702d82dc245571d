"""Search COCONUT's loss weights and temperature on the VALIDATION split (never the test split).

For each grid point a recipe ``tune`` = the ``coconut`` recipe of params.yaml with the point's values is
trained over the first ``--tasks`` tasks (init + train stages, in this process), each task scored on the
validation data of the tasks seen so far; the score is the validation Avg Acc (mean over tasks of the
accuracy on all seen classes). Task 0 has no rehearsal samples, so the contrastive weight and temperature
do not change it: its checkpoint is shared by the points with the same MM settings.

    python bench/tune_coconut.py --prepared data/prepared --out /tmp/tune            # default grid
    python bench/tune_coconut.py --lambda-contrastive 0.05 0.1 0.3 --lambda-mm 0.1 --tau 0.1 --tasks 3

Prints one line per point and the best point; writes ``<out>/search.json``. Put the chosen values into
the ``coconut`` recipe of params.yaml.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

from pipeline.__main__ import main as cli


def params_for(base: dict, point: dict, tasks: int, out: Path) -> Path:
    params = json.loads(json.dumps(base))  # deep copy
    params["recipes"]["tune"] = {**params["recipes"]["coconut"], **point}
    params["cil"]["strategies"] = ["tune"]
    params["train"]["progress"] = False
    path = out / f"params-{abs(hash(json.dumps(point, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_point(base: dict, point: dict, args, cache: dict) -> float:
    models = args.out / "models" / "-".join(f"{k}{v}" for k, v in point.items())
    params = params_for(base, point, args.tasks, args.out)
    common = ["--params", str(params), "--prepared", str(args.prepared), "--models", str(models)]
    key = (point["lambda_mm"], point["tau_mm"])
    task0 = models / "tune" / "s0" / "task0"
    if key in cache:  # the first task does not depend on the contrastive term: reuse it
        shutil.copytree(cache[key].parent / "init", task0.parent / "init", dirs_exist_ok=True)
        shutil.copytree(cache[key], task0, dirs_exist_ok=True)
        first = 1
    else:
        assert cli(["init", "--strategy", "tune", "--seed", "0", *common]) == 0
        first = 0
    for k in range(first, args.tasks):
        assert cli(["train", "--strategy", "tune", "--seed", "0", "--task", str(k), "--eval-split", "valid", *common]) == 0
    cache.setdefault(key, task0)
    rows = [json.loads((models / "tune" / "s0" / f"task{k}" / "eval.json").read_text()) for k in range(args.tasks)]
    return sum(r["acc_seen"] for r in rows) / len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/tune_coconut"))
    ap.add_argument("--tasks", type=int, default=None, help="first N tasks only (default: all)")
    ap.add_argument("--lambda-contrastive", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    ap.add_argument("--lambda-mm", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    ap.add_argument("--tau", type=float, nargs="+", default=[0.1])
    ap.add_argument("--tau-mm", type=float, nargs="+", default=[0.1])
    args = ap.parse_args(argv)
    base = yaml.safe_load(args.params.read_text())
    args.tasks = args.tasks or len(base["cil"]["tasks"])
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [dict(zip(("lambda_contrastive", "lambda_mm", "tau", "tau_mm"), v))
            for v in itertools.product(args.lambda_contrastive, args.lambda_mm, args.tau, args.tau_mm)]
    results, cache = [], {}
    print(f"{len(grid)} points, {args.tasks} tasks each, scored on the validation split")
    for point in grid:
        t0 = time.time()
        score = run_point(base, point, args, cache)
        results.append({**point, "valid_avg_acc": score, "seconds": round(time.time() - t0, 1)})
        print(f"  {point} -> valid Avg Acc {100 * score:.2f} % ({time.time() - t0:.0f} s)", flush=True)
    best = max(results, key=lambda r: r["valid_avg_acc"])
    print(f"best: {best}")
    (args.out / "search.json").write_text(json.dumps({"results": results, "best": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
