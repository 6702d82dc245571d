"""Reading a trained generator back: the folder the ``diffusion`` stage writes (``model.safetensors``, the
Generator's state_dict; ``config.json`` with the model section and the classes), as GenView and CDvG use it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pipeline.core.params import from_dict
from pipeline.diffusion.config import DiffusionConfig
from pipeline.diffusion.generator import Generator
from pipeline.errors import DataError, one_line

FILES = ("model.safetensors", "config.json")


def load_generator(folder: str | Path, device: torch.device | str = "cpu",
                   hint: str = "run the diffusion stage (dvc repro diffusion)") -> tuple[Generator, dict]:
    """``(generator, config)``: the Generator (EMA weights included, eval mode, no grad) on ``device`` and the
    folder's ``config.json`` as a dict with ``"digest"`` added (the sha256 of config.json's bytes). A missing
    folder or file, or weights that do not fit the config, is one :class:`DataError` line (``hint``: what to run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        what = "no such folder" if not folder.is_dir() else f"no {missing[0]}"
        raise DataError(f"{folder}: {what}: not a trained generator; {hint}")
    raw = (folder / "config.json").read_bytes()
    try:
        config = json.loads(raw)
        model = config["model"]
        classes = config["classes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{folder / 'config.json'}: not a generator's config ({one_line(exc)}); {hint}") from None
    cfg = from_dict(DiffusionConfig, model, f"{folder / 'config.json'}: model")
    generator = Generator(cfg, len(classes))
    try:
        state = load_file(str(folder / "model.safetensors"))
        generator.load_state_dict(state)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise DataError(f"{folder / 'model.safetensors'}: does not fit its config.json ({one_line(exc)[:300]})") from None
    generator.requires_grad_(False).eval().to(device)
    return generator, {**config, "digest": hashlib.sha256(raw).hexdigest()}
