"""Benchmark: CDvG against ERM and LfF over rho, seeds, methods and backbones, running the real stages.

Runs, as subprocesses into a scratch folder (``--work``; a rerun with the same folder reuses every output already
there, so an interrupted sweep continues), with a params file whose ``cdvg.data.rhos`` is the swept list:

    cdvg-data       --out <work>/sets                                          once
    cdvg-oracles    --sets <work>/sets --out <work>/oracles                    once
    cdvg-generator  --rho R --sets ... --out <work>/generator/rho<R>           per rho
    cdvg-views      --rho R --sets ... --generator ... --oracles ... --out <work>/views/rho<R>   per rho
    cdvg            --method M --backbone B --rho R --seed S ... --out <work>/runs/<M>/<B>/rho<R>/s<S>

then prints per rho and backbone: unbiased and bias-conflicting test accuracy (mean ± sample std over seeds) per
method, the paired difference to ERM (same rho, backbone, seed), the translation's oracle rates per rho and the
wall time per stage kind. ``--report DIR`` also writes the evaluate-cdvg report of these runs there.

    python bench/cdvg.py                                    # rho 0.95 0.98 0.99 0.995 x seeds 0 1 2 x all
    python bench/cdvg.py --jobs 2 --work /tmp/cdvg-sweep    # two 1-thread processes side by side; rerun continues
    python bench/cdvg.py --rhos 0.99 --seeds 0 --methods erm cdvg --set cdvg.train.train.epochs=5
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

from pipeline.cdvg.params import BACKBONES, METHODS, rho_tag  # noqa: E402
from pipeline.core.params import set_dotted  # noqa: E402

RHOS = (0.95, 0.98, 0.99, 0.995)
RATES = ("content_kept", "bias_to_target", "bias_kept", "content_to_target")
#: params that only choose WHICH outputs exist; any other difference makes a scratch folder's outputs stale
SWEPT = ("seeds", "cdvg.data.rhos", "cdvg.train.methods", "cdvg.train.backbones")


# ----------------------------------------------------------------------------- pure parts (tested)


def layout(work: Path) -> dict[str, Path]:
    return {k: work / k for k in ("sets", "oracles", "generator", "views", "runs")}


def run_dir(runs: Path, method: str, backbone: str, rho: float, seed: int) -> Path:
    return runs / method / backbone / rho_tag(rho) / f"s{seed}"


def stage_commands(work: Path, params: Path, rhos: list[float], methods: list[str], backbones: list[str],
                   seeds: list[int]) -> dict[str, list[tuple[str, list[str], Path]]]:
    """Per phase (data, oracles, per_rho, runs): (kind, argv after ``python -m pipeline``, the file whose presence
    means the step is done). Phases run in order; the steps of a phase may run side by side (per_rho entries of
    one rho are a chain: generator, then views)."""
    p = layout(work)
    common = ["--params", str(params)]
    out: dict[str, list] = {
        "data": [("data", ["cdvg-data", *common, "--out", str(p["sets"])],
                  p["sets"] / rho_tag(rhos[-1]) / "train.safetensors")],
        "oracles": [("oracles", ["cdvg-oracles", *common, "--sets", str(p["sets"]), "--out", str(p["oracles"])],
                     p["oracles"] / "oracles.json")],
        "per_rho": [], "runs": []}
    for r in rhos:
        gen, views = p["generator"] / rho_tag(r), p["views"] / rho_tag(r)
        out["per_rho"].append([
            ("generator", ["cdvg-generator", *common, "--rho", repr(float(r)), "--sets", str(p["sets"]), "--out",
                           str(gen)], gen / ".pipeline-output"),
            ("views", ["cdvg-views", *common, "--rho", repr(float(r)), "--sets", str(p["sets"]), "--generator",
                       str(gen), "--oracles", str(p["oracles"]), "--out", str(views)], views / "translation.json")])
    for r in rhos:
        for b in backbones:
            for s in seeds:
                for m in methods:
                    folder = run_dir(p["runs"], m, b, r, s)
                    out["runs"].append((f"cdvg {m} {b}", ["cdvg", *common, "--method", m, "--backbone", b, "--rho",
                                                          repr(float(r)), "--seed", str(s), "--sets", str(p["sets"]),
                                                          "--views", str(p["views"]), "--out", str(folder)],
                                        folder / "result.json"))
    return out


def data_done(work: Path, rhos: list[float]) -> bool:
    """The sets stage writes every rho at once: done only when each swept rho is there."""
    sets = layout(work)["sets"]
    return all((sets / rho_tag(r) / "train.safetensors").is_file() for r in rhos)


def stable_params(raw: dict) -> dict:
    """The params without the swept keys: what must match for a scratch folder's outputs to be reused."""
    out = json.loads(json.dumps(raw))
    for key in SWEPT:
        *path, last = key.split(".")
        node = out
        for k in path:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def fmt(xs: list[float], signed: bool = False) -> str:
    m, s = mean_std(xs)
    return f"{100 * m:+.1f} ± {100 * s:.1f}" if signed else f"{100 * m:.1f} ± {100 * s:.1f}"


