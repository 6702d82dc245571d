"""Benchmark: the init, first, train and evaluate stages in DVC's order, without DVC (e.g. on a GPU machine).

Runs ``python -m pipeline init`` / ``first`` / ``train`` / ``evaluate`` as separate processes, exactly as dvc.yaml
calls them, over an existing prepared folder, and prints each stage's wall time, peak host memory and
peak GPU memory, then the run's metrics. The device comes from params (``train.device: auto`` takes
CUDA with bf16 autocast when there is one).

    python bench/stages.py --prepared data/prepared --strategies coconut+skd joint
    python bench/stages.py --prepared /data/prep --set train.device=cpu --keep /tmp/cpu-run
    python bench/stages.py --prepared data/prepared --embeddings data/embeddings --strategies coconut coconut-cwcl \
        --set 'seeds=[0, 1, 2]' --paired coconut      # several seeds: mean ± std and per-seed paired differences

``--embeddings`` (default: ``data/embeddings`` beside ``--prepared``) is the embed stage's folder, read by
recipes with ``mm_target: frozen_text``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from repro import apply_overrides  # noqa: E402
from seeds import fmt, paired_vs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def stage(argv: list[str], work: Path, env: dict) -> None:
    res = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=work, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"stage {' '.join(argv)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    last = [line for line in res.stdout.splitlines() if line.strip()]
    if last:
        print("   ", last[-1], flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, required=True, help="the prepare stage's output folder")
    ap.add_argument("--embeddings", type=Path, help="the embed stage's folder (default: data/embeddings beside --prepared)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--strategies", nargs="+", help="default: cil.strategies of the params")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override a param")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    ap.add_argument("--paired", metavar="STRATEGY", help="also print each strategy's per-seed Avg/Last Acc minus this one's")
    args = ap.parse_args(argv)

    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="bench-stages-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(args.params.read_text())
    overrides = args.set + ([f"cil.strategies={json.dumps(args.strategies)}"] if args.strategies else [])
    apply_overrides(work, overrides)
    params = yaml.safe_load((work / "params.yaml").read_text())
    log = work / "timing.jsonl"
    log.unlink(missing_ok=True)
    # this checkout's pipeline package, installed or not (a GPU machine may only have a copy of the tree)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PIPELINE_TIMING_LOG=str(log), PYTHONPATH=path)
    prepared = str(args.prepared.resolve())
    embeddings = str((args.embeddings or args.prepared.resolve().parent / "embeddings").resolve())

    t0 = time.time()
    for seed in params["seeds"]:  # the first task once per group of strategies that train it alike
        stage(["first", "--seed", str(seed), "--prepared", prepared, "--embeddings", embeddings, "--models", "models"],
              work, env)
    for strategy in params["cil"]["strategies"]:
        for seed in params["seeds"]:
            common = ["--strategy", strategy, "--seed", str(seed), "--prepared", prepared, "--models", "models"]
            stage(["init", *common], work, env)
            for task in params["cil"]["tasks"]:
                stage(["train", *common, "--embeddings", embeddings, "--task", str(task["k"])], work, env)
    stage(["evaluate", "--prepared", prepared, "--models-dir", "models", "--out", "reports/cil"], work, env)
    total = time.time() - t0

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    print(f"\n{'stage':44s} {'seconds':>8s} {'host MiB':>9s} {'GPU MiB':>8s}")
    for r in rows:
        a = r["argv"]
        label = " ".join([a[0]] + [a[i + 1] for i, x in enumerate(a) if x in ("--strategy", "--seed", "--task")])
        gpu = r.get("peak_gpu_mb")
        print(f"{label:44s} {r['seconds']:8.1f} {r['peak_rss_mb']:9.0f} {'-' if gpu is None else f'{gpu:.0f}':>8s}")
    train = [r["seconds"] for r in rows if r["argv"][0] in ("first", "train")]
    print(f"\n{len(train)} training stages (first + train) {sum(train):.1f} s (mean {sum(train) / max(len(train), 1):.1f} s); "
          f"all stages {total:.1f} s")
    metrics = json.loads((work / "reports" / "cil" / "metrics.json").read_text())
    if len(params["seeds"]) > 1:
        print(f"\n{len(params['seeds'])} seeds {params['seeds']}; accuracies in %, mean ± std over seeds")
        print(f"{'strategy':16s} {'Avg Acc':>13s} {'Last Acc':>13s} {'forgetting':>13s} {'train s/seed':>13s}")
        for name, m in metrics.items():
            print(f"{name:16s} {fmt(m, 'avg_acc'):>13s} {fmt(m, 'last_acc'):>13s} {fmt(m, 'forgetting'):>13s} "
                  f"{m['train_seconds']:13.0f}")
    else:
        print(f"\n{'strategy':16s} {'avg_acc':>8s} {'last_acc':>9s} {'forgetting':>11s}")
        for name, m in metrics.items():
            f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"{name:16s} {f(m['avg_acc']):>8s} {f(m['last_acc']):>9s} {f(m['forgetting']):>11s}")
    if args.paired:
        print(paired_vs(json.loads((work / "reports" / "cil" / "details.json").read_text()), args.paired))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
