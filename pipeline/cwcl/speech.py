"""Speech -> text: a speech encoder trained onto the FROZEN text tower's embeddings of the transcripts.

Pairs: each training utterance of a training intent with its own transcript's embedding (the embed stage's
``transcripts`` set, MiniLM by default). Held-out intents are removed from training entirely, audio and
text. Zero-shot evaluation: each test utterance against the frozen embedding of every intent's description
(``intents`` set; ``embed.intent_template``), and each keyword clip against every keyword
(``keywords`` set; the prepare stage's keyword test set).

The supervised bound: the same encoder with a linear classifier over ALL intents (held-out ones included)
trained by cross-entropy on all training utterances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from pipeline.cwcl.align import ScoreSet, cosine_or_logits
from pipeline.cwcl.holdout import pick_classes
from pipeline.cwcl.params import SpeechEncoderConfig, SpeechTaskConfig
from pipeline.data.embeddings import load_embeddings
from pipeline.data.prepared import Prepared, load_prepared
from pipeline.errors import DataError, ParamsError
from pipeline.models.encoder import SpeechEncoder, masked_mean
from pipeline.models.heads import projection_head


class SpeechEmbedder(nn.Module):
    """[B, T, n_mels] features + lengths -> [B, out_dim]: encoder states, mean over time, a head (an MLP into
    the frozen space, or a linear classifier for the supervised bound)."""

    def __init__(self, cfg: SpeechEncoderConfig, n_mels: int, out_dim: int, classifier: bool = False):
        super().__init__()
        if cfg.pretrained is not None:
            from pipeline.models.pretrained import PretrainedEncoder  # imports transformers only when used

            self.encoder = PretrainedEncoder(cfg.pretrained, cfg.d_model, True, cfg.spec_augment)
        else:
            self.encoder = SpeechEncoder(n_mels, cfg.d_model, cfg.layers, cfg.heads, cfg.ff_mult * cfg.d_model,
                                         cfg.dropout, cfg.subsample, cfg.conv_channels, cfg.utterance_norm,
                                         cfg.encoder, cfg.spec_augment, cfg.front)
        self.head = nn.Linear(cfg.d_model, out_dim) if classifier else projection_head(cfg.d_model, out_dim)

    def pooled(self, batch: dict) -> torch.Tensor:
        lens = batch["lens"]
        feats = batch["feats"][:, : int(lens.max())]  # drop the batch's common padding
        states, _, pad = self.encoder(feats, lens)  # [B, T', D]
        return masked_mean(states, pad)  # [B, D]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.pooled(batch))


class SpeechPairs(Dataset):
    """Utterances ``rows`` of a prepared split as dicts: feats [T_max, n_mels], lens, y, q (frozen [D])."""

    def __init__(self, base, rows: list[int], frozen: torch.Tensor | None):
        self.base, self.rows, self.frozen = base, list(rows), frozen

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        feats, y, n, *_ = self.base[self.rows[i]]
        item = {"feats": feats, "lens": n, "y": y}
        if self.frozen is not None:
            item["q"] = self.frozen[i]
        return item


@dataclass
class SpeechData:
    prepared: Prepared
    classes: list[str]  # the prepared class names (index = label)
    heldout: list[str]
    train: SpeechPairs
    valid: SpeechPairs
    test: SpeechPairs
    descriptions: torch.Tensor  # [C, D] frozen embeddings of the class descriptions (float32)
    dim: int

    @property
    def unseen(self) -> list[int]:
        return [self.classes.index(c) for c in self.heldout]


def class_names(prep: Prepared) -> list[str]:
    return list(prep.tokenizer.classes)


def load_speech(cfg: SpeechTaskConfig, prepared: Path, embeddings: Path, seed: int, key: str,
                supervised: bool = False) -> SpeechData:
    """The pairs of every split and the class descriptions; held-out intents drawn by ``seed``."""
    prep = load_prepared(prepared)
    classes = class_names(prep)
    intents = load_embeddings(embeddings, "text", "intents")
    missing = [c for c in classes if c not in intents.index()]
    if missing:
        raise DataError(f"{embeddings}/text/intents.json: no description of class {missing[0]!r}; the speech "
                        "transfer needs the FSC intent schema (data.source synthetic or fsc)")
    heldout = pick_classes(cfg.heldout_intents, classes, seed, f"{key}.heldout_intents")
    transcripts = load_embeddings(embeddings, "text", "transcripts")
    unseen = {classes.index(c) for c in heldout}
    splits = {}
    for split in ("train", "valid", "test"):
        base = prep.splits[split]
        ref = transcripts.refs.get(split)
        if ref is None or len(ref) != len(base):
            raise DataError(f"{embeddings}/text/transcripts.json: refs[{split!r}] does not match "
                            f"{prepared}/meta/{split}.json ({len(base)} utterances); re-run `dvc repro embed`")
        # training: the held-out intents' utterances (and so their transcripts) are dropped here, once
        rows = [i for i, y in enumerate(base.targets) if supervised or split != "train" or y not in unseen]
        frozen = transcripts.emb[[ref[i] for i in rows]].float() if split == "train" and not supervised else None
        splits[split] = SpeechPairs(base, rows, frozen)
    return SpeechData(prep, classes, heldout, splits["train"], splits["valid"], splits["test"],
                      intents.rows(classes).float(), int(intents.emb.shape[1]))


def check_encoder(cfg: SpeechEncoderConfig, prep: Prepared, key: str) -> None:
    """The from-scratch encoder reads log-Mel features and a pretrained one raw samples (one line otherwise)."""
    kind = prep.manifest.get("features", {}).get("kind", "fbank")
    if (cfg.pretrained is None) != (kind == "fbank"):
        want = "log-Mel (features.kind: fbank)" if cfg.pretrained is None else "raw waveforms (features.kind: waveform)"
        raise ParamsError(f"params: {key}.pretrained: the encoder needs {want} but the prepared data holds {kind}")


def build_speech_model(cfg: SpeechEncoderConfig, data: SpeechData, supervised: bool) -> SpeechEmbedder:
    out = len(data.classes) if supervised else data.dim
    model = SpeechEmbedder(cfg, data.prepared.n_mels, out, classifier=supervised)
    model.encoder.mean.copy_(data.prepared.mean)
    model.encoder.std.copy_(data.prepared.std)
    return model


def intent_scores(model, loader, data: SpeechData, supervised: bool) -> ScoreSet:
    """Every utterance of ``loader`` against every class description (or the classifier's logits)."""
    return cosine_or_logits(model, loader, data.descriptions, supervised, data.classes, data.unseen)


def keyword_scores(model, prepared: Path, embeddings: Path, batch_size: int, device) -> ScoreSet:
    """Every keyword clip of the prepare stage against the frozen embedding of every keyword (all classes are
    unseen: no keyword clip is ever trained on)."""
    from pipeline.cwcl.run import loader
    from pipeline.data.keywords import load_keywords

    clips = load_keywords(prepared)
    words = load_embeddings(embeddings, "text", "keywords")
    missing = [w for w in clips.words if w not in words.index()]
    if missing:
        raise DataError(f"{embeddings}/text/keywords.json: no embedding of the keyword {missing[0]!r}; list it in "
                        "embed.keywords (the prepare stage's data.keywords.words and embed.keywords must agree)")
    prototypes = words.rows(clips.words).float()
    unseen = list(range(len(clips.words)))
    clip_items = SpeechPairs(clips.dataset, range(len(clips.dataset)), None)  # the clips as the model's input dicts
    return cosine_or_logits(model, loader(clip_items, batch_size, device), prototypes, False,
                            list(clips.words), unseen)
