"""Import Avalanche without the optional packages it loads eagerly for features we never use.

Avalanche 0.6 imports ``wandb`` (for a confusion-matrix logger), ``torchmetrics`` (for a top-k
accuracy metric; torchmetrics in turn imports ``transformers``), torchvision's models and ops (which
import ``torch._dynamo``), matplotlib (figure metrics), tensorboard (its logger), qpsolvers (GEM),
GPUtil (a GPU-load metric) and its own classic benchmarks when ``avalanche`` itself is imported. Every
train stage is its own process, so that costs seconds per stage, and a default run has dozens of
stages. While Avalanche is imported, a meta-path finder loads placeholder modules for those (and their
submodules); they are removed right after, so a later import gets the real module. The Avalanche
features that use them (WandB and TensorBoard loggers, figure, top-k and GPU metrics, GEM, classic
benchmarks, torchvision models) raise a clear error in this process if called; the pipeline uses none
of them.

Set ``PIPELINE_FULL_AVALANCHE_IMPORT=1`` to import Avalanche normally.
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
                   "(set PIPELINE_FULL_AVALANCHE_IMPORT=1 to import it)")

        def unavailable(*args, **kwargs):
            raise RuntimeError(message)

        if attr[:1].isupper():  # a class (Figure, SummaryWriter): usable in annotations, isinstance and Union[...]
            return type(attr, (), {"__init__": unavailable, "__module__": name})
        return unavailable

    mod.__getattr__ = __getattr__
    return mod


def import_avalanche() -> None:
    """Import the parts of Avalanche the pipeline uses (idempotent)."""
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
        for name in [n for n, m in sys.modules.items() if getattr(m, "__loader__", None) is finder]:
            del sys.modules[name]  # a later import gets the real module

import_avalanche()
