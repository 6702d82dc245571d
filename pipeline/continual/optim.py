"""torch.optim.AdamW without importing ``torch._dynamo`` (about 2 s of every train stage's start-up).

``torch.optim.Adam.step`` imports ``torch._dynamo`` at every call, for graph breaks that only matter
under ``torch.compile``, and the Optimizer methods wrapped by ``torch._disable_dynamo`` (add_param_group,
zero_grad, state_dict, load_state_dict) import it at their first call to build the wrapper they then
cache. The pipeline never compiles, so both wrappers are no-ops here, yet a default run starts dozens of
stage processes and each paid the import.

:class:`AdamW` runs torch's own Adam step function (the same arithmetic, bit for bit, and the same
state_dict) without the importing wrapper, and :func:`run_eagerly` fills the cache slot of the
``_disable_dynamo`` wrappers with the plain method. The latter holds for the whole process (torch's own
optimisers too), so both are opt-in: :func:`enable_fast_path` is called by the CIL stage entry points
(processes that never compile), and until then :func:`adamw` returns ``torch.optim.AdamW`` itself.
Importing this module changes nothing. If a future torch changes either wrapper, the functions below
fall back to torch's behaviour (slower start-up, same results).
"""

from __future__ import annotations

import inspect

import torch

_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def run_eagerly(cls: type = torch.optim.Optimizer) -> None:
    """Make ``cls``'s ``torch._disable_dynamo`` methods call the plain method without importing dynamo."""
    for name in _WRAPPED:
        method = getattr(cls, name, None)
        plain = getattr(method, "__wrapped__", None)
        code = getattr(method, "__code__", None)
        # torch._compile._disable_dynamo's wrapper is a closure named ``inner`` that looks for this attribute
        # on the plain function before it imports torch._dynamo to make one
        if plain is not None and code is not None and code.co_name == "inner" and code.co_filename.endswith("_compile.py"):
            setattr(plain, "__dynamo_disable", plain)


def _plain_adam_step():
    step = inspect.unwrap(torch.optim.Adam.step)  # through profile_hook_step and _use_grad_for_differentiable
    return step if step is not torch.optim.Adam.step else None


_ADAM_STEP = _plain_adam_step()


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` whose ``step`` does not import ``torch._dynamo`` (see the module docstring)."""

    def step(self, closure=None):
        if _ADAM_STEP is None or self.defaults.get("differentiable"):
            return super().step(closure)
        # what _use_grad_for_differentiable does around the step when differentiable is False
        with torch.no_grad():
            return _ADAM_STEP(self, closure)


_FAST = False


def enable_fast_path() -> None:
    """Opt this process into the dynamo-free optimiser (a stage entry point that never compiles calls it)."""
    global _FAST
    _FAST = True
    run_eagerly()


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW: the dynamo-free subclass once :func:`enable_fast_path` ran, else torch's (bit-identical steps)."""
    return (AdamW if _FAST else torch.optim.AdamW)(params, **kwargs)
