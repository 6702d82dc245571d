"""Benchmark: the default strategies over several seeds (default 0, 1, 2) in a fresh clone.

Prints Avg Acc and Last Acc (and forgetting, BWT) as mean ± sample std per strategy, from the
evaluate stage's metrics.json, and the run's wall time.

    python bench/seeds.py                    # seeds 0 1 2
    python bench/seeds.py --seeds 0 1 2 3 4 --keep /tmp/seeds
    python bench/seeds.py --strategies finetune replay coconut coconut-no-nspt coconut-no-mm

Also prints, per seed, each strategy's Avg and Last Acc minus replay's (same seed, same buffer size):
the paired difference is what says whether a method beats replay, not two overlapping means.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from repro import apply_overrides, clone  # noqa: E402  (bench/repro.py)


def fmt(m: dict, key: str) -> str:
    mean, std = m.get(key), m.get(f"{key}_std")
    if mean is None:
        return "n/a"
    return f"{100 * mean:5.1f} ± {100 * std:4.1f}" if std is not None else f"{100 * mean:5.1f}"


def paired_vs(details: dict, base: str) -> str:
    """Per seed, each strategy's Avg and Last Acc minus ``base``'s (points), and their mean."""
    if base not in details:
        return f"(no {base} run: no paired differences)"
    ref = {r["seed"]: r for r in details[base]["runs"]}
    lines = [f"\npaired difference to {base} (points; per seed, then mean)", f"{'strategy':16s} {'Avg Acc':>24s} {'Last Acc':>24s}"]
    for name, d in details.items():
        if name == base:
            continue
        cells = []
        for key in ("avg_acc", "last_acc"):
            diffs = [100 * (r[key] - ref[r["seed"]][key]) for r in d["runs"] if r["seed"] in ref]
            cells.append(" ".join(f"{x:+5.1f}" for x in diffs) + f" | {sum(diffs) / max(len(diffs), 1):+5.1f}")
        lines.append(f"{name:16s} {cells[0]:>24s} {cells[1]:>24s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", help="recipes to run (default: cil.strategies of params.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override a param in the clone")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (an existing one is reused: DVC "
                                               "then runs only the stages the new seeds or strategies add)")
    args = ap.parse_args(argv)
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="bench-seeds-")
    work = args.keep or Path(tmp.name) / "repo"
    overrides = [f"seeds={json.dumps(args.seeds)}"] + args.set
    if args.strategies:
        overrides.append(f"cil.strategies={json.dumps(args.strategies)}")
    if (work / "dvc.yaml").is_file():  # an earlier --keep folder: only what the overrides change is re-run
        apply_overrides(work, overrides)
    else:
        clone(work, overrides)
    t0 = time.time()
    res = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:], sep="\n")
        return res.returncode
    metrics = json.loads((work / "reports" / "cil" / "metrics.json").read_text())
    print(f"{len(args.seeds)} seeds {args.seeds}, dvc repro {time.time() - t0:.0f} s; accuracies in %, mean ± std over seeds")
    print(f"{'strategy':16s} {'Avg Acc':>13s} {'Last Acc':>13s} {'forgetting':>13s} {'BWT':>13s}")
    for name, m in metrics.items():
        print(f"{name:16s} {fmt(m, 'avg_acc'):>13s} {fmt(m, 'last_acc'):>13s} {fmt(m, 'forgetting'):>13s} {fmt(m, 'bwt'):>13s}")
    print(paired_vs(json.loads((work / "reports" / "cil" / "details.json").read_text()), "replay"))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
