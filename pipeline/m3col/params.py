"""The params section ``m3col``: multimodal mixup-contrastive fusion (M3CoL) against its baselines.

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist.
``prepare-m3col`` reads ``m3col.data`` (and the frozen towers' ``towers``); ``m3col-image`` reads
``m3col.image`` and ``m3col.loss``; ``m3col-speech`` reads ``m3col.speech`` and ``m3col.loss``;
``evaluate-m3col`` reads ``seeds`` and the two variant lists (see dvc.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from pipeline.core.params import read_yaml, register_section, require, section
from pipeline.core.trainer_config import TrainerConfig
from pipeline.models.params import SpeechEncoderConfig

#: every variant a task can run; the unimodal ones are named after their modality
FUSION_VARIANTS = ("concat", "aux", "clip", "m3co", "m3col")
MODALITIES = {"image": ("image", "text"), "speech": ("speech", "text")}
REAL_SOURCES = ("n24news", "food101", "jsonl")


def variants_of(task: str) -> tuple[str, ...]:
    return (*MODALITIES[task], *FUSION_VARIANTS)


def _fraction(value: float, key: str, closed: bool = True) -> None:
    require(0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0, key, "must be a fraction in [0, 1]")


@dataclass
class DegradeConfig:
    """What the image modality loses (shapes only; every draw independent of the class)."""

    noise_std: float = 8.0  # Gaussian pixel noise on every image (uint8 scale)
    contrast_min: float = 0.6  # every image's contrast scaled by U(contrast_min, contrast_max) around its mean
    contrast_max: float = 1.0
    greyscale: float = 0.3  # share of images turned grey: their colour is gone
    occlusion: float = 0.3  # share of images with a block over the shape: its outline is partly gone
    occlusion_size: float = 0.7  # the block's side as a fraction of the shape's diameter

    def validate(self, key: str) -> None:
        require(self.noise_std >= 0, f"{key}.noise_std", "must be >= 0")
        require(0.0 < self.contrast_min <= self.contrast_max <= 1.0, f"{key}.contrast_min",
                "need 0 < contrast_min <= contrast_max <= 1")
        _fraction(self.greyscale, f"{key}.greyscale")
        _fraction(self.occlusion, f"{key}.occlusion")
        require(0.0 < self.occlusion_size <= 2.0, f"{key}.occlusion_size", "must be in (0, 2] (x the shape's diameter)")


@dataclass
class CaptionNoiseConfig:
    """What the text modality loses (shapes only): each image gets one caption naming its colour and shape in
    one of several templates with synonyms; a share leaves the colour or the shape out, then words drop."""

    omit_colour: float = 0.25  # share of captions without the colour
    omit_shape: float = 0.25  # share without the shape (exclusive with omit_colour)
    word_dropout: float = 0.1  # each remaining word dropped with this probability (one word always stays)

    def validate(self, key: str) -> None:
        _fraction(self.omit_colour, f"{key}.omit_colour")
        _fraction(self.omit_shape, f"{key}.omit_shape")
        require(self.omit_colour + self.omit_shape <= 1.0, f"{key}.omit_shape", "omit_colour + omit_shape must be <= 1")
        _fraction(self.word_dropout, f"{key}.word_dropout", closed=False)


@dataclass
class ImageDataConfig:
    """The image + caption task's data: the shapes corpus degraded (default) or a real dataset by path."""

    source: str = "shapes"  # shapes (prepare-vision's, degraded here) | n24news | food101 | jsonl
    root: Optional[str] = None  # real sources: the dataset folder (jsonl: the .jsonl file)
    text_field: str = "abstract"  # n24news: headline | caption | abstract | body
    image_size: int = 64  # real sources: images resized to this side
    n_train: int = 12000  # shapes: the first n of each prepare-vision split (real: null-like 0 = all)
    n_valid: int = 1000
    n_test: int = 2000
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    captions: CaptionNoiseConfig = field(default_factory=CaptionNoiseConfig)

    def validate(self, key: str) -> None:
        require(self.source == "shapes" or self.source in REAL_SOURCES, f"{key}.source",
                f"{self.source!r}: one of shapes, {', '.join(REAL_SOURCES)}")
        if self.source != "shapes":
            require(self.root is not None, f"{key}.root", f"source {self.source} is read from disk: set its folder")
            require(Path(self.root).exists(), f"{key}.root", f"{self.root}: not found")
        require(self.text_field in ("headline", "caption", "abstract", "body"), f"{key}.text_field",
                "one of headline, caption, abstract, body (n24news)")
        require(16 <= self.image_size <= 512, f"{key}.image_size", "must be in [16, 512]")
        for name in ("n_train", "n_valid", "n_test"):
            require(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0 (0: all)")


@dataclass
class TranscriptNoiseConfig:
    """ASR-like errors in the speech task's transcripts: per word, dropped or replaced by another word of the
    corpus's vocabulary (one word always stays)."""

    word_dropout: float = 0.3
    substitution: float = 0.2

    def validate(self, key: str) -> None:
        _fraction(self.word_dropout, f"{key}.word_dropout", closed=False)
        _fraction(self.substitution, f"{key}.substitution")
        require(self.word_dropout + self.substitution <= 1.0, f"{key}.substitution",
                "word_dropout + substitution must be <= 1")


@dataclass
class DataConfig:
    seed: int = 0  # the degradations' and corruptions' draws (fixed across training seeds)
    image: ImageDataConfig = field(default_factory=ImageDataConfig)
    speech: TranscriptNoiseConfig = field(default_factory=TranscriptNoiseConfig)

    def validate(self, key: str) -> None:
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


@dataclass
class LossConfig:
    """M3Co, SoftCLIP and the schedule, with the paper's defaults (Kumar, Singhal et al., TMLR 2025)."""

    beta: float = 0.15  # lambda ~ Beta(beta, beta)
    mix_fraction: float = 0.5  # share of each batch that is mixed (the rest keeps lambda = 1)
    tau: float = 0.1  # M3Co (and the InfoNCE of the clip variant)
    soft_tau: float = 0.125  # SoftCLIP, its logits and its targets
    weight: float = 0.1  # total = CE terms + weight x contrastive
    m3co_share: float = 0.333  # m3col: M3Co for the first round(share x epochs) epochs, then SoftCLIP

    def validate(self, key: str) -> None:
        require(self.beta > 0, f"{key}.beta", "must be > 0")
        _fraction(self.mix_fraction, f"{key}.mix_fraction")
        require(self.tau > 0, f"{key}.tau", "must be > 0")
        require(self.soft_tau > 0, f"{key}.soft_tau", "must be > 0")
        require(self.weight >= 0, f"{key}.weight", "must be >= 0")
        _fraction(self.m3co_share, f"{key}.m3co_share")

    def m3co_epochs(self, epochs: int) -> int:
        """How many first epochs of an m3col run use M3Co (SoftCLIP from the next one)."""
        return round(self.m3co_share * epochs)


@dataclass
class HeadConfig:
    """The trainable part above each modality's input: a feature encoder to ``dim``, and classifier heads."""

    dim: int = 256  # each modality's embedding (the contrastive space; the fusion head sees 2 x dim)
    hidden: int = 256  # the feature encoders' and heads' hidden width
    dropout: float = 0.2

    def validate(self, key: str) -> None:
        require(self.dim >= 2, f"{key}.dim", "must be >= 2")
        require(self.hidden >= 1, f"{key}.hidden", "must be >= 1")
        _fraction(self.dropout, f"{key}.dropout", closed=False)


@dataclass
class M3colTrainConfig(TrainerConfig):
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    lr_final: float = 0.05
    warmup: float = 0.05
    drop_last: bool = True  # a batch of one has no negative
    select_metric: str = "accuracy"  # valid accuracy of the inference head


@dataclass
class SpeechTrainConfig(M3colTrainConfig):
    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3


@dataclass
class ImageTaskConfig:
    # aux (concat + the unimodal heads, no contrastive term) is left out of the default run to stay in its time
    # budget; bench/m3col.py runs it
    variants: list[str] = field(default_factory=lambda: [v for v in variants_of("image") if v != "aux"])
    # embeddings: the frozen towers' cached embeddings + trainable feature encoders; end_to_end: a CNN on the
    # pixels and a word-level Transformer on the caption, from scratch
    encoders: Literal["embeddings", "end_to_end"] = "embeddings"
    heads: HeadConfig = field(default_factory=HeadConfig)
    train: M3colTrainConfig = field(default_factory=M3colTrainConfig)

    def validate(self, key: str) -> None:
        _variants(self.variants, "image", f"{key}.variants")
        self.train.validate(f"{key}.train")


@dataclass
class SpeechTaskConfig:
    variants: list[str] = field(default_factory=lambda: [v for v in variants_of("speech") if v != "aux"])
    # from scratch on the prepared log-Mel features, mean over time (no frozen speech tower exists offline)
    encoder: SpeechEncoderConfig = field(default_factory=lambda: SpeechEncoderConfig(d_model=96, layers=1))
    heads: HeadConfig = field(default_factory=HeadConfig)
    train: SpeechTrainConfig = field(default_factory=SpeechTrainConfig)

    def validate(self, key: str) -> None:
        _variants(self.variants, "speech", f"{key}.variants")
        require(self.encoder.pretrained is None, f"{key}.encoder.pretrained",
                "the M3CoL speech task trains its encoder from scratch on log-Mel features (set null)")
        self.train.validate(f"{key}.train")


def _variants(names: list[str], task: str, key: str) -> None:
    known = variants_of(task)
    require(len(names) >= 1, key, "list one or more variants")
    for i, name in enumerate(names):
        require(name in known, f"{key}[{i}]", f"{name!r}: one of {', '.join(known)}")
    require(len(set(names)) == len(names), key, "a variant is listed twice")


@dataclass
class M3colConfig:
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    image: ImageTaskConfig = field(default_factory=ImageTaskConfig)
    speech: SpeechTaskConfig = field(default_factory=SpeechTaskConfig)


register_section("m3col", M3colConfig)


def load_m3col_params(path: str | Path = "params.yaml") -> M3colConfig:
    return section(read_yaml(path), M3colConfig, "m3col")
