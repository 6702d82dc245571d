"""The class-incremental report: :mod:`.rows` (load and validate the train stages' eval.json rows),
:mod:`.cil_metrics` (accuracy matrix, Avg/Last Acc, forgetting, BWT), :mod:`.aggregate` (one run's
metrics, seeds, metrics.json and plot data), :mod:`.figures` (static PNGs) and :mod:`.render` (report.md
and a self-contained report.html). Used by ``python -m pipeline evaluate``."""
