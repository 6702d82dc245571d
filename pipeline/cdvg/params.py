"""The params section ``cdvg``: contrastive debiasing with diffusion bias-transformed views (CDvG) against ERM and LfF.

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist.
Which stage reads what:

* ``cdvg-data``: ``cdvg.data`` (the biased sets, one per rho, and the held-out unbiased oracle split);
* ``cdvg-oracles``: ``cdvg.oracle`` (the content and bias oracles, trained on the oracle split only);
* ``cdvg-generator@<rho>``: ``cdvg.generator`` (the class-conditional diffusion model, biased training set,
  class labels only);
* ``cdvg-views@<rho>``: ``cdvg.translate`` (one bias-transformed view per training image, and the oracle rates
  of every translation recipe on a subset);
* ``cdvg@<method>-<backbone>-<rho>-<seed>``: ``cdvg.train`` (the debiasing run);
* ``evaluate-cdvg``: ``seeds``, ``cdvg.data.rhos`` and ``cdvg.train.methods`` / ``backbones`` (which runs exist).

Methods (same backbone, budget and selection on valid; only the loss differs):
    * ``erm``: cross-entropy on the biased training set;
    * ``lff``: Learning from Failure (Nam et al. 2020): a biased model trained with GCE re-weights the
      debiased model's cross-entropy;
    * ``cdvg``: cross-entropy + lambda x NT-Xent between each image and its bias-transformed view;
    * ``cdvg_lff``: LfF's re-weighted cross-entropy + lambda x the same contrastive term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from pipeline.core.params import read_yaml, register_section, require, section
from pipeline.core.trainer_config import TrainerConfig
from pipeline.diffusion.config import DiffusionConfig, UNetConfig, check_strength
from pipeline.diffusion.params import DiffusionTrainConfig

METHODS = ("erm", "lff", "cdvg", "cdvg_lff")
BACKBONES = ("mlp", "cnn")
SOURCES = ("digits", "mnist", "shapes")


def rho_tag(rho: float) -> str:
    """The folder name of a ratio, as dvc.yaml's ``rho${item.rho}`` renders it (``rho0.99``)."""
    return f"rho{float(rho)!r}"


def check_rho(rho: float, data: "CdvgData") -> str:
    """``rho``'s folder name, once it is one of ``cdvg.data.rhos`` (a stage's ``--rho``)."""
    require(rho in data.rhos, "cdvg.data.rhos", f"--rho {rho} is not one of {data.rhos}")
    return rho_tag(rho)


@dataclass
class CdvgData:
    """The biased sets (``cdvg-data``). Class = digit or shape, bias = colour; in a training set of ratio rho,
    ``round(rho x n_k)`` images of each class k have the class's dominant colour, the others one of the other
    colours uniformly. Test is unbiased (colour independent of the class) and is also split into its
    bias-conflicting and bias-aligned parts. The oracle split is unbiased too and held out: only the oracles
    train on it."""

    source: Literal["digits", "mnist", "shapes"] = "digits"  # digits: sklearn's real handwriting, offline
    root: Optional[str] = None  # mnist: the folder with MNIST/raw (torchvision's layout); the standard Colored MNIST
    rhos: list[float] = field(default_factory=lambda: [0.99])  # bias-aligned shares of training (and biased valid)
    valid: Literal["biased", "unbiased"] = "unbiased"  # unbiased: like test, so that selection means something;
    #                                                    biased: the training rho (no bias-free sample is seen before
    #                                                    test, as CDvG claims; its accuracy saturates near 100 %)
    image_size: int = 28  # the side of every image (Colored MNIST's 28)
    colour_jitter: int = 16  # each image's RGB = its colour's + U{-j..j} per channel
    # digits (1,797 images) and mnist: shares of the source per split, stratified by class (mnist: of its train
    # file; its t10k file is the test split)
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    oracle_fraction: float = 0.15
    # shapes: counts (rendered, so any size)
    n_train: int = 8000
    n_valid: int = 1000
    n_test: int = 1000
    n_oracle: int = 2000
    seed: int = 0  # the splits, the colours and (shapes) the scenes

    def validate(self, key: str) -> None:
        require(bool(self.rhos), f"{key}.rhos", "give one or more ratios, e.g. [0.99]")
        for r in self.rhos:
            require(isinstance(r, float) and 0.0 < r < 1.0, f"{key}.rhos",
                    f"{r}: a bias-aligned ratio must be in (0, 1), e.g. 0.95, 0.98, 0.99, 0.995")
        require(len(set(self.rhos)) == len(self.rhos), f"{key}.rhos", "each ratio once")
        require(self.source != "mnist" or bool(self.root), f"{key}.root",
                "source mnist reads MNIST from disk: set root to the folder holding MNIST/raw")
        require(8 <= self.image_size <= 128, f"{key}.image_size", "must be in [8, 128]")
        require(0 <= self.colour_jitter <= 50, f"{key}.colour_jitter", "must be in [0, 50]")
        for name in ("valid_fraction", "test_fraction", "oracle_fraction"):
            require(0.0 < getattr(self, name) < 0.5, f"{key}.{name}", "must be in (0, 0.5)")
        require(self.valid_fraction + self.test_fraction + self.oracle_fraction < 0.9, f"{key}.valid_fraction",
                "valid, test and oracle fractions must leave at least 10 % for training")
        for name in ("n_train", "n_valid", "n_test", "n_oracle"):
            require(getattr(self, name) >= 10, f"{key}.{name}", "must be >= 10")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


