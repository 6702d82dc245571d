"""Benchmark of the prepare-vision stage: images/s, wall time, peak memory and output size.

Runs the real stage (``python -m pipeline prepare-vision``, in this process so that its memory is measured)
on ``--params`` (default: the shipped params.yaml; a missing ``vision`` section means the defaults of
``pipeline.data.params.VisionConfig``) with ``--set`` overrides of the ``vision`` section, into a temporary
folder, then prints per source: images, images/s and seconds (from the stage's stats.json), the bias-aligned
share of train; and for the whole stage: wall time, peak resident memory (``ru_maxrss``), output size.

Usage::

    python bench/prepare_vision.py                                   # the default params
    python bench/prepare_vision.py --set shapes.n_train=100000 --set image_size=64
    python bench/prepare_vision.py --keep out/ --json bench.json     # keep the folder, write the figures
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml


def with_overrides(params: Path, sets: list[str], folder: Path) -> Path:
    """A copy of ``params`` whose ``vision`` section has each ``key=value`` of ``sets`` (dotted keys under
    vision, YAML values) applied; the file itself if there is nothing to set."""
    if not sets:
        return params
    raw = (yaml.safe_load(params.read_text()) or {}) if params.is_file() else {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. shapes.n_train=1000")
        raw["vision"] = node = raw.get("vision") or {}
        *parents, leaf = key.removeprefix("vision.").split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(params: Path, out: Path, progress: bool) -> dict:
    from pipeline.__main__ import main as cli

    timing_path = out.with_name(out.name + "-timing.json")
    argv = ["prepare-vision", "--params", str(params), "--out", str(out), "--timing", str(timing_path)]
    argv += [] if progress else ["--no-progress"]
    t0 = time.perf_counter()
    code = cli(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"prepare-vision failed with exit status {code}")
    stats = json.loads((out / "stats.json").read_text())
    timing = json.loads(timing_path.read_text())
    return {
        "wall_seconds": round(wall, 2),
        "stage_seconds": timing["seconds"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "output_mib": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1),
        "sources": {name: {"images": s["images"], "images_per_s": timing["sources"][name]["images_per_s"],
                           "seconds": timing["sources"][name]["seconds"],
                           "train_aligned_share": s["splits"].get("train", {}).get("aligned_share"),
                           "mib": round(sum(p.stat().st_size for p in (out / name).rglob("*")) / 2**20, 1)}
                    for name, s in stats["sources"].items()},
    }


def report(r: dict, params: Path) -> str:
    lines = [f"prepare-vision benchmark ({params})"]
    for name, s in r["sources"].items():
        lines.append(f"  {name:<10} : {s['images']} images, {s['images_per_s']} images/s ({s['seconds']} s), "
                     f"train aligned share {s['train_aligned_share']}, {s['mib']} MiB")
    n = sum(s["images"] for s in r["sources"].values())
    lines += [f"  wall time  : {r['wall_seconds']} s for {n} images ({n / r['wall_seconds']:.0f} images/s with "
              f"start-up and writing; stage's own count {r['stage_seconds']} s)",
              f"  peak memory: {r['peak_rss_mib']} MiB (this process)",
              f"  output     : {r['output_mib']} MiB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the vision section, e.g. shapes.rho=0.99 (repeatable)")
    parser.add_argument("--keep", type=Path, default=None, help="write the output folder here and keep it")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--progress", action="store_true", help="show the stage's progress bars")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-vision-"))
    try:
        params = with_overrides(args.params, args.set, tmp)
        r = run(params, args.keep or tmp / "vision", args.progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(report(r, args.params))
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
