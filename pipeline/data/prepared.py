"""The prepare stage's folder as datasets: every track that trains on the prepared speech reads it here.

A sample is the tuple ``(feats [T_max, n_mels], y, feat_len, tokens [L_max], index)`` and Avalanche
appends the task label. Features and tokens are padded to one fixed size for the whole corpus because
Avalanche's ReplayDataLoader concatenates separately collated current and rehearsal batches (a
variable-length collate would crash there; ``ReplayDataLoader`` in ``avalanche/benchmarks/utils/data_loader.py``,
avalanche-lib 0.6.0); the model trims each batch back to
its longest item, so the padding costs memory, not compute. ``index`` is the sample's position in its
split, which is how buffers and S-KD pseudo-targets are saved and restored.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pipeline.core.checkpoint import content_digest
from pipeline.data.features import load_packed
from pipeline.data.tokenizer import Tokenizer
from pipeline.errors import DataError


class SLUDataset(Dataset):
    def __init__(self, frames: torch.Tensor, offsets: torch.Tensor, labels: list[int], tokens: torch.Tensor, t_max: int):
        self.frames, self.offsets, self.tokens, self.t_max = frames, offsets, tokens, t_max
        self.targets = list(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        n = min(end - start, self.t_max)
        feats = torch.zeros(self.t_max, self.frames.shape[1])
        feats[:n] = self.frames[start : start + n].float()
        return feats, self.targets[i], n, self.tokens[i], i


def to_inputs(items: list[tuple], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B, T_max, n_mels] and lengths [B] of a list of dataset items, on ``device``."""
    return torch.stack([it[0] for it in items]).to(device), torch.tensor([it[2] for it in items], device=device)


@dataclass
class Prepared:
    """Everything the train stages read from the prepare stage's folder."""

    manifest: dict
    tokenizer: Tokenizer
    splits: dict[str, SLUDataset]
    meta: dict[str, list[dict]]
    mean: torch.Tensor
    std: torch.Tensor
    root: Path | None = None

    #: what a training run reads from the folder: its content identifies the data in run fingerprints
    CONTENT = ("tasks.json", "tokenizer.json", "meta", "features")

    @functools.cached_property
    def digest(self) -> str:
        """Content digest of the task manifest, tokenizer, metadata and features (sha256 over the files, about
        0.1 s per 100 MB): a run's partial state is resumed only on exactly the data it was trained on."""
        if self.root is None:
            raise DataError("prepared data built in memory has no content digest; load it with load_prepared")
        return content_digest(self.root, self.CONTENT)

    @property
    def n_mels(self) -> int:
        return int(self.mean.shape[0])

    def task_indices(self, split: str, task: int) -> list[int]:
        """Positions in ``split`` of the samples whose class belongs to ``task``."""
        wanted = set(self.manifest["tasks"][task])
        return [i for i, y in enumerate(self.splits[split].targets) if y in wanted]


def load_prepared(root: Path) -> Prepared:
    root = Path(root)
    for name in ("tasks.json", "tokenizer.json", "meta/train.json", "features/train.safetensors"):
        if not (root / name).is_file():
            raise DataError(f"{root / name}: missing; run the prepare stage first (dvc repro prepare)")
    manifest = json.loads((root / "tasks.json").read_text())
    tok = Tokenizer.load(root / "tokenizer.json")
    meta = {s: json.loads((root / "meta" / f"{s}.json").read_text()) for s in ("train", "valid", "test")}
    packed = {s: load_packed(root / "features" / f"{s}.safetensors") for s in meta}
    t_max = max(int(m["n_frames"]) for rows in meta.values() for m in rows)
    encoded = {s: [tok.encode(m["label_id"], m["transcript"]) for m in rows] for s, rows in meta.items()}
    l_max = max(len(e) for rows in encoded.values() for e in rows)
    splits = {}
    for s, rows in meta.items():
        tokens = torch.full((len(rows), l_max), tok.pad_id, dtype=torch.long)
        for i, e in enumerate(encoded[s]):
            tokens[i, : len(e)] = torch.tensor(e)
        splits[s] = SLUDataset(packed[s]["frames"], packed[s]["offsets"], [m["label_id"] for m in rows], tokens, t_max)
    return Prepared(manifest, tok, splits, meta, packed["train"]["mean"], packed["train"]["std"], root)