@dataclass
class OracleConfig:
    """The two judges of a translation, small CNNs trained on the held-out UNBIASED oracle split: ``content``
    names the class from a greyscale image (colour removed), ``bias`` names the colour. Their accuracy on the
    clean unbiased test set is reported beside every rate they give."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    width: int = 32
    seed: int = 0

    def validate(self, key: str) -> None:
        for name in ("epochs", "batch_size", "width"):
            require(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        require(self.lr > 0, f"{key}.lr", "must be > 0")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


@dataclass
class GeneratorTrainConfig(DiffusionTrainConfig):
    """The diffusion track's generator training (last weights and their EMA kept), sized for the digits."""

    epochs: int = 50  # x 15 steps of 64 images: 750 steps on the 990 digits training images
    eval_every: int = 10  # the valid loss 5 times (each costs about a tenth of an epoch)


def _default_generator_model() -> DiffusionConfig:
    return DiffusionConfig(unet=UNetConfig(image_size=28, channels=[16, 32, 64], norm_groups=8, attention_head_dim=8),
                           sampling_steps=10, guidance=3.0)


@dataclass
class GeneratorConfig:
    """The bias-transformation generator: the diffusion track's class-conditional UNet, trained on one ratio's
    BIASED training set with its class labels (never the bias labels)."""

    model: DiffusionConfig = field(default_factory=_default_generator_model)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    n_valid: int = 256  # the first n valid images: the valid loss per epoch (0: all)
    seed: int = 0

    def validate(self, key: str) -> None:
        require(self.n_valid >= 0, f"{key}.n_valid", "must be >= 0 (0: all)")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")


@dataclass
class Recipe:
    """One translation recipe: ``method`` at ``strength`` (share of the DDIM schedule) and ``guidance``."""

    method: Literal["sdedit", "inversion"] = "inversion"
    strength: float = 1.0
    guidance: float = 3.0

    def validate(self, key: str) -> None:
        check_strength(self.strength, f"{key}.strength")
        require(self.strength > 0, f"{key}.strength", "must be > 0 (0 returns the image itself)")
        require(self.guidance >= 0, f"{key}.guidance", "must be >= 0")

    @property
    def name(self) -> str:
        return f"{self.method} s{self.strength:g} w{self.guidance:g}"


def _compare() -> list[Recipe]:
    return [Recipe("sdedit", 0.3), Recipe("sdedit", 0.5), Recipe("sdedit", 0.7), Recipe("inversion", 0.3, 6.0),
            Recipe("inversion", 0.5, 3.0), Recipe("inversion", 1.0, 3.0)]


