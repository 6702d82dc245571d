"""Device, threads, determinism and RNG state: what every training stage sets up the same way.

On the CPU the same params and seed give bit-identical results (deterministic kernels, seeded RNGs).
On CUDA, ``autocast`` runs the forward pass in bf16; losses that need float32 precision (contrastive
logits at a temperature of 0.1) leave it with :func:`float32`.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ParamsError


def select_device(device: str, key: str = "train.device") -> torch.device:
    """``auto`` (CUDA when PyTorch sees one, else CPU), ``cpu`` or ``cuda`` (an error without a GPU)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"params: {key}: 'cuda' requested but no CUDA device is available (use auto or cpu)")
    if device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"params: {key}: expected one of 'auto', 'cpu', 'cuda', got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def setup(device: str, seed: int, threads: int = 0, key: str = "train.device") -> torch.device:
    """Threads (0 = all cores), determinism flags, Python/NumPy seeds; returns the device to run on.

    torch's own generator is seeded by the caller at the point its draws start (model init, or the
    RNG state restored from a checkpoint), so that resuming restores exactly the interrupted stream.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device, key)
    # CUDA kernels would need CUBLAS_WORKSPACE_CONFIG. The eager flag only: torch.use_deterministic_algorithms
    # also imports torch._inductor to set its config (2-3 s of every stage's start-up), and nothing is compiled.
    torch._C._set_deterministic_algorithms(dev.type == "cpu")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    return dev


def autocast(device: torch.device):
    """bf16 autocast on CUDA (mixed precision); a no-op on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def float32(device_type: str = "cuda"):
    """Leave autocast (if active) so that what runs inside computes in float32: softmax over logits divided
    by a small temperature keeps about 3 significant digits in bf16."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def rng_state() -> dict:
    """torch's CPU generator (and every CUDA generator when CUDA is present), as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- wall times (outside a stage's outs)


class Clock:
    """Wall time per phase of a stage: ``mark(name)`` records the seconds since the previous mark (or the start)."""

    def __init__(self):
        self.t0, self.marks = time.time(), {}

    def mark(self, name: str) -> None:
        self.marks[name] = time.time() - self.t0 - sum(self.marks.values())


def write_timing(path: str | None, seconds: dict) -> None:
    """``seconds`` (name -> s, rounded to 0.01) as JSON at ``path`` (a stage's ``--timing`` file); None: nothing."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({k: round(v, 2) for k, v in seconds.items()}, indent=1) + "\n")
