"""Benchmark: GenView's variants against SimCLR over seeds (linear probes and k-NN, shape and colour).

Runs the ``genview`` stage for every variant and seed on the generated views already in the working tree
(``data/genview``: run ``dvc repro genview-views`` first), into a scratch folder, then prints per metric: test
accuracy mean ± sample std over seeds per variant, the paired difference to SimCLR (mean ± std and per seed),
the two ablations (adaptive − fixed noise, GenView − adaptive: the quality-driven loss alone) and the wall
time per stage. With ``--report DIR`` it also writes the evaluate-genview report of these runs there.

    python bench/genview.py                      # seeds 0 1 2, the four variants, one stage at a time
    python bench/genview.py --jobs 2             # two 1-thread stage processes side by side
    python bench/genview.py --set genview.ssl.train.epochs=4 --report /tmp/genview-report
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
from pipeline.genview.params import VARIANTS  # noqa: E402

METRICS = (("probe", "shape"), ("probe", "colour"), ("knn", "shape"), ("knn", "colour"))


def run_stage(variant: str, seed: int, params: Path, out: Path) -> tuple[dict, float]:
    folder = out / variant / f"s{seed}"
    cmd = [sys.executable, "-m", "pipeline", "genview", "--params", str(params), "--variant", variant,
           "--seed", str(seed), "--vision", "data/vision", "--views", "data/genview", "--out", str(folder)]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{res.stderr[-1500:]}")
    return json.loads((folder / "result.json").read_text()), time.time() - t0


def value(result: dict, metric: tuple[str, str]) -> float:
    ev, attr = metric
    return result[ev][attr]["test"] if ev == "probe" else result[ev][attr]


def fmt(xs: list[float], signed: bool = False) -> str:
    m, s = statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * m:+.1f} ± {100 * s:.1f}" if signed else f"{100 * m:.1f} ± {100 * s:.1f}"


def report(results: dict, variants: list[str], seeds: list[int], seconds: dict) -> None:
    for metric in METRICS:
        acc = {v: [value(results[v, s], metric) for s in seeds] for v in variants}
        print(f"\n## {metric[0]} {metric[1]} ({len(seeds)} seeds; test accuracy, %)")
        print(f"{'variant':9s} {'accuracy':>12s} {'- simclr (paired)':>18s}  per seed")
        for v in variants:
            if v == "simclr" or "simclr" not in acc:
                print(f"{v:9s} {fmt(acc[v]):>12s}")
                continue
            diff = [a - b for a, b in zip(acc[v], acc["simclr"])]
            print(f"{v:9s} {fmt(acc[v]):>12s} {fmt(diff, True):>18s}  " + " ".join(f"{100 * d:+.1f}" for d in diff))
        for a, b, what in (("adaptive", "fixed", "adaptive vs fixed noise"),
                           ("genview", "adaptive", "the quality-driven loss alone")):
            if a in acc and b in acc:
                print(f"{a} − {b} ({what}): {fmt([x - y for x, y in zip(acc[a], acc[b])], True)}")
    print("\nseconds per stage: " + ", ".join(f"{v} {statistics.mean(seconds[v]):.0f}" for v in variants))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=1, help="stage processes at once (each with 1 thread)")
    ap.add_argument("--set", action="append", default=[], help="a params override key=value (YAML value)")
    ap.add_argument("--out", default=None, help="scratch folder for the runs (default: a temporary one)")
    ap.add_argument("--report", default=None, help="also write the evaluate-genview report of the runs here")
    args = ap.parse_args(argv)
    if not (ROOT / "data/genview/views.safetensors").is_file():
        raise SystemExit("data/genview is missing: run `dvc repro genview-views` first")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    set_dotted(base, "genview.ssl.variants", list(args.variants))
    set_dotted(base, "genview.ssl.train.progress", False)
    set_dotted(base, "genview.ssl.train.threads", 1)
    base["seeds"] = list(args.seeds)
    for item in args.set:
        key, _, val = item.partition("=")
        set_dotted(base, key, yaml.safe_load(val))
    scratch = Path(args.out or tempfile.mkdtemp(prefix="bench-genview-"))
    scratch.mkdir(parents=True, exist_ok=True)
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(base, sort_keys=False))
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda j: run_stage(*j, params, scratch), jobs))
    results = {j: r for j, (r, _) in zip(jobs, done)}
    seconds: dict = {}
    for (v, _), (_, sec) in zip(jobs, done):
        seconds.setdefault(v, []).append(sec)
    print(f"# GenView benchmark: {len(jobs)} stage runs in {time.time() - t0:.0f} s ({args.jobs} at a time), "
          f"runs in {scratch}")
    report(results, list(args.variants), args.seeds, seconds)
    if args.report:
        res = subprocess.run([sys.executable, "-m", "pipeline", "evaluate-genview", "--params", str(params),
                              "--models", str(scratch), "--out", args.report], cwd=ROOT, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr[-1500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