@dataclass
class TranslateConfig:
    """How a training image of class y becomes its bias-transformed view: the target class y' is drawn uniformly
    among the other classes (one per image, seeded), then either

    * ``sdedit``: noise to ``strength`` of the DDIM schedule and denoise under y' (guidance ``guidance``), or
    * ``inversion``: DDIM inversion under y up to ``strength`` of the schedule (1: to pure noise), then
      regeneration under y' (guidance ``guidance``) from there.

    ``compare`` lists further recipes measured by the oracles on ``compare_n`` training images (the report's
    table of which translation moves what)."""

    method: Literal["sdedit", "inversion"] = "sdedit"  # chosen on CDvG's valid accuracy (README "CDvG")
    strength: float = 0.5
    guidance: float = 3.0
    steps: int = 10  # DDIM steps of the full schedule
    batch_size: int = 256
    compare: list[Recipe] = field(default_factory=_compare)
    compare_n: int = 128
    seed: int = 0  # the target classes and the SDEdit noise

    def validate(self, key: str) -> None:
        self.recipe.validate(key)
        require(1 <= self.steps <= 1000, f"{key}.steps", "must be in [1, 1000]")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        require(self.compare_n >= 1, f"{key}.compare_n", "must be >= 1")
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")

    @property
    def recipe(self) -> Recipe:
        """The translation the views are made with."""
        return Recipe(self.method, self.strength, self.guidance)


@dataclass
class MethodTrainConfig(TrainerConfig):
    """The debiasing runs' trainer: Adam-like (AdamW), batch 256 as LfF / DFA; selection by valid accuracy."""

    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3  # LfF's Colored-MNIST rate
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_clip: Optional[float] = None  # LfF / DFA do not clip (and LfF's two nets would be clipped together)
    threads: int = 1  # small models: a second thread is mostly overhead
    eval_every: int = 5
    select_metric: str = "accuracy"
    select_mode: Literal["max", "min"] = "max"

    def validate(self, key: str) -> None:
        super().validate(key)
        require(self.select_metric == "accuracy" and self.select_mode == "max", f"{key}.select_metric",
                "the debiasing runs are selected by valid accuracy: select_metric 'accuracy', select_mode 'max'")


@dataclass
class MethodsConfig:
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    backbones: list[str] = field(default_factory=lambda: list(BACKBONES))
    mlp_hidden: list[int] = field(default_factory=lambda: [100, 100, 100])  # LfF / DFA's Colored-MNIST MLP
    cnn_width: int = 8  # the small CNN: conv widths w, 2w, 4w, then global average pooling
    proj_dim: int = 64  # the contrastive projection head's output
    temperature: float = 0.2  # NT-Xent's
    lam: float = 1.0  # CDvG's weight of the contrastive term
    view_ce: bool = False  # also give the view the cross-entropy of the original's class
    gce_q: float = 0.7  # LfF's GCE exponent
    ema: float = 0.7  # LfF's moving average of the per-sample losses
    train: MethodTrainConfig = field(default_factory=MethodTrainConfig)

    def validate(self, key: str) -> None:
        require(bool(self.methods) and all(m in METHODS for m in self.methods), f"{key}.methods",
                f"{self.methods}: a non-empty list of {', '.join(METHODS)}")
        require(len(set(self.methods)) == len(self.methods), f"{key}.methods", "each method once")
        require(bool(self.backbones) and all(b in BACKBONES for b in self.backbones), f"{key}.backbones",
                f"{self.backbones}: a non-empty list of {', '.join(BACKBONES)}")
        require(len(set(self.backbones)) == len(self.backbones), f"{key}.backbones", "each backbone once")
        require(bool(self.mlp_hidden) and all(h >= 1 for h in self.mlp_hidden), f"{key}.mlp_hidden",
                "a non-empty list of widths >= 1")
        require(self.cnn_width >= 1 and self.proj_dim >= 1, f"{key}.cnn_width", "cnn_width and proj_dim must be >= 1")
        require(self.temperature > 0, f"{key}.temperature", "must be > 0")
        require(self.lam >= 0, f"{key}.lam", "must be >= 0")
        require(0 < self.gce_q <= 1, f"{key}.gce_q", "must be in (0, 1]")
        require(0 <= self.ema < 1, f"{key}.ema", "must be in [0, 1)")


@dataclass
class CdvgParams:
    data: CdvgData = field(default_factory=CdvgData)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    train: MethodsConfig = field(default_factory=MethodsConfig)


register_section("cdvg", CdvgParams)


def load_cdvg_params(path: str | Path = "params.yaml") -> CdvgParams:
    return section(read_yaml(path), CdvgParams, "cdvg")
