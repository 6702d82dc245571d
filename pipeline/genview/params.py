"""The params section ``genview``: self-supervised learning with generated views (GenView) against SimCLR.

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist.
``genview-views`` reads ``genview.data`` and ``genview.views`` (and the frozen image tower's ``towers``) plus
the trained generator (``models/diffusion``); ``genview@<variant>-<seed>`` reads ``genview.data``,
``genview.ssl`` and ``genview.probe``; ``evaluate-genview`` reads ``seeds`` and ``genview.ssl.variants``.

Variants (same encoder, augmentations and budget; only the second view and the loss differ):
    * ``simclr``: two augmentations of the real image, NT-Xent.
    * ``fixed``: one augmentation of the real image, one of its generated view at ``views.fixed_strength``.
    * ``adaptive``: the generated view at the strength of the image's foreground-ratio bin.
    * ``genview``: ``adaptive`` with the quality-driven pair weights (GenView).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core.params import check_name, read_yaml, register_section, require, section
from pipeline.core.trainer_config import TrainerConfig

VARIANTS = ("simclr", "fixed", "adaptive", "genview")
ENCODERS = ("pooled", "strided")  # pipeline/genview/model.py


@dataclass
class GenViewData:
    """The images SSL learns from: a prepare-vision corpus's training split (labels only for the probes)."""

    source: str = "shapes"  # a prepare-vision corpus (data/vision/<source>)
    n_train: int = 0  # the first n training images get views and train the encoders (0: all)

    def validate(self, key: str) -> None:
        check_name(self.source, f"{key}.source")
        require(self.n_train >= 0, f"{key}.n_train", "must be >= 0 (0: all)")

    def rows(self, total: int) -> int:
        """How many of a training split's ``total`` images get views and train the encoders: the first
        ``n_train`` (0: all). The views stage and the SSL stages both count them here, so they agree."""
        return total if self.n_train == 0 else min(self.n_train, total)


@dataclass
class ViewsConfig:
    """The generated views, made once per training image by SDEdit with the generator conditioned on the null
    class, and what the quality-driven loss needs (the frozen tower's token maps and soft foreground maps)."""

    steps: int = 10  # DDIM steps of the full schedule; strength s re-runs int(steps * s) of them
    fixed_strength: float = 0.2  # the 'fixed' variant's SDEdit strength (GenView's middle level, 200 / 1000)
    edges: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])  # foreground-ratio bin edges
    levels: list[int] = field(default_factory=lambda: [0, 100, 200, 300, 400])  # noise per bin, of 1000 steps
    share: float = 0.4  # the PCA threshold: this share of all tokens is foreground
    tower_size: int = 128  # the frozen tower's input side for the token maps (EfficientNet-Lite0: 4x4 at 128 px)
    components: int = 16  # the token maps kept for the quality weights, reduced to this many PCA components
    batch_size: int = 256
    seed: int = 0  # the SDEdit noise

    def validate(self, key: str) -> None:
        require(1 <= self.steps <= 1000, f"{key}.steps", f"{self.steps}: must be in [1, 1000]")
        require(0.0 <= self.fixed_strength <= 1.0, f"{key}.fixed_strength",
                f"{self.fixed_strength}: an SDEdit strength must be in [0, 1]")
        require(len(self.levels) == len(self.edges) + 1, f"{key}.levels",
                f"{len(self.levels)} levels for {len(self.edges)} edges: give one more level than edges")
        require(all(a < b for a, b in zip(self.edges, self.edges[1:])) and all(0 < e < 1 for e in self.edges),
                f"{key}.edges", f"{self.edges}: must increase strictly inside (0, 1)")
        require(all(0 <= v <= 1000 for v in self.levels), f"{key}.levels",
                f"{self.levels}: noise levels are diffusion steps in [0, 1000] (strength = level / 1000)")
        require(0.0 < self.share < 1.0, f"{key}.share", f"{self.share}: must be in (0, 1)")
        require(32 <= self.tower_size <= 1024, f"{key}.tower_size", f"{self.tower_size}: must be in [32, 1024]")
        require(self.components >= 1, f"{key}.components", "must be >= 1")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")

    @property
    def strengths(self) -> list[float]:
        return [v / 1000.0 for v in self.levels]


