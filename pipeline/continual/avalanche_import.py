"""A faster import of Avalanche for the class-incremental stage processes, confined to those processes.

Avalanche 0.6 imports ``wandb`` (for a confusion-matrix logger), ``torchmetrics`` (for a top-k
accuracy metric; torchmetrics in turn imports ``transformers``), torchvision's models and ops (which
import ``torch._dynamo``), matplotlib (figure metrics), tensorboard (its logger), qpsolvers (GEM),
GPUtil (a GPU-load metric) and its own classic benchmarks when ``avalanche`` itself is imported. Every
train stage is its own process, so that costs seconds per stage, and a default run has dozens of stages.

:func:`fast_import` (called by the CIL stage entry points only, before anything imports Avalanche) loads
placeholder modules for those while Avalanche is imported. Right after, every placeholder is taken out
of ``sys.modules`` and out of its parent package (``torchvision.models``, ``torch.utils.tensorboard``,
...), whose attribute then imports the real module when first read: code that uses it later in the same
process gets the real module, and pays its import only then. What stays
stubbed is what Avalanche bound during its own import (its WandB and TensorBoard loggers, figure, top-k
and GPU metrics, GEM, classic benchmarks); those raise a clear error if called. The pipeline uses none.

Any other importer of :mod:`pipeline.continual` gets Avalanche imported normally. Set
``PIPELINE_FULL_AVALANCHE_IMPORT=1`` to make :func:`fast_import` do the same.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types

#: module -> modules imported in its place. Avalanche's own import order is fragile: its package
#: ``__init__`` reaches ``avalanche.training`` through a cycle that only resolves if
#: ``avalanche.evaluation.metrics`` is already imported, which the deferred ``benchmarks.classic`` did.
_DEFERRED: dict[str, tuple[str, ...]] = {
    "wandb": (),
    "torchmetrics": (),
    "torchmetrics.functional": (),
    "torchvision.models": (),  # with torchvision.ops, ~2 s: roi_align imports torch._dynamo
    "torchvision.ops": (),
    "avalanche.benchmarks.classic": ("avalanche.models", "avalanche.evaluation.metrics"),  # ~2.5 s of datasets
    "matplotlib": (),  # ~0.8 s
    "qpsolvers": (),  # ~0.3 s, with scipy.sparse
    "tensorboard": (),
    "torch.utils.tensorboard": (),
    "GPUtil": (),
}


class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the deferred modules while Avalanche is imported and loads placeholders for them."""

    def find_spec(self, name, path=None, target=None):
        deferred = any(name == d or name.startswith(d + ".") for d in _DEFERRED)  # submodules too
        return importlib.util.spec_from_loader(name, self, is_package=True) if deferred else None

    def create_module(self, spec):
        return _placeholder(spec.name)

    def exec_module(self, module):
        for dep in _DEFERRED.get(module.__name__, ()):
            importlib.import_module(dep)


def _placeholder(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package: its submodules are deferred too (see _Placeholders.find_spec)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        message = (f"{name}.{attr} is not available: pipeline.continual.avalanche_import deferred {name} "
                   "while Avalanche was imported (set PIPELINE_FULL_AVALANCHE_IMPORT=1 to import it)")

        def unavailable(*args, **kwargs):
            raise RuntimeError(message)

        if attr[:1].isupper():  # a class (Figure, SummaryWriter): usable in annotations, isinstance and Union[...]
            return type(attr, (), {"__init__": unavailable, "__module__": name})
        return unavailable

    mod.__getattr__ = __getattr__
    return mod


def _restore(name: str, placeholders: dict[str, types.ModuleType]) -> None:
    """Take the placeholder ``name`` out of sys.modules and out of its parent package; the parent then imports
    the real module the first time the attribute is read (``torchvision.models`` after ``import torchvision``),
    and ``import name`` imports it as usual."""
    placeholder = sys.modules.pop(name)
    parent_name, _, child = name.rpartition(".")
    if not parent_name or parent_name in placeholders:
        return  # top level, or a submodule of a placeholder: the real parent imports its own submodules
    parent = sys.modules.get(parent_name)
    if parent is not None and parent.__dict__.get(child) is placeholder:
        del parent.__dict__[child]
        _import_on_access(parent, child)


def _import_on_access(parent: types.ModuleType, child: str) -> None:
    """Give ``parent`` a module ``__getattr__`` (PEP 562) that imports ``parent.child`` when it is first read;
    the import sets the attribute, so the hook is not consulted again for it."""
    previous = parent.__dict__.get("__getattr__")

    def __getattr__(attr: str):
        if attr == child:
            return importlib.import_module(f"{parent.__name__}.{child}")
        if previous is not None:
            return previous(attr)
        raise AttributeError(f"module {parent.__name__!r} has no attribute {attr!r}")

    parent.__getattr__ = __getattr__


def fast_import() -> None:
    """Import the parts of Avalanche the pipeline uses without the deferred modules (idempotent)."""
    if "avalanche.training" in sys.modules or os.environ.get("PIPELINE_FULL_AVALANCHE_IMPORT") == "1":
        import avalanche.training  # noqa: F401
        return
    finder = _Placeholders()
    sys.meta_path.insert(0, finder)
    try:
        import avalanche.training  # noqa: F401
        import avalanche.training.plugins  # noqa: F401
        import avalanche.training.storage_policy  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
        placeholders = {n: m for n, m in sys.modules.items() if getattr(m, "__loader__", None) is finder}
        for name in sorted(placeholders, key=lambda n: n.count(".")):  # parents first
            _restore(name, placeholders)
