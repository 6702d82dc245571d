"""The ``embed`` stage's cache, as the training stages read it.

Layout of ``data/embeddings``::

    text/<set>.safetensors    {"emb": float16 [N, 384]}, unit rows (each unique string embedded once)
    text/<set>.json           {"ids": [N keys], "texts": [N strings], "refs": {...}, "tower": fingerprint, "dim": 384}
    image/<set>.safetensors   {"emb": float16 [N, 1280]}, unit rows, one per image in the split's order
    image/<set>.json          {"ids": [N image ids], "source", "split", "tower", "dim"}
    manifest.json             {"towers": {"text": fp, "image": fp}, "sets": {"text/<set>": {"n", "dim", "tower"}, ...}}
    (timings, embeddings/s per tower: the stage's --timing file, outside the folder: its bytes depend only on the inputs)

Text sets: ``captions-<source>`` (ids = the unique captions; refs: image id -> its rows),
``transcripts`` (ids = the unique transcripts; refs: split -> one row per utterance of
``prepared/meta/<split>.json`` in order), ``intents`` (ids = FSC intent names), ``keywords`` (ids = the
words), ``classes-<source>`` (ids = class names), ``prompts-<source>`` (sources with colour and shape
attributes: ids ``"<colour> <shape>|<template index>"``, texts = the filled ``embed.prompt_templates``). Image
sets: ``<source>-<split>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import DataError

#: tower -> the params key that configures it (named by every error about a stale cache)
TOWER_KEYS = {"text": "towers.text", "image": "towers.image"}


@dataclass
class EmbeddingSet:
    emb: torch.Tensor  # float16 [N, D], unit rows
    ids: list[str]
    tower: str  # the fingerprint of the tower that computed them
    texts: list[str] | None = None
    refs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        """id -> row."""
        return {k: i for i, k in enumerate(self.ids)}

    def rows(self, keys: list[str]) -> torch.Tensor:
        """The embeddings of ``keys`` (ids), float16 [len(keys), D]; an unknown id is a DataError."""
        where = self.index()
        missing = [k for k in keys if k not in where]
        if missing:
            raise DataError(f"embeddings: {missing[0]!r} is not in the cached set; re-run `dvc repro embed`")
        return self.emb[[where[k] for k in keys]]


def load_embeddings(root: str | Path, tower: str, set_name: str, expect_fingerprint: str | None = None) -> EmbeddingSet:
    """One cached set. With ``expect_fingerprint`` (from ``pipeline.models.towers.fingerprints``), a cache
    computed by another tower (other weights or settings) is refused with one line naming the params key."""
    if tower not in TOWER_KEYS:
        raise ValueError(f"tower must be one of {sorted(TOWER_KEYS)}, got {tower!r}")
    base = Path(root) / tower / set_name
    for f in (base.with_suffix(".json"), base.with_suffix(".safetensors")):
        if not f.is_file():
            raise DataError(f"{f}: missing; run the embed stage (dvc repro embed)")
    meta = json.loads(base.with_suffix(".json").read_text())
    if expect_fingerprint is not None and meta.get("tower") != expect_fingerprint:
        raise DataError(f"params: {TOWER_KEYS[tower]}: the tower (fingerprint {expect_fingerprint}) is not the one "
                        f"that computed {base}.safetensors ({meta.get('tower')}); re-run `dvc repro embed`")
    emb = load_file(str(base.with_suffix(".safetensors")))["emb"]
    if emb.shape != (len(meta["ids"]), meta["dim"]):
        raise DataError(f"{base}.safetensors: shape {tuple(emb.shape)}, its .json says {len(meta['ids'])} x {meta['dim']}")
    return EmbeddingSet(emb, meta["ids"], meta["tower"], meta.get("texts"), meta.get("refs", {}),
                        {k: v for k, v in meta.items() if k not in ("ids", "texts", "refs")})


def read_manifest(root: str | Path) -> dict:
    f = Path(root) / "manifest.json"
    if not f.is_file():
        raise DataError(f"{f}: missing; run the embed stage (dvc repro embed)")
    return json.loads(f.read_text())


def write_set(folder: Path, name: str, emb, meta: dict) -> dict:
    """Write one set as :func:`load_embeddings` reads it: ``<name>.safetensors`` ({"emb": float16 [N, D]}) and
    ``<name>.json`` (``meta`` + dim); returns its manifest entry."""
    folder.mkdir(exist_ok=True)
    save_file({"emb": emb.half().contiguous()}, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({**meta, "dim": int(emb.shape[1])}, sort_keys=True))
    return {"n": int(emb.shape[0]), "dim": int(emb.shape[1]), "tower": meta["tower"]}
