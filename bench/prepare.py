"""Benchmark of the prepare stage: throughput, wall time, peak memory and corpus size.

Runs the real stage (``python -m pipeline prepare``, in this process so that its memory is measured)
on ``--params`` (default: the shipped params.yaml) into a temporary folder, then prints:

* synthesis throughput (utterances/s, from the stage's stats.json; synthetic source only) and
  feature throughput (utterances / seconds of the feature pass, also from stats.json);
* wall time of the whole stage (measured here) and of its parts;
* peak resident memory: ``ru_maxrss`` of this process (RUSAGE_SELF: the stage itself) and of the
  largest child process (RUSAGE_CHILDREN: a synthesis or feature worker), in MiB;
* the corpus: utterances and speakers per split, classes, tasks, distinct phrasings, hours of audio.

Usage::

    python bench/prepare.py                       # the default prepare (params.yaml as shipped)
    python bench/prepare.py --params my.yaml --keep out/   # keep the prepared folder
    python bench/prepare.py --json bench.json     # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def maxrss_mib(who: int) -> float:
    """Peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def run(params: Path, out: Path, progress: bool) -> dict:
    """Run prepare into ``out`` and return the figures (raises SystemExit if the stage fails)."""
    from pipeline.__main__ import main as cli

    argv = ["prepare", "--params", str(params), "--out", str(out)] + ([] if progress else ["--no-progress"])
    t0 = time.perf_counter()
    code = cli(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"prepare failed with exit status {code}")
    stats = json.loads((out / "stats.json").read_text())
    splits = stats["splits"]
    n_utts = sum(s["utterances"] for s in splits.values())
    synth = stats.get("synthesis") or {}
    feat_s = stats["feature_seconds"]
    return {
        "params": str(params),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "wall_seconds": round(wall, 2),
        "stage_seconds": stats["seconds"],
        "synthesis_seconds": round(synth["seconds"], 2) if synth else None,
        "synthesis_utt_per_s": round(synth["utterances_per_s"], 1) if synth else None,
        "synthesis_workers": synth.get("workers"),
        "feature_seconds": feat_s,
        "feature_utt_per_s": round(n_utts / feat_s, 1) if feat_s > 0 else None,
        "peak_rss_self_mib": round(maxrss_mib(resource.RUSAGE_SELF), 1),
        "peak_rss_children_mib": round(maxrss_mib(resource.RUSAGE_CHILDREN), 1),
        "utterances": {s: v["utterances"] for s, v in splits.items()},
        "speakers": {s: v["speakers"] for s, v in splits.items()},
        "classes": stats["classes"],
        "tasks": stats["tasks"],
        "distinct_phrasings": stats["phrasings"],
        # synthesis counts exact samples; the feature-based figure is frames x hop (slightly less)
        "hours": round(synth["hours"], 3) if synth else round(sum(v["hours"] for v in splits.values()), 3),
        "output_mib": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1),
    }


def report(r: dict) -> str:
    per = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    lines = [
        f"prepare benchmark ({r['params']}, {r['cores']} cores)",
        f"  corpus     : {sum(r['utterances'].values())} utterances ({per(r['utterances'])}); "
        f"speakers {per(r['speakers'])}",
        f"               {r['classes']} classes in {r['tasks']} tasks, {r['distinct_phrasings']} distinct phrasings, "
        f"{r['hours']:.2f} h of audio; output {r['output_mib']} MiB",
    ]
    if r["synthesis_seconds"] is not None:
        lines.append(f"  synthesis  : {r['synthesis_utt_per_s']} utt/s ({r['synthesis_seconds']} s, "
                     f"{r['synthesis_workers']} workers)")  # fmt: skip
    lines += [
        f"  features   : {r['feature_utt_per_s']} utt/s ({r['feature_seconds']} s)",
        f"  wall time  : {r['wall_seconds']} s (stage's own count: {r['stage_seconds']} s)",
        f"  peak memory: {r['peak_rss_self_mib']} MiB this process, {r['peak_rss_children_mib']} MiB largest worker",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    parser.add_argument("--keep", type=Path, default=None, help="write the prepared folder here and keep it")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--progress", action="store_true", help="show the stage's progress bars")
    args = parser.parse_args(argv)

    tmp = None
    if args.keep is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
        out = tmp / "prepared"
    else:
        out = args.keep
    try:
        r = run(args.params, out, args.progress)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(r))
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
