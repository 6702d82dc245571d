"""Reading chosen arrays of a safetensors file without importing torch (``framework="np"``) or with it.

A stage that must not read everything in a file (a training run never loads the bias labels) names the keys it
reads; a report reads images as numpy without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pipeline.errors import DataError, one_line


def read_arrays(path: Path, keys: Iterable[str], hint: str, framework: str = "pt") -> dict:
    """Only ``keys`` of a safetensors file, as torch tensors (``framework="np"``: numpy arrays, for readers that
    need no torch). A missing file, a missing key or an unreadable file is one DataError line ending in ``hint``
    (what to run)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; {hint}")
    try:
        with safe_open(str(path), framework=framework) as f:
            absent = [k for k in keys if k not in f.keys()]
            if absent:
                raise DataError(f"{path}: no {absent[0]!r} array; {hint}")
            return {k: f.get_tensor(k) for k in keys}
    except (OSError, SafetensorError) as exc:
        raise DataError(f"{path}: unreadable ({one_line(exc)}); {hint}") from None
