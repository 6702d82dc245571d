"""The one way a stage writes an output folder: built aside, then renamed into place.

``with atomic_dir(out, owner="prepare") as tmp:`` yields ``<out>.tmp``; when the block succeeds, ``tmp``
replaces ``out``; when it raises (or the process is killed) ``out`` is untouched and nothing that looks
complete is left behind (a stale ``<out>.tmp`` of the same owner is removed by the next run; a folder of
that name without the owner's marker is refused, never deleted).

Every folder written this way holds a marker file naming its owner (the stage or writer that made it).
An existing ``out`` is replaced only if it is empty, carries the same owner's marker, or (folders written
before markers existed) holds nothing but ``legacy`` entries. So a mistyped ``--out`` that points at a
home directory or a dataset is refused with one line instead of being deleted. ``.gitignore`` files that
DVC keeps inside a cached output folder are carried over.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.errors import UserError

MARKER = ".pipeline-output"


def owner_of(folder: Path) -> str | None:
    marker = Path(folder) / MARKER
    return marker.read_text().strip() if marker.is_file() else None


def check_replaceable(out: Path, owner: str, legacy: Iterable[str] = ()) -> None:
    """Raise UserError unless ``out`` is absent, empty, or an earlier output of ``owner``."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise UserError(f"{out}: exists and is not a folder written by {owner}; choose another path or remove it")
    found = owner_of(out)
    if found == owner:
        return
    entries = sorted(p.name for p in out.iterdir())
    if found is None and all(e in set(legacy) | {".gitignore"} for e in entries):
        return
    what = f"it was written by {found}" if found else f"it holds {entries[0]!r}, which {owner} does not write"
    raise UserError(f"{out}: exists and is not an output of {owner} ({what}); choose another path or remove it")


@contextmanager
def atomic_dir(out: str | Path, owner: str, legacy: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a fresh folder next to ``out``; on success it replaces ``out``, on failure it is removed."""
    out = Path(out)
    legacy = tuple(legacy)
    check_replaceable(out, owner, legacy)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists() or tmp.is_symlink():
        # a stale one of ours (a killed run) is removed; anything else at that name is the user's
        if tmp.is_symlink() or not tmp.is_dir() or owner_of(tmp) != owner:
            raise UserError(f"{tmp}: exists and is not a temporary folder of {owner}; remove it")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        (tmp / MARKER).write_text(owner + "\n")
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``, replacing an existing ``out`` (its DVC ``.gitignore`` files carried over)."""
    if out.exists():
        for ign in out.rglob(".gitignore"):
            dest = tmp / ign.relative_to(out)
            if dest.parent.is_dir() and not dest.exists():
                shutil.copy2(ign, dest)
        # a fresh name for the old folder: never one a user may have made (``<out>.old`` as a backup)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