def table(results: dict, rho: float, backbone: str, methods: list[str], seeds: list[int]) -> list[str]:
    """The printed lines of one rho and backbone: accuracies per method and paired differences to ERM."""
    acc = {(m, k): [results[m, backbone, rho, s]["test"][k] for s in seeds]
           for m in methods for k in ("unbiased", "conflicting")}
    lines = [f"## rho {rho:g}, {backbone} ({len(seeds)} seeds; test accuracy %, mean ± std)",
             f"{'method':9s} {'unbiased':>12s} {'conflicting':>12s} {'Δunb vs erm':>13s} {'Δconf vs erm':>13s}  "
             "Δconf per seed"]
    for m in methods:
        row = f"{m:9s} {fmt(acc[m, 'unbiased']):>12s} {fmt(acc[m, 'conflicting']):>12s}"
        if m != "erm" and "erm" in methods:
            du = [a - b for a, b in zip(acc[m, "unbiased"], acc["erm", "unbiased"])]
            dc = [a - b for a, b in zip(acc[m, "conflicting"], acc["erm", "conflicting"])]
            row += f" {fmt(du, True):>13s} {fmt(dc, True):>13s}  " + " ".join(f"{100 * d:+.1f}" for d in dc)
        lines.append(row)
    return lines


def rates_line(rho: float, translation: dict) -> str:
    rates = ", ".join(f"{k.replace('_', ' ')} {100 * translation['rates'][k]:.1f}" for k in RATES)
    return f"rho {rho:g} translation ({translation['recipe'].get('name')}, n={translation.get('n')}): {rates} (%)"


def times_lines(seconds: dict[str, list[float]]) -> list[str]:
    """Wall seconds per stage kind: runs, total and mean (outputs reused from an earlier run are not timed)."""
    return [f"{kind:16s} {len(xs):4d} runs  total {sum(xs):8.1f} s  mean {statistics.mean(xs):7.1f} s"
            for kind, xs in sorted(seconds.items()) if xs]


# ----------------------------------------------------------------------------- running


def run_step(step: tuple[str, list[str], Path], seconds: dict, force: bool = False) -> None:
    kind, argv, done = step
    if done.is_file() and not force:
        return
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{(res.stderr or res.stdout)[-1500:]}")
    seconds.setdefault(kind, []).append(time.time() - t0)


def prepare_params(args) -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text()) or {}
    base["seeds"] = list(args.seeds)
    set_dotted(base, "cdvg.data.rhos", [float(r) for r in args.rhos])
    set_dotted(base, "cdvg.train.methods", list(args.methods))
    set_dotted(base, "cdvg.train.backbones", list(args.backbones))
    for key in ("cdvg.generator.train.progress", "cdvg.train.train.progress"):
        set_dotted(base, key, False)
    if args.jobs > 1:
        for key in ("cdvg.generator.train.threads", "cdvg.train.train.threads"):
            set_dotted(base, key, 1)
    for item in args.set:
        key, _, value = item.partition("=")
        set_dotted(base, key, yaml.safe_load(value))
    return base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rhos", nargs="+", type=float, default=list(RHOS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--jobs", type=int, default=1, help="stage processes at once (each with 1 thread when > 1)")
    ap.add_argument("--set", action="append", default=[], help="a params override key=value (YAML value)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one); reused outputs continue")
    ap.add_argument("--report", default=None, help="also write the evaluate-cdvg report of the runs here")
    args = ap.parse_args(argv)
    base = prepare_params(args)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-cdvg-"))
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "bench-params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != stable_params(base):
        raise SystemExit(f"{work}: its outputs were made with other params (see {stamp}); use a fresh --work")
    stamp.write_text(json.dumps(stable_params(base), indent=1, sort_keys=True) + "\n")
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(base, sort_keys=False))
    rhos, methods, backbones, seeds = [float(r) for r in args.rhos], args.methods, args.backbones, args.seeds
    plan = stage_commands(work, params, rhos, methods, backbones, seeds)
    seconds: dict[str, list[float]] = {}
    t0 = time.time()
    run_step(plan["data"][0], seconds, force=not data_done(work, rhos))
    run_step(plan["oracles"][0], seconds)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda chain: [run_step(step, seconds) for step in chain], plan["per_rho"]))
        list(pool.map(lambda step: run_step(step, seconds), plan["runs"]))
    p = layout(work)
    results = {(m, b, r, s): json.loads((run_dir(p["runs"], m, b, r, s) / "result.json").read_text())
               for r in rhos for b in backbones for m in methods for s in seeds}
    print(f"# CDvG benchmark: {len(plan['runs'])} runs ({sum(map(len, seconds.values()))} stage processes now, "
          f"the rest reused) in {time.time() - t0:.0f} s, {args.jobs} at a time; outputs in {work}")
    for r in rhos:
        print()
        print(rates_line(r, json.loads((p["views"] / rho_tag(r) / "translation.json").read_text())))
        for b in backbones:
            print("\n".join(table(results, r, b, methods, seeds)))
    print("\nwall time per stage kind:\n" + ("\n".join(times_lines(seconds)) or "(everything reused)"))
    if args.report:
        res = subprocess.run([sys.executable, "-m", "pipeline", "evaluate-cdvg", "--params", str(params), "--runs",
                              str(p["runs"]), "--views", str(p["views"]), "--sets", str(p["sets"]), "--oracles",
                              str(p["oracles"]), "--out", args.report], cwd=ROOT, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr[-1500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
