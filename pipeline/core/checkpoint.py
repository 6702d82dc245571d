"""Checkpoints as state_dicts: safetensors for tensors, JSON for the rest, and ``torch.save`` of states
made of tensors and numbers only (optimiser, RNG), read back with ``torch.load(weights_only=True)``.
Nothing is ever unpickled beyond tensors and plain containers (Avalanche's own save_checkpoint fails on
torch 2.14 and would unpickle arbitrary objects).

A folder is written through :func:`pipeline.core.atomic.atomic_dir`, so a killed run never leaves a
folder that looks complete. Fingerprints (:func:`json_digest`, :func:`content_digest`) identify a run by
the content of what it reads, not by paths or dates.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import load_file, save_file

from pipeline.core.atomic import atomic_dir
from pipeline.errors import DataError

#: the owner marker of checkpoint folders (pipeline.core.atomic)
CHECKPOINT_OWNER = "checkpoint"


def write_folder(path: Path, tensors: dict[str, dict[str, torch.Tensor]], pickled: dict[str, object], meta: dict,
                 json_files: dict[str, object] | None = None, text_files: dict[str, str] | None = None) -> None:
    """``tensors``: file stem -> flat tensor dict (safetensors); ``pickled``: file stem -> state with tensors
    and numbers only (torch.save); ``meta`` -> state.json; ``json_files``: file name -> JSON content;
    ``text_files``: file name -> text written as is (a JSON-lines log)."""
    legacy = [f"{s}.safetensors" for s in tensors] + [f"{s}.pt" for s in pickled] + ["state.json", *(json_files or {}),
                                                                                      *(text_files or {})]
    with atomic_dir(path, CHECKPOINT_OWNER, legacy=legacy) as tmp:
        for stem, flat in tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in flat.items()}, str(tmp / f"{stem}.safetensors"))
        for stem, obj in pickled.items():
            torch.save(obj, tmp / f"{stem}.pt")
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        for name, obj in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=1))
        for name, text in (text_files or {}).items():
            (tmp / name).write_text(text)


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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def json_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """One digest of tensors' shapes, dtypes and bytes (CPU): what a run read, for its fingerprint."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(f"{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def content_digest(root: Path, names: Iterable[str]) -> str:
    """One digest of the files ``names`` under ``root`` (a name that is a folder: every file inside it, in
    sorted order), by content and relative path: what a run read, independent of where it lies."""
    root = Path(root)
    h = hashlib.sha256()
    for name in names:
        target = root / name
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for f in files:
            if not f.is_file():
                raise DataError(f"{f}: missing")
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + file_digest(f).encode())
    return h.hexdigest()[:16]
