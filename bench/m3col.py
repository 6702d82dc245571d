"""Benchmark: M3CoL against its baselines over seeds, on both fusion tasks.

Runs the stages ``m3col-image`` and ``m3col-speech`` for every variant (``aux`` included, which the default
``dvc repro`` leaves out) and seed on the data already prepared in the working tree (``data/m3col``: run
``dvc repro prepare-m3col`` first), into a scratch folder, then prints per task: test accuracy mean ± sample std
over seeds per variant, the paired difference to UniConcat (``concat``) per seed, the fusion margin (best fusion
variant − best unimodal variant), M3CoL − aux (the contrastive term alone), and the wall time per stage. With
``--report DIR`` it also writes the evaluate-m3col report of these runs there.

    python bench/m3col.py                       # seeds 0 1 2, both tasks, every variant
    python bench/m3col.py --jobs 2              # two 1-thread stage processes side by side
    python bench/m3col.py --tasks image --seeds 0 1 2 3 4 --set m3col.loss.weight=0.3
    python bench/m3col.py --variants m3col --set m3col.loss.weight=1.0   # one variant (no paired columns)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.params import set_dotted  # noqa: E402
from pipeline.m3col.params import FUSION_VARIANTS, MODALITIES, variants_of  # noqa: E402


def run_stage(task: str, variant: str, seed: int, params: Path, out: Path) -> tuple[dict, float]:
    extra = ["--prepared", "data/prepared"] if task == "speech" else []
    cmd = [sys.executable, "-m", "pipeline", f"m3col-{task}", "--params", str(params), "--variant", variant,
           "--seed", str(seed), "--data", "data/m3col", *extra, "--out", str(out / task / variant / f"s{seed}")]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{res.stderr[-1500:]}")
    return json.loads((out / task / variant / f"s{seed}" / "result.json").read_text()), time.time() - t0


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def fmt(xs: list[float], signed: bool = False) -> str:
    m, s = mean_std(xs)
    return f"{100 * m:+.1f} ± {100 * s:.1f}" if signed else f"{100 * m:.1f} ± {100 * s:.1f}"


def report(results: dict, seeds: list[int], tasks: list[str], seconds: dict, only: list[str] | None) -> None:
    if only:  # a subset of variants: their test and valid accuracy only
        for task in tasks:
            for v in only:
                test = [results[task, v, s]["test"]["accuracy"] for s in seeds]
                valid = [results[task, v, s]["valid"]["accuracy"] for s in seeds]
                print(f"{task:6s} {v:8s} test {fmt(test)}  valid {fmt(valid)}  "
                      f"({statistics.mean(seconds[task, v]):.1f} s/stage)")
        return
    for task in tasks:
        acc = {v: [results[task, v, s]["test"]["accuracy"] for s in seeds] for v in variants_of(task)}
        print(f"\n## {task} + text ({len(seeds)} seeds; test accuracy, %)")
        ceiling = results[task, "concat", seeds[0]].get("ceiling")
        if ceiling:
            print("analytic ceilings: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in ceiling.items()))
        print(f"{'variant':8s} {'accuracy':>14s} {'- concat (paired)':>20s}  per seed{'':14s} {'s/stage':>8s}")
        for v in variants_of(task):
            diff = [a - c for a, c in zip(acc[v], acc["concat"])]
            per_seed = " ".join(f"{100 * d:+.1f}" for d in diff) if v != "concat" else ""
            print(f"{v:8s} {fmt(acc[v]):>14s} {fmt(diff, True) if v != 'concat' else '':>20s}  {per_seed:22s} "
                  f"{statistics.mean(seconds[task, v]):8.1f}")
        uni = max(MODALITIES[task], key=lambda v: statistics.mean(acc[v]))
        fused = max(FUSION_VARIANTS, key=lambda v: statistics.mean(acc[v]))
        margin = [a - b for a, b in zip(acc[fused], acc[uni])]
        print(f"fusion margin: best fusion {fused} − best unimodal {uni} = {fmt(margin, True)} points (paired)")
        print(f"m3col − aux (the contrastive term alone): {fmt([a - b for a, b in zip(acc['m3col'], acc['aux'])], True)}")
        print(f"m3col − m3co (SoftCLIP after the switch): {fmt([a - b for a, b in zip(acc['m3col'], acc['m3co'])], True)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["image", "speech"], choices=["image", "speech"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None, help="only these variants (default: all of each task)")
    ap.add_argument("--jobs", type=int, default=1, help="stage processes at once (each with 1 thread when > 1)")
    ap.add_argument("--set", action="append", default=[], help="a params override key=value (YAML value)")
    ap.add_argument("--out", default=None, help="scratch folder for the runs (default: a temporary one)")
    ap.add_argument("--report", default=None, help="also write the evaluate-m3col report of the runs here")
    args = ap.parse_args(argv)
    if not (ROOT / "data/m3col/manifest.json").is_file():
        raise SystemExit("data/m3col is missing: run `dvc repro prepare-m3col` first")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for task in ("image", "speech"):
        set_dotted(base, f"m3col.{task}.variants", list(variants_of(task)))
        set_dotted(base, f"m3col.{task}.train.progress", False)
        if args.jobs > 1:
            set_dotted(base, f"m3col.{task}.train.threads", 1)
    base["seeds"] = list(args.seeds)
    for item in args.set:
        key, _, value = item.partition("=")
        set_dotted(base, key, yaml.safe_load(value))
    scratch = Path(args.out or tempfile.mkdtemp(prefix="bench-m3col-"))
    scratch.mkdir(parents=True, exist_ok=True)
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(base, sort_keys=False))
    jobs = [(t, v, s) for s in args.seeds for t in args.tasks for v in variants_of(t) if v in (args.variants or [v])]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda j: run_stage(*j, params, scratch), jobs))
    results = {j: r for j, (r, _) in zip(jobs, done)}
    seconds: dict = {}
    for (t, v, _), (_, sec) in zip(jobs, done):
        seconds.setdefault((t, v), []).append(sec)
    print(f"# M3CoL benchmark: {len(jobs)} stage runs in {time.time() - t0:.0f} s ({args.jobs} at a time), "
          f"runs in {scratch}")
    report(results, args.seeds, args.tasks, seconds, args.variants)
    if args.report and not args.variants:
        res = subprocess.run([sys.executable, "-m", "pipeline", "evaluate-m3col", "--params", str(params),
                              "--models", str(scratch), "--out", args.report], cwd=ROOT, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr[-1500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
