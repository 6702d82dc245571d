"""Benchmark: the whole `dvc repro` in a fresh clone of this repository.

Prints the wall time of every stage (from the pipeline's own timing log), the start-up overhead of a
stage process (interpreter + imports, measured separately), peak memory per stage, the totals per stage
kind, DVC's own overhead, and the metrics table of the run.

    python bench/repro.py                         # the default params
    python bench/repro.py --set 'seeds=[0, 1, 2]' --keep /tmp/run3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def set_param(params: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = params
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def clone(dest: Path, overrides: list[str]) -> None:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    apply_overrides(dest, overrides)


def apply_overrides(work: Path, overrides: list[str]) -> None:
    """Set ``KEY=YAML`` overrides in ``work``/params.yaml (dotted keys)."""
    if overrides:
        params = yaml.safe_load((work / "params.yaml").read_text())
        for item in overrides:
            key, _, raw = item.partition("=")
            set_param(params, key, yaml.safe_load(raw))
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def import_seconds(imports: str, repeats: int = 3) -> float:
    """Median wall time of a fresh interpreter running ``imports`` (Python statements) and leaving as a stage
    does (os._exit: no teardown), i.e. a stage's start-up overhead."""
    times = []
    for _ in range(repeats):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", f"{imports}; import os; os._exit(0)"], check=True, capture_output=True)
        times.append(time.time() - t0)
    return statistics.median(times)


def stage_kind(argv: list[str]) -> str:
    return argv[0] if argv else "?"


def stage_label(argv: list[str]) -> str:
    opts = dict(zip(argv[1::2], argv[2::2])) if len(argv) > 1 else {}
    if argv[0] == "train":
        return f"train@{opts.get('--strategy')}-{opts.get('--seed')}-task{opts.get('--task')}"
    if argv[0] == "init":
        return f"init@{opts.get('--strategy')}-{opts.get('--seed')}"
    if argv[0] == "first":
        return f"first@{opts.get('--seed')}"
    return argv[0]


def report(work: Path, total: float, log: list[dict], overhead: dict[str, float]) -> str:
    lines = [f"{'stage':40s} {'seconds':>8s} {'peak MiB':>9s}"]
    for row in log:
        lines.append(f"{stage_label(row['argv']):40s} {row['seconds']:8.1f} {row['peak_rss_mb']:9.0f}")
    kinds: dict[str, list[float]] = {}
    for row in log:
        kinds.setdefault(stage_kind(row["argv"]), []).append(row["seconds"])
    lines.append("")
    for kind, secs in kinds.items():
        ov = overhead.get(kind)
        ov_txt = f", start-up ~{ov:.1f} s each ({ov * len(secs):.0f} s in all)" if ov else ""
        lines.append(f"{kind:10s} {len(secs):3d} stage(s) {sum(secs):8.1f} s{ov_txt}")
    training = kinds.get("first", []) + kinds.get("train", [])
    lines.append(f"{'training':10s} {len(training):3d} stage(s) {sum(training):8.1f} s (first + train: the 12-minute budget)")
    staged = sum(r["seconds"] for r in log)
    lines.append(f"{'all stages':10s} {len(log):3d} stage(s) {staged:8.1f} s; dvc repro wall {total:.1f} s "
                 f"(DVC's own overhead {total - staged:.1f} s); peak memory {max(r['peak_rss_mb'] for r in log):.0f} MiB")
    metrics = work / "reports" / "cil" / "metrics.json"
    if metrics.is_file():
        lines += ["", f"{'strategy':16s} {'avg_acc':>8s} {'last_acc':>9s} {'forgetting':>11s} {'bwt':>7s}"]
        for name, m in json.loads(metrics.read_text()).items():
            f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"{name:16s} {f(m['avg_acc']):>8s} {f(m['last_acc']):>9s} {f(m['forgetting']):>11s} {f(m['bwt']):>7s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override a param in the clone")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    tmp = None
    if args.keep:
        work = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-pipeline-")
        work = Path(tmp.name) / "repo"
    clone(work, args.set)
    log_path = work / "timing.jsonl"
    env = dict(os.environ, PIPELINE_TIMING_LOG=str(log_path))
    t0 = time.time()
    res = subprocess.run(["dvc", "repro"], cwd=work, env=env, capture_output=True, text=True)
    total = time.time() - t0
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:], sep="\n")
        return res.returncode
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    # what a train or first stage imports, with its start-up shortcut (pipeline/stages/train.py)
    train_import = import_seconds("from pipeline.continual.avalanche_import import fast_import; fast_import(); "
                                  "import pipeline.continual.run")
    overhead = {"train": train_import, "first": train_import, "init": import_seconds("import pipeline.models.build")}
    print(report(work, total, log, overhead))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
