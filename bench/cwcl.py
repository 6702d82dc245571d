"""Benchmark: CWCL against the standard contrastive loss (CL) over seeds, on every zero-shot task.

Runs the stages ``cwcl-speech`` and ``cwcl-image`` for each loss and seed on the data already prepared in the
working tree (``data/prepared``, ``data/vision``, ``data/embeddings``: run ``dvc repro embed`` first), into a
scratch folder, and prints per zero-shot set (held-out intents, keywords, held-out colour x shape combinations):
held-out / seen / harmonic accuracy as mean ± sample std over seeds for CL, CWCL and the supervised bound, the
chance level, and the paired difference CWCL - CL per seed (the same held-out classes and initial weights).

    python bench/cwcl.py                          # seeds 0 1 2, both tasks
    python bench/cwcl.py --tasks speech --seeds 0 1 2 3 4
    python bench/cwcl.py --tune --jobs 2          # the temperature grid on the VALID split (seed 0)
    python bench/cwcl.py --set cwcl.speech.train.epochs=8

``--tune`` trains CL and CWCL at each temperature of ``--taus`` and prints the valid accuracy of the TRAINING
classes (the selection metric: no held-out class steers the choice) with the held-out valid accuracy beside it
for information; the best temperature of each loss goes to ``cwcl.<task>.tau`` in params.yaml.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SETS = {"speech": ["intents", "keywords"], "image": ["combos"]}


def set_key(params: dict, dotted: str, value) -> None:
    node = params
    *path, last = dotted.split(".")
    for k in path:
        node = node.setdefault(k, {})
    node[last] = value


def run_stage(task: str, loss: str, seed: int, params: Path, out: Path) -> tuple[dict, float]:
    inputs = ["--prepared", "data/prepared"] if task == "speech" else ["--vision", "data/vision"]
    cmd = [sys.executable, "-m", "pipeline", f"cwcl-{task}", "--params", str(params), "--loss", loss, "--seed",
           str(seed), *inputs, "--embeddings", "data/embeddings", "--out", str(out)]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{res.stderr[-1500:]}")
    return json.loads((out / "zeroshot.json").read_text()), time.time() - t0


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):5.1f} ± {100 * std:4.1f}"


def report(results: dict, seeds: list[int], tasks: list[str]) -> None:
    """results[task][loss][seed] = zeroshot.json."""
    for task in tasks:
        for name in SETS[task]:
            runs = {loss: [results[task][loss][s]["sets"][name]["metrics"] for s in seeds
                           if name in results[task].get(loss, {}).get(s, {}).get("sets", {})]
                    for loss in results[task]}
            if not any(runs.values()):
                continue
            chance = next(iter(r for v in runs.values() for r in v))
            print(f"\n{task} / {name}  ({len(seeds)} seeds; chance: held-out "
                  f"{100 * chance.get('chance_unseen', chance['chance_all']):.1f} %"
                  + (f", all {100 * chance['chance_all']:.1f} %)" if 'chance_seen' in chance else ")"))
            print(f"{'loss':12s} {'held-out':>14s} {'seen':>14s} {'harmonic':>14s}")
            for loss, ms in runs.items():
                if ms:
                    print(f"{loss:12s} " + " ".join(f"{mean_std([m[k] for m in ms if k in m]):>14s}"
                                                    for k in ("unseen", "seen", "harmonic")))
            if runs.get("cl") and runs.get("cwcl"):
                for key in ("unseen", "harmonic"):
                    diffs = [100 * (c[key] - b[key]) for c, b in zip(runs["cwcl"], runs["cl"]) if key in c and key in b]
                    if diffs:
                        std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                        print(f"CWCL - CL {key:9s} per seed: " + " ".join(f"{d:+5.1f}" for d in diffs)
                              + f" | mean {statistics.mean(diffs):+5.1f} ± {std:.1f} points")


def run_all(jobs: list[tuple], n_jobs: int) -> list[tuple[dict, float]]:
    """Run ``run_stage(*job)`` for every job, ``n_jobs`` at a time (results in the jobs' order)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(lambda job: run_stage(*job), jobs))


def tune(args, base: dict, scratch: Path) -> None:
    jobs, keys = [], []
    for task in args.tasks:
        for loss in ("cl", "cwcl"):
            for tau in args.taus:
                params = copy.deepcopy(base)
                set_key(params, f"cwcl.{task}.tau.{loss}", tau)
                path = scratch / f"params-{task}-{loss}-{tau}.yaml"
                path.write_text(yaml.safe_dump(params))
                jobs.append((task, loss, args.seeds[0], path, scratch / f"tune-{task}-{loss}-{tau}"))
                keys.append((task, loss, tau))
    done = dict(zip(keys, run_all(jobs, args.jobs)))
    for task in args.tasks:
        print(f"\n{task}: temperature grid, seed {args.seeds[0]} (valid split; selection metric: seen)")
        print(f"{'loss':6s} {'tau':>6s} {'valid seen':>11s} {'valid held-out':>15s} {'best epoch':>11s} {'s':>6s}")
        for loss in ("cl", "cwcl"):
            best = None
            for tau in args.taus:
                doc, secs = done[(task, loss, tau)]
                v = doc["valid"]
                print(f"{loss:6s} {tau:6.3f} {100 * v['seen']:10.1f}% {100 * v['unseen']:14.1f}% "
                      f"{doc['best_epoch']:11d} {secs:6.0f}")
                if best is None or v["seen"] > best[1]:
                    best = (tau, v["seen"])
            print(f"-> cwcl.{task}.tau.{loss}: {best[0]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["speech", "image"], choices=["speech", "image"])
    ap.add_argument("--losses", nargs="+", default=["cl", "cwcl", "supervised"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override a param")
    ap.add_argument("--tune", action="store_true", help="the temperature grid on the valid split instead")
    ap.add_argument("--taus", type=float, nargs="+", default=[0.03, 0.07, 0.15])
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (> 1: each with one thread: on a 2-core "
                                                          "CPU two 1-thread runs finish sooner than one 2-thread run)")
    ap.add_argument("--keep", type=Path, help="write the runs here and keep them")
    ap.add_argument("--json", type=Path, help="write every run's zeroshot.json here (one file)")
    args = ap.parse_args(argv)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.jobs > 1:
        for task in ("speech", "image"):
            set_key(base, f"cwcl.{task}.train.threads", 1)
    for item in args.set:
        key, _, value = item.partition("=")
        set_key(base, key, yaml.safe_load(value))
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="bench-cwcl-")
    scratch = args.keep or Path(tmp.name)
    scratch.mkdir(parents=True, exist_ok=True)
    if args.tune:
        tune(args, base, scratch)
        return 0
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(base))
    results: dict = {}
    seconds: dict = {}
    keys = [(task, loss, seed) for task in args.tasks for loss in args.losses for seed in args.seeds]
    jobs = [(task, loss, seed, params, scratch / task / loss / f"s{seed}") for task, loss, seed in keys]
    for (task, loss, seed), (doc, secs) in zip(keys, run_all(jobs, args.jobs)):
        results.setdefault(task, {}).setdefault(loss, {})[seed] = doc
        seconds.setdefault(f"{task}-{loss}", []).append(secs)
    report(results, args.seeds, args.tasks)
    print("\nwall time per run (s): " + ", ".join(f"{k} {statistics.mean(v):.0f}" for k, v in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "seconds": seconds}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
