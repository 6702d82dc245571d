"""Checkpoints as state_dicts: safetensors for tensors, JSON for the rest, ``torch.load(weights_only=True)``
for the optimiser state (plain tensors and numbers). Avalanche's own save_checkpoint fails on torch 2.14
(reference section 9) and would unpickle arbitrary objects.

A folder is written as ``<dir>.tmp`` and renamed into place, so a killed run never leaves a folder that
looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import DataError


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_folder(path: Path, tensors: dict[str, dict[str, torch.Tensor]], pickled: dict[str, object], meta: dict,
                 json_files: dict[str, object] | None = None) -> None:
    """``tensors``: file stem -> flat tensor dict (safetensors); ``pickled``: file stem -> state with tensors
    and numbers only (torch.save); ``meta`` -> state.json; ``json_files``: file name -> JSON content."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for stem, flat in tensors.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in flat.items()}, str(tmp / f"{stem}.safetensors"))
    for stem, obj in pickled.items():
        torch.save(obj, tmp / f"{stem}.pt")
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    for name, obj in (json_files or {}).items():
        (tmp / name).write_text(json.dumps(obj, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def read_tensors(path: Path, stem: str) -> dict[str, torch.Tensor]:
    f = Path(path) / f"{stem}.safetensors"
    if not f.is_file():
        raise DataError(f"{f}: missing from the checkpoint")
    return load_file(str(f))


def read_pickled(path: Path, stem: str):
    f = Path(path) / f"{stem}.pt"
    if not f.is_file():
        raise DataError(f"{f}: missing from the checkpoint")
    return torch.load(f, weights_only=True, map_location="cpu")  # a GPU checkpoint loads anywhere


def read_meta(path: Path) -> dict:
    f = Path(path) / "state.json"
    if not f.is_file():
        raise DataError(f"{f}: missing; the stage that writes {Path(path).name} has not finished (dvc repro)")
    return json.loads(f.read_text())


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def json_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
