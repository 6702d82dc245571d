"""``python -m pipeline evaluate-cwcl``: CL against CWCL (and the supervised bound) over seeds, and the report.

Reads the params ``seeds`` and ``cwcl.losses`` and every run folder ``<models>/<task>/<loss>/s<seed>`` they
imply (the cwcl-speech and cwcl-image stages' outputs); a missing one is an error naming it, never a smaller
report. Writes ``--out`` (default ``reports/cwcl``) as a whole through :func:`pipeline.core.atomic.atomic_dir`:
``metrics.json`` (DVC metrics), ``plots/zeroshot.json`` and ``plots/per_class.json`` (DVC plots data),
``figures/*.png``, ``report.md`` and a self-contained ``report.html``. What they hold:
:mod:`pipeline.report.cwcl` (with ``cwcl_runs`` and ``cwcl_figures``).
"""

from __future__ import annotations

import argparse

OWNER = "evaluate-cwcl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="models/cwcl", help="where the cwcl stages write (default: models/cwcl)")
    parser.add_argument("--out", default="reports/cwcl", help="report folder, replaced as a whole (default: reports/cwcl)")


def main(args: argparse.Namespace) -> None:
    from pipeline.core.atomic import atomic_dir
    from pipeline.core.params import parse_seeds, read_yaml, section
    from pipeline.cwcl.params import CwclConfig
    from pipeline.report.cwcl import write_all
    from pipeline.report.cwcl_runs import TASKS, load_runs

    raw = read_yaml(args.params)
    seeds, losses = parse_seeds(raw), section(raw, CwclConfig, "cwcl").losses
    runs = load_runs(args.models, losses, seeds)
    with atomic_dir(args.out, owner=OWNER) as tmp:
        summary = write_all(tmp, args.models, runs, losses, seeds, args.params)
    parts = [f"{t}/{n} {e['claim']['verdict']} the paper's range" for t in TASKS
             for n, e in summary[t].items() if "claim" in e]
    print(f"evaluate-cwcl: {len(losses)} losses x {len(seeds)} seeds -> {args.out}/report.html ({'; '.join(parts)})")
