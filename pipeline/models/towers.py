"""Frozen pretrained towers: what they share (fingerprints, cached file digests) and one entry point.

A tower's **fingerprint** is a digest of the content of its weight files and of every setting that changes
its output (pooling, normalisation, input size, max tokens), never of paths or dates: the same weights
copied elsewhere give the same fingerprint, a file replaced in place gives another. Cached embeddings carry
it (``pipeline.data.embeddings``) so a stage reading them with another tower is refused. Settings that only
change float rounding (batch size, device, threads) are not part of it.

The towers themselves: :mod:`pipeline.models.towers_text` (MiniLM, 384-d) and
:mod:`pipeline.models.towers_image` (EfficientNet-Lite0, 1280-d).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pipeline.core.checkpoint import file_digest, json_digest
from pipeline.models.params import TowersConfig


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(Path(path))


def cached_digest(path: Path) -> str:
    """sha256 (16 hex) of a file's content, computed once per (path, size, mtime): ~0.3 s per 100 MB."""
    st = Path(path).stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def files_digest(folder: Path, names: list[str]) -> str:
    """One digest of the named files of ``folder`` (content and name, not location)."""
    return json_digest({name: cached_digest(Path(folder) / name) for name in sorted(names)})


def offline() -> None:
    """Nothing is ever downloaded: the Hugging Face hub client is told so before transformers is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def fingerprints(cfg: TowersConfig) -> dict[str, str]:
    """{"text": ..., "image": ...} without loading either model (file digests and settings only)."""
    from pipeline.models.towers_image import image_fingerprint
    from pipeline.models.towers_text import text_fingerprint

    return {"text": text_fingerprint(cfg.text), "image": image_fingerprint(cfg.image)}