@dataclass
class AugmentConfig:
    """SimCLR's augmentations for small images, applied to both views of every variant."""

    # measured on shapes (small objects on coloured backgrounds): [0.6, 1] keeps the object in the crop (shape
    # probe +4 points over [0.35, 1]); the strongest jitter and grey_p 0.5 stop NT-Xent from matching by colour
    crop_scale: list[float] = field(default_factory=lambda: [0.6, 1.0])  # random resized crop: area share
    flip: float = 0.5
    jitter: float = 1.0  # brightness / contrast / saturation strength (hue: jitter / 4)
    jitter_p: float = 0.8
    grey_p: float = 0.5

    def validate(self, key: str) -> None:
        lo, hi = (self.crop_scale + [0.0, 0.0])[:2]
        require(len(self.crop_scale) == 2 and 0 < lo <= hi <= 1, f"{key}.crop_scale",
                f"{self.crop_scale}: [min, max] area shares with 0 < min <= max <= 1")
        for name in ("flip", "jitter_p", "grey_p"):
            require(0.0 <= getattr(self, name) <= 1.0, f"{key}.{name}", "must be a probability in [0, 1]")
        require(0.0 <= self.jitter <= 1.0, f"{key}.jitter", "must be in [0, 1]")


@dataclass
class SSLTrainConfig(TrainerConfig):
    epochs: int = 2  # measured (pooled, width 8): the 4 variants train and evaluate in ~4 min on 2 shared CPU cores
    batch_size: int = 256
    lr: float = 5e-3  # measured: shape probe +3 points over 2e-3 in the 2-epoch budget
    weight_decay: float = 1e-4
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup: float = 0.05
    drop_last: bool = True  # NT-Xent's negatives: equal batches
    threads: int = 1  # small ops: a second thread slowed steps up to 6x on a loaded 2-core machine
    select_metric: str = "steps"  # SSL has no labels at training time: the last weights are kept
    select_mode: Literal["max", "min"] = "max"

    def validate(self, key: str) -> None:
        super().validate(key)
        require(self.select_metric == "steps" and self.select_mode == "max", f"{key}.select_metric",
                "SSL keeps its last weights (no labels to select on): select_metric must be 'steps', "
                "select_mode 'max'")


@dataclass
class SSLConfig:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    encoder: str = "pooled"  # pooled: stride-1 conv blocks + max-pool (learns shape); strided: ConvEncoder's body
    width: int = 8  # the CNN encoder's first width (x 1-2-4-8 over four blocks); features dim 8 x width
    proj_dim: int = 64  # the projection head's output (the NT-Xent space); the probes read the encoder
    temperature: float = 0.2
    gamma: float = 1.0  # the quality softmax's sharpness (GenView: 1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: SSLTrainConfig = field(default_factory=SSLTrainConfig)

    def validate(self, key: str) -> None:
        require(bool(self.variants) and all(v in VARIANTS for v in self.variants), f"{key}.variants",
                f"{self.variants}: a non-empty list of {', '.join(VARIANTS)}")
        require(len(set(self.variants)) == len(self.variants), f"{key}.variants", "each variant once")
        require(self.encoder in ENCODERS, f"{key}.encoder", f"{self.encoder!r}: one of {', '.join(ENCODERS)}")
        require(self.width >= 1 and self.proj_dim >= 1, f"{key}.width", "width and proj_dim must be >= 1")
        require(self.temperature > 0, f"{key}.temperature", "must be > 0")
        require(self.gamma >= 0, f"{key}.gamma", "must be >= 0")


@dataclass
class ProbeConfig:
    """Frozen-encoder evaluation: a linear probe per attribute (shape = the class, colour = the bias
    attribute) selected on valid, and k-NN accuracy."""

    epochs: int = 30  # full-batch L-BFGS-free logistic regression: Adam epochs over the cached features
    lrs: list[float] = field(default_factory=lambda: [1e-2, 3e-3])
    weight_decays: list[float] = field(default_factory=lambda: [0.0, 1e-4])
    batch_size: int = 512
    knn_k: int = 20
    knn_temperature: float = 0.07  # weighted vote exp(cos / T) as in InstDisc / DINO's k-NN

    def validate(self, key: str) -> None:
        require(self.epochs >= 1 and self.batch_size >= 1, f"{key}.epochs", "epochs and batch_size must be >= 1")
        require(bool(self.lrs) and all(v > 0 for v in self.lrs), f"{key}.lrs", "a non-empty list of values > 0")
        require(bool(self.weight_decays) and all(v >= 0 for v in self.weight_decays), f"{key}.weight_decays",
                "a non-empty list of values >= 0")
        require(self.knn_k >= 1, f"{key}.knn_k", "must be >= 1")
        require(self.knn_temperature > 0, f"{key}.knn_temperature", "must be > 0")


@dataclass
class GenViewParams:
    data: GenViewData = field(default_factory=GenViewData)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


register_section("genview", GenViewParams)


def load_genview_params(path: str | Path = "params.yaml") -> GenViewParams:
    return section(read_yaml(path), GenViewParams, "genview")
