"""JSON-lines files (SLURP annotations, image-caption pairs): one object per line, errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from pipeline.errors import DataError


def json_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ``("<file>:<line>", object)`` for each non-blank line of ``path``. A file that is not UTF-8 text, a
    line that is not JSON or not a JSON object is one DataError naming the file (and line); the caller checks
    the keys and values it needs."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, obj
