"""A pretrained wav2vec2-style speech encoder read from a local Hugging Face folder.

For users who have a checkpoint (wav2vec2, HuBERT, WavLM, data2vec-audio: any ``AutoModel`` with a
convolutional feature encoder), it replaces the from-scratch encoder and takes the same place in the
SLU model: [B, T, 1] raw samples + lengths -> [B, T', d_model] states, lengths and padding mask.

Decisions, each following what the model was pretrained with (Hugging Face's Wav2Vec2FeatureExtractor
and its documentation):

* Only a local folder, loaded with ``local_files_only=True`` (and ``HF_HUB_OFFLINE=1`` set for this
  process): nothing is ever downloaded. Weights load as float32, whatever dtype they were saved in
  (transformers 5 would otherwise keep the saved dtype); ``.bin`` weights are read by transformers
  with ``weights_only=True``.
* Each utterance is normalised to zero mean and unit variance over its real samples (unless the
  folder's ``preprocessor_config.json`` says ``do_normalize: false``) and its padding set to zero,
  so that with an attention mask the output does not depend on how much padding a batch has.
* The attention mask is passed only to models whose feature extractor returns one
  (``return_attention_mask`` in ``preprocessor_config.json``, else ``feat_extract_norm == "layer"``):
  group-norm models such as wav2vec2-base were pretrained on unmasked zero padding and get worse with a
  mask. Their outputs then depend slightly on the batch's padding (the group norm spans it).
* The checkpoint's own SpecAugment-style masking (``apply_spec_augment``) follows ``model.spec_augment``
  and is off by default: it draws from NumPy's RNG, which the task checkpoints do not save, so a
  resumed run would not end bit-identical to an uninterrupted one.
* The convolutional feature encoder is frozen by default (``model.freeze_pretrained_feature_encoder``),
  as in the wav2vec2 fine-tuning recipes; the Transformer layers and a new Linear + LayerNorm projection
  to ``d_model`` are trained.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import DataError, ParamsError, one_line
from pipeline.models.encoder import lengths_to_mask

KEY = "params: model.pretrained_encoder"

#: Files whose content defines the encoder: a changed one must invalidate the checkpoints built on it.
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def preprocessor_config(folder: str | Path) -> dict:
    """The folder's ``preprocessor_config.json`` (sampling rate, normalisation), or {} when absent."""
    f = Path(folder) / "preprocessor_config.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{f}: not readable JSON ({err})") from None


def load_pretrained(folder: str | Path, spec_augment: bool = False) -> nn.Module:
    """The Hugging Face model in ``folder`` (float32, offline), checked to be a wav2vec2-style encoder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local_files_only already forbids downloads
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per stage is noise in the logs
    folder = str(folder)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{folder}/config.json: not a usable Hugging Face config ({one_line(err)})") from None
    if hasattr(config, "apply_spec_augment"):
        config.apply_spec_augment = spec_augment
    try:
        model = AutoModel.from_pretrained(folder, config=config, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{folder}: cannot load the pretrained weights ({one_line(err)})") from None
    if not hasattr(model, "_get_feat_extract_output_lengths") or not hasattr(model, "feature_extractor"):
        raise ParamsError(f"{KEY}: {folder}: model_type {config.model_type!r} is not a wav2vec2-style speech encoder "
                          "(e.g. wav2vec2, hubert, wavlm, data2vec-audio)")
    return model


@functools.lru_cache(maxsize=8)
def _digest(files: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, _, _ in files:
        h.update(Path(name).name.encode())
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):  # streamed: checkpoints can be gigabytes
                h.update(block)
    return h.hexdigest()[:16]


def checkpoint_digest(folder: str | Path) -> str:
    """sha256 (16 hex) of the folder's config.json and weight files, for the model fingerprint.

    The path alone would miss a checkpoint replaced in place; cached per (file, size, mtime).
    """
    files = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and (p.name == "config.json" or p.name.endswith(WEIGHT_SUFFIXES)))
    return _digest(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


class PretrainedEncoder(nn.Module):
    """[B, T, 1] waveform samples (+ lengths in samples) -> [B, T', D] states (+ lengths, padding mask)."""

    def __init__(self, folder: str | Path, d_model: int, freeze_feature_encoder: bool = True, spec_augment: bool = False):
        super().__init__()
        # filled by build_model from the prepared data: (stored - mean) / std is the waveform in [-1, 1)
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("std", torch.ones(1))
        self.model = load_pretrained(folder, spec_augment)
        config, pre = self.model.config, preprocessor_config(folder)
        self.normalize = bool(pre.get("do_normalize", True))
        self.use_mask = bool(pre.get("return_attention_mask", getattr(config, "feat_extract_norm", "layer") == "layer"))
        # the shortest input giving one output step (400 samples = 25 ms for wav2vec2-base)
        n = 1
        for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
            n = (n - 1) * stride + kernel
        self.min_samples = n
        if freeze_feature_encoder:
            self.model.freeze_feature_encoder()
        self.proj = nn.Linear(config.hidden_size, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (feats[..., 0].float() - self.mean) / self.std  # [B, T, 1] -> [B, T] samples in [-1, 1)
        real = (~lengths_to_mask(lengths, x.shape[1])).to(x.dtype)  # [B, T], 1 at real samples
        if self.normalize:  # per utterance, over its real samples (Wav2Vec2FeatureExtractor's do_normalize)
            n = real.sum(1, keepdim=True).clamp_min(1.0)
            mean = (x * real).sum(1, keepdim=True) / n
            var = (((x - mean) * real) ** 2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7)
        x = x * real  # padding is exactly zero
        # An utterance shorter than the receptive field is padded with silence up to it (else no output step).
        lengths = lengths.clamp_min(self.min_samples)
        if x.shape[1] < self.min_samples:
            x = nn.functional.pad(x, (0, self.min_samples - x.shape[1]))  # [B, T] -> [B, min_samples]
        mask = (~lengths_to_mask(lengths, x.shape[1])).long() if self.use_mask else None
        states = self.model(x, attention_mask=mask).last_hidden_state  # [B, T', hidden_size]
        out_lens = self.model._get_feat_extract_output_lengths(lengths).clamp(1, states.shape[1])
        pad = lengths_to_mask(out_lens, states.shape[1])
        return self.norm(self.proj(states)), out_lens, pad
