"""The zero-shot keyword-spotting test set in the prepare stage's folder: written there, read back here.

``<prepared>/keywords/``::

    manifest.json          source (synthetic | speech_commands | none), root of the clips (relative to the
                           prepared folder for synthetic ones, else the dataset's folder), words (index = label)
    clips.json             [{"word", "path" (relative to root), "speaker"}], sorted by word, speaker, repetition
    features.safetensors   the clips' features, packed as the splits' (pipeline.data.features), stored with
                           the TRAIN split's mean/std: a model trained on the prepared corpus reads them alike

Not part of :attr:`pipeline.data.prepared.Prepared.CONTENT`: the class-incremental runs never read it, so it
does not enter their identity. A CWCL stage classifies each clip by the cosine between its speech embedding
and the frozen text tower's embedding of each word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.features import load_packed, save_packed
from pipeline.data.speech_commands import Clip
from pipeline.errors import DataError

FOLDER = "keywords"
RUN_PREPARE = "run the prepare stage (dvc repro prepare)"


class KeywordDataset(Dataset):
    """Items ``(feats [T_max, n_mels], label, n_frames, index)``, padded to the clips' own longest."""

    def __init__(self, frames: torch.Tensor, offsets: torch.Tensor, labels: list[int]):
        self.frames, self.offsets, self.targets = frames, offsets, list(labels)
        lengths = offsets[1:] - offsets[:-1]
        self.t_max = int(lengths.max()) if len(lengths) else 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        feats = torch.zeros(self.t_max, self.frames.shape[1])
        feats[: end - start] = self.frames[start:end].float()
        return feats, self.targets[i], end - start, i


@dataclass
class KeywordSet:
    """What :func:`load_keywords` returns: ``labels[i]`` indexes ``words`` for ``clips[i]`` and ``dataset[i]``;
    ``mean``/``std`` are the training split's (apply them as the model does to the corpus)."""

    words: list[str]
    clips: list[dict]
    labels: list[int]
    dataset: KeywordDataset
    mean: torch.Tensor
    std: torch.Tensor
    source: str
    root: Path  # the folder that clips' paths are relative to


def write_keyword_set(folder: Path, source: str, root: Optional[str], words: list[str], clips: list[Clip],
                      feats: Sequence[np.ndarray] = (), stats: Optional[tuple] = None, dtype=np.float16) -> None:
    """The files above (``source: none``: the manifest alone, so that a reader can say why nothing is there)."""
    folder.mkdir()
    manifest = {"source": source, "root": root, "words": words, "clips": len(clips)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if source == "none":
        return
    (folder / "clips.json").write_text(json.dumps([c.row() for c in clips]))
    mean, std = stats
    save_packed(folder / "features.safetensors", list(feats), mean, std, dtype)


def load_keywords(prepared_root: Path) -> KeywordSet:
    """The keyword set of a prepared folder; DataError (one line) when it is missing, damaged or switched off."""
    prepared_root = Path(prepared_root)
    folder = prepared_root / FOLDER
    if not (folder / "manifest.json").is_file():
        raise DataError(f"{folder}: missing; {RUN_PREPARE}")
    manifest = _json(folder / "manifest.json")
    if manifest.get("source") == "none":
        raise DataError(f"{folder}: keyword spotting is off (data.keywords.source: none); set data.keywords.source "
                        f"to synthetic or speech_commands and {RUN_PREPARE}")
    for name in ("clips.json", "features.safetensors"):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name}: missing; {RUN_PREPARE}")
    words, clips = list(manifest["words"]), _json(folder / "clips.json")
    label_of = {w: i for i, w in enumerate(words)}
    packed = load_packed(folder / "features.safetensors")
    if len(packed["offsets"]) != len(clips) + 1 or any(c.get("word") not in label_of for c in clips):
        raise DataError(f"{folder}: clips.json does not match manifest.json or features.safetensors; {RUN_PREPARE}")
    labels = [label_of[c["word"]] for c in clips]
    root = Path(manifest["root"])
    return KeywordSet(words, clips, labels, KeywordDataset(packed["frames"], packed["offsets"], labels),
                      packed["mean"], packed["std"], manifest["source"], root if root.is_absolute() else prepared_root / root)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: damaged ({err}); {RUN_PREPARE}") from None
