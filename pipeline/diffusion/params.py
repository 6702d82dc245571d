"""The params section ``diffusion``: the class-conditional generator's data, model, training and quality checks.

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist. The
``diffusion`` stage reads this section and ``towers`` (the frozen image tower of the Fréchet distance).

Measured (2026-12-04, shapes, 2 CPU threads, quiet machine): these defaults train 1000 steps in 389 s and
reach 24.2 % class consistency (the real-image classifier: 86.5 % on real test images) and a Fréchet distance
in EfficientNet-Lite0 features of 311 (real-vs-real floor 92). The issue's target (>= 80 % in under 8 minutes)
is NOT reached on this CPU: the samples are coloured blobs (README "Diffusion views").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core.params import check_name, read_yaml, register_section, require, section
from pipeline.core.trainer_config import TrainerConfig
from pipeline.diffusion.config import DiffusionConfig, UNetConfig


@dataclass
class DiffusionTrainConfig(TrainerConfig):
    """The plain trainer's settings. The generator keeps its last weights (and their EMA): every evaluation
    reports the valid loss, and selection is by the optimiser step count."""

    epochs: int = 4  # x 250 steps of 64 shapes images
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    lr_final: float = 0.1
    warmup: float = 0.02
    drop_last: bool = True  # equal batches: the same number of steps whatever the split's size
    threads: int = 2  # set explicitly: the measured budget is for 2 CPU threads
    select_metric: str = "steps"
    select_mode: Literal["max", "min"] = "max"

    def validate(self, key: str) -> None:
        super().validate(key)
        require(self.select_metric == "steps" and self.select_mode == "max", f"{key}.select_metric",
                "the generator keeps its last weights and their EMA: select_metric must be 'steps', select_mode 'max'")


@dataclass
class QualityConfig:
    """The measured quality of the trained generator (EMA weights, ``model.sampling_steps`` DDIM steps,
    ``model.guidance``)."""

    per_class: int = 32  # generated samples per class for the class consistency
    frechet_n: int = 256  # generated images (spread over the classes) and real test images of the Fréchet distance
    grid_per_class: int = 8  # samples per class in samples.png (one row per class)
    batch_size: int = 128  # images per sampling batch
    classifier_epochs: int = 8  # the independent CNN classifier, trained on the real training images
    classifier_batch: int = 128
    classifier_lr: float = 3e-3
    classifier_width: int = 32
    seed: int = 0  # the classifier's init and shuffling, the sampling noise and the real subsets

    def validate(self, key: str) -> None:
        for name in ("per_class", "frechet_n", "grid_per_class", "batch_size", "classifier_epochs",
                     "classifier_batch", "classifier_width"):
            require(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        require(self.frechet_n >= 2, f"{key}.frechet_n", "must be >= 2 (a covariance)")
        require(self.classifier_lr > 0, f"{key}.classifier_lr", "must be > 0")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


def _default_model() -> DiffusionConfig:
    return DiffusionConfig(unet=UNetConfig(image_size=32, channels=[16, 32, 64], norm_groups=8,
                                           attention_head_dim=8), sampling_steps=25, guidance=3.0)


@dataclass
class DiffusionParams:
    source: str = "shapes"  # a prepare-vision corpus (data/vision/<source>): its training images, its class labels
    n_train: int = 0  # the first n training images (0: all)
    n_valid: int = 512  # the first n valid images: the valid loss after each epoch (0: all)
    model: DiffusionConfig = field(default_factory=_default_model)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    seed: int = 0  # the UNet's initial weights and the training draws

    def validate(self, key: str) -> None:
        check_name(self.source, f"{key}.source")
        require(self.n_train >= 0, f"{key}.n_train", "must be >= 0 (0: all)")
        require(self.n_valid >= 0, f"{key}.n_valid", "must be >= 0 (0: all)")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


register_section("diffusion", DiffusionParams)


def load_diffusion_params(path: str | Path = "params.yaml") -> DiffusionParams:
    return section(read_yaml(path), DiffusionParams, "diffusion")
