"""Import Avalanche without the optional packages it loads eagerly for features we never use.

Avalanche 0.6 imports ``wandb`` (for a confusion-matrix logger) and ``torchmetrics`` (for a top-k
accuracy metric; torchmetrics in turn imports ``transformers``) when ``avalanche`` itself is imported.
Every train stage is its own process, so that costs seconds per stage, and a default run has dozens of
stages. While Avalanche is imported, placeholder modules stand in for those two packages; they are
removed right after, so a later ``import wandb`` or ``import torchmetrics`` gets the real package. The
Avalanche features that use them (WandB confusion matrices, top-k accuracy metrics) raise a clear error
in this process if called; the pipeline uses neither.

Set ``PIPELINE_FULL_AVALANCHE_IMPORT=1`` to import Avalanche normally.
"""

from __future__ import annotations

import os
import sys
import types

_DEFERRED = ("wandb", "torchmetrics", "torchmetrics.functional")


def _placeholder(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so that submodule imports resolve to our placeholders

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"{name}.{attr} is not available: pipeline.continual.avalanche_import deferred {name} "
                               "(set PIPELINE_FULL_AVALANCHE_IMPORT=1 to import it)")

        return unavailable

    mod.__getattr__ = __getattr__
    return mod


def import_avalanche() -> None:
    """Import the parts of Avalanche the pipeline uses (idempotent)."""
    if "avalanche.training" in sys.modules or os.environ.get("PIPELINE_FULL_AVALANCHE_IMPORT") == "1":
        import avalanche.training  # noqa: F401
        return
    installed = [n for n in _DEFERRED if n not in sys.modules]
    for name in installed:
        sys.modules[name] = _placeholder(name)
    try:
        import avalanche.training  # noqa: F401
        import avalanche.training.plugins  # noqa: F401
        import avalanche.training.storage_policy  # noqa: F401
    finally:
        for name in installed:
            if isinstance(sys.modules.get(name), types.ModuleType) and getattr(sys.modules[name], "__file__", None) is None:
                del sys.modules[name]


import_avalanche()
