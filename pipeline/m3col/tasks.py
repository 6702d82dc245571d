"""The two tasks as datasets and encoders: image + caption, speech + transcript.

A sample is a dict: each used modality's input (``image``/``text``: a cached frozen embedding; ``pixels``,
``tokens``: end-to-end inputs; ``feats`` + ``lens``: log-Mel features), ``y`` (the class), ``split`` and
``index`` (its position in the split: what the scorer records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from pipeline.errors import DataError
from pipeline.m3col.model import FeatureEncoder, SpeechFeature
from pipeline.m3col.prepare import SPLITS, load_image_task, load_speech_task
# imported by every run (not only end_to_end ones) so that dvc.yaml's deps of both stages list them
from pipeline.models.convnet import ConvEncoder
from pipeline.models.text import WordEncoder, WordVocab


class Samples(Dataset):
    """Rows of per-sample tensors (``fields``: name -> tensor [N, ...]) with labels; ``base(i)`` adds fields
    computed per item (the speech features)."""

    def __init__(self, split: str, fields: dict[str, torch.Tensor], labels: torch.Tensor, base=None):
        self.split, self.fields, self.labels, self.base = split, fields, labels, base

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {name: value[i] for name, value in self.fields.items()}
        if self.base is not None:
            feats, _, n, *_ = self.base[i]
            item.update(feats=feats, lens=n)
        return {**item, "y": self.labels[i], "split": self.split, "index": i}


@dataclass
class TaskData:
    name: str  # image | speech
    modalities: tuple[str, str]
    classes: list[str]
    splits: dict[str, Samples]
    conditions: dict[str, torch.Tensor]  # test subsets: name -> bool [N_test]
    ceiling: dict | None
    source: str
    digest: str  # the content of every file read (the run's identity)
    extra: dict = field(default_factory=dict)  # what the encoders need to know (input widths, vocabulary size)
    prepared: object = None  # speech: the prepare stage's folder (features, normalisation)


# ----------------------------------------------------------------------------- image + caption


def image_conditions(attributes: list[dict]) -> dict[str, torch.Tensor]:
    """The shapes test subsets by what was lost (empty for a real source, whose rows carry no such facts)."""
    if not attributes or "grey" not in attributes[0]:
        return {}
    get = lambda key: torch.tensor([bool(a[key]) for a in attributes])  # noqa: E731
    grey, occluded, has_c, has_s = get("grey"), get("occluded"), get("caption_colour"), get("caption_shape")
    return {"clean": ~grey & ~occluded & has_c & has_s, "grey": grey, "occluded": occluded,
            "caption_no_colour": ~has_c, "caption_no_shape": ~has_s, "colour_lost_in_both": grey & ~has_c}


#: ``end_to_end``'s encoders (code constants, not params; folded into the run's identity with the vocabulary):
#: words per caption, the word-level Transformer's sizes, the CNN's first width
VOCAB_TOKENS = 24
WORD_ENCODER = {"d_model": 128, "layers": 2, "heads": 4, "ff_mult": 2, "dropout": 0.1}
CONV_WIDTH = 32


def load_image(root: Path, encoders: str, vocab_tokens: int = VOCAB_TOKENS) -> TaskData:
    """``encoders``: ``embeddings`` (the frozen towers' cached rows) or ``end_to_end`` (pixels uint8 [N, H, W, 3]
    as ``pixels`` and caption word ids [N, vocab_tokens] as ``tokens``, the vocabulary built on the TRAIN
    captions only)."""
    from pipeline.core.checkpoint import content_digest, json_digest

    task = load_image_task(root)
    digest = content_digest(Path(root), ["image", "manifest.json"])
    splits = {}
    if encoders == "end_to_end":
        vocab = WordVocab([c[0] for c in task.splits["train"].captions])
        for s in SPLITS:
            data = task.splits[s]
            fields = {"pixels": torch.from_numpy(data.images),
                      "tokens": vocab.encode([c[0] for c in data.captions], vocab_tokens)}
            splits[s] = Samples(s, fields, torch.from_numpy(data.labels))
        extra = {"vocab": len(vocab), "vocab_tokens": vocab_tokens, "word_encoder": dict(WORD_ENCODER),
                 "conv_width": CONV_WIDTH}
        digest += json_digest({"end_to_end": extra})  # the encoders' inputs and sizes (not params)
    else:
        for s in SPLITS:
            splits[s] = Samples(s, {"image": task.image[s], "text": task.text[s]}, torch.from_numpy(task.splits[s].labels))
        extra = {}
    return TaskData("image", ("image", "text"), task.classes, splits, image_conditions(task.splits["test"].attributes),
                    task.manifest.get("ceiling"), task.manifest.get("source", "?"), digest, extra)


def image_encoders(data: TaskData, encoders: str, heads) -> dict[str, nn.Module]:
    if encoders == "end_to_end":
        extra = data.extra
        return {"image": ConvEncoder(heads.dim, width=extra["conv_width"], key="pixels"),
                "text": WordEncoder(extra["vocab"], heads.dim, **extra["word_encoder"], key="tokens")}
    train = data.splits["train"].fields
    return {m: FeatureEncoder(m, train[m], heads.hidden, heads.dim, heads.dropout) for m in ("image", "text")}


# ----------------------------------------------------------------------------- speech + transcript


def load_speech(root: Path, prepared: Path) -> TaskData:
    from pipeline.core.checkpoint import content_digest
    from pipeline.data.prepared import load_prepared

    prep = load_prepared(prepared)
    task = load_speech_task(root, {s: len(prep.splits[s]) for s in SPLITS})
    if list(task.classes) != list(prep.tokenizer.classes):
        raise DataError(f"{root}/speech/classes.json: not the prepared corpus's classes; re-run prepare-m3col (dvc repro)")
    splits = {s: Samples(s, {"text": task.text[s]}, torch.tensor([r["label"] for r in task.rows[s]]), prep.splits[s])
              for s in SPLITS}
    rows = task.rows["test"]
    intact = torch.tensor([r["dropped"] == 0 and r["substituted"] == 0 for r in rows])
    conditions = {"transcript_intact": intact, "transcript_corrupted": ~intact}
    return TaskData("speech", ("speech", "text"), list(task.classes), splits, conditions, None, "prepared",
                    content_digest(Path(root), ["speech", "manifest.json"]) + prep.digest, prepared=prep)


def speech_encoders(data: TaskData, encoder_cfg, heads) -> dict[str, nn.Module]:
    speech = SpeechFeature(encoder_cfg, data.prepared.n_mels, heads.dim)
    speech.encoder.mean.copy_(data.prepared.mean)
    speech.encoder.std.copy_(data.prepared.std)
    text = FeatureEncoder("text", data.splits["train"].fields["text"], heads.hidden, heads.dim, heads.dropout)
    return {"speech": speech, "text": text}
