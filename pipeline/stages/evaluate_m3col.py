"""``python -m pipeline evaluate-m3col``: M3CoL against its unimodal and fusion baselines over seeds, and the report.

Reads the params ``seeds``, ``m3col.image.variants`` and ``m3col.speech.variants`` and every run folder
``<models>/<task>/<variant>/s<seed>`` they imply (the m3col-image and m3col-speech stages' outputs); a missing or
malformed one is an error naming it, never a smaller report. Writes ``--out`` (default ``reports/m3col``) as a
whole through :func:`pipeline.core.atomic.atomic_dir`: ``metrics.json`` (DVC metrics), ``plots/accuracy.json``
and ``plots/curves.json`` (DVC plots data), ``figures/*.png``, ``report.md`` and a self-contained
``report.html``. What they hold: :mod:`pipeline.report.m3col` (with ``m3col_runs`` and ``m3col_figures``).
"""

from __future__ import annotations

import argparse

OWNER = "evaluate-m3col"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="models/m3col", help="where the m3col stages write (default: models/m3col)")
    parser.add_argument("--out", default="reports/m3col",
                        help="report folder, replaced as a whole (default: reports/m3col)")


def main(args: argparse.Namespace) -> None:
    from pipeline.core.atomic import atomic_dir
    from pipeline.core.params import parse_seeds, read_yaml, section
    from pipeline.m3col.params import MODALITIES, M3colConfig
    from pipeline.report.m3col import write_all
    from pipeline.report.m3col_runs import TASKS, load_runs

    raw = read_yaml(args.params)
    seeds, cfg = parse_seeds(raw), section(raw, M3colConfig, "m3col")
    variants = {"image": list(cfg.image.variants), "speech": list(cfg.speech.variants)}
    runs = load_runs(args.models, variants, seeds, MODALITIES)
    with atomic_dir(args.out, owner=OWNER) as tmp:
        summary = write_all(tmp, runs, variants, seeds, args.params)
    parts = [f"{t}: " + ", ".join(f"{k.replace('_vs_', ' vs ')} {v['verdict']}"
                                  for k, v in summary[t]["verdicts"].items())
             for t in TASKS if summary[t]["verdicts"]]
    print(f"evaluate-m3col: {' + '.join(f'{len(variants[t])} {t}' for t in TASKS)} variants x {len(seeds)} seeds "
          f"-> {args.out}/report.html ({'; '.join(parts) or 'no verdict: m3col, concat or aux not listed'})")
