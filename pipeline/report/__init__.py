"""The class-incremental report: :mod:`.metrics` (load eval.json rows, accuracy matrix, Avg/Last Acc,
forgetting, BWT, seed aggregation, metrics.json), :mod:`.figures` (static PNGs) and :mod:`.render`
(report.md and a self-contained report.html). Used by ``python -m pipeline evaluate``."""
