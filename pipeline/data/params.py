"""The params section ``vision`` (stage ``prepare-vision``): the embedded image corpora and a real dataset.

Kept light (dataclasses only): every stage imports this module to know which top-level sections exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from pipeline.core.params import read_yaml, register_section, require, section

ATTRIBUTE = Literal["shape", "colour", "size", "position", "background"]
# values per attribute of the shapes corpus (colour: n_colours; background: the kinds listed); kept here so
# that validating params imports no numpy
N_VALUES = {"shape": 8, "size": 3, "position": 5}
MAX_COLOURS = 10  # colours in the vocabulary table (pipeline.data.vision.vocab.COLOUR_RGB)


def _rho(value: Optional[float], key: str) -> None:
    require(value is None or 0.0 <= value <= 1.0, key,
            f"must be in [0, 1] (the share of bias-aligned training images) or null (unbiased), got {value}")


@dataclass
class ShapesConfig:
    """Rendered shapes with masks, attributes and captions; ``rho`` biases the training split only."""

    n_train: int = 16000
    n_valid: int = 2000
    n_test: int = 2000
    rho: Optional[float] = None  # null: unbiased (the foundation); the debiasing track sets e.g. 0.95-0.995
    class_attribute: ATTRIBUTE = "shape"
    bias_attribute: ATTRIBUTE = "colour"  # class k's dominant value is value k % (number of bias values)
    n_colours: int = 8  # the first n colours of the vocabulary table
    colour_jitter: int = 24  # each image's RGB = the colour's + U{-j..j} per channel
    max_rotation: int = 180  # degrees, uniform in [-max, max]
    backgrounds: list[Literal["plain", "gradient", "noise"]] = field(
        default_factory=lambda: ["plain", "gradient", "noise"])
    captions_per_image: int = 2  # 3: 45k distinct captions to embed, over embed's 2-minute budget
    partial_caption_share: float = 0.3  # share of captions that mention only some attributes

    def n_values(self, attribute: str) -> int:
        return {**N_VALUES, "colour": self.n_colours, "background": len(self.backgrounds)}[attribute]

    def validate(self, key: str) -> None:
        for name in ("n_train", "n_valid", "n_test"):
            require(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        _rho(self.rho, f"{key}.rho")
        require(2 <= self.n_colours <= MAX_COLOURS, f"{key}.n_colours", f"must be in [2, {MAX_COLOURS}]")
        require(0 <= self.colour_jitter <= 50, f"{key}.colour_jitter", "must be in [0, 50]")
        require(0 <= self.max_rotation <= 180, f"{key}.max_rotation", "must be in [0, 180] degrees")
        require(len(self.backgrounds) >= 1 and len(set(self.backgrounds)) == len(self.backgrounds),
                f"{key}.backgrounds", "list one or more distinct kinds: plain, gradient, noise")
        require(self.captions_per_image >= 1, f"{key}.captions_per_image", "must be >= 1")
        require(0.0 <= self.partial_caption_share <= 1.0, f"{key}.partial_caption_share", "must be in [0, 1]")
        require(self.class_attribute != self.bias_attribute, f"{key}.bias_attribute",
                f"must differ from class_attribute ({self.class_attribute!r})")
        require(self.n_values(self.bias_attribute) >= 2, f"{key}.bias_attribute",
                f"{self.bias_attribute!r} takes a single value here; a bias needs at least 2")


@dataclass
class DigitsConfig:
    """scikit-learn's 1,797 real 8x8 handwritten digits, upsampled and coloured (Colored-MNIST protocol)."""

    image_size: int = 28
    rho: Optional[float] = 0.95  # 5 % bias-conflicting training images, the largest ratio of LfF / DFA
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    colour_jitter: int = 16
    mask_threshold: float = 0.5  # stroke = upsampled intensity >= this share of full ink

    def validate(self, key: str) -> None:
        require(8 <= self.image_size <= 128, f"{key}.image_size", "must be in [8, 128]")
        _rho(self.rho, f"{key}.rho")
        require(0 < self.valid_fraction and 0 < self.test_fraction and self.valid_fraction + self.test_fraction < 0.9,
                f"{key}.valid_fraction", "need valid_fraction > 0, test_fraction > 0 and their sum < 0.9")
        require(0 <= self.colour_jitter <= 50, f"{key}.colour_jitter", "must be in [0, 50]")
        require(0 < self.mask_threshold < 1, f"{key}.mask_threshold", "must be in (0, 1)")


@dataclass
class RealConfig:
    """A real dataset on disk, read by pipeline.data.vision.readers.read_real (kind none: no real dataset)."""

    kind: Literal["none", "mnist", "cifar10", "cifar100", "imagefolder", "jsonl", "coco", "n24news", "food101"] = "none"
    root: Optional[str] = None
    # options of the readers; each applies to the kinds whose reader takes it (a set one that does not apply
    # to the kind is an error): see pipeline/data/vision/readers.py
    image_size: Optional[int] = None  # all but mnist, cifar: resize to this side (null: all sizes must agree)
    valid_fraction: float = 0.1  # drawn from train where the dataset has no valid split
    test_fraction: float = 0.1  # imagefolder, jsonl, coco without split folders or fields
    images: Optional[str] = None  # jsonl, coco: the image folder (default: next to the caption file)
    split: Optional[str] = None  # coco: put a single captions file's images in this split
    year: str = "2017"  # coco folder mode: captions_{train,val}<year>.json
    labels: Literal["fine", "coarse"] = "fine"  # cifar100: the 100 fine or the 20 coarse classes
    text_field: Literal["headline", "caption", "abstract", "body"] = "abstract"  # n24news: the caption text
    skip_missing: bool = False  # food101: leave out rows whose image is missing (false: an error)

    #: the reader options above (with their defaults, for "was it set?")
    OPTIONS = ("image_size", "valid_fraction", "test_fraction", "images", "split", "year", "labels", "text_field",
               "skip_missing")

    def validate(self, key: str) -> None:
        if self.kind != "none":
            require(self.root is not None, f"{key}.root", f"is required with kind {self.kind!r} (the dataset's folder)")
        require(self.image_size is None or self.image_size >= 8, f"{key}.image_size", "must be >= 8 or null")
        for name in ("valid_fraction", "test_fraction"):
            require(0.0 <= getattr(self, name) < 1.0, f"{key}.{name}", "must be in [0, 1)")
        require(self.valid_fraction + self.test_fraction < 1.0, f"{key}.valid_fraction",
                "valid_fraction + test_fraction must be below 1")


@dataclass
class VisionConfig:
    seed: int = 0
    image_size: int = 32  # of the shapes; a multiple of 8 (the noise texture's blobs are 1/8 of the side)
    sources: list[Literal["shapes", "digits"]] = field(default_factory=lambda: ["shapes", "digits"])
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    digits: DigitsConfig = field(default_factory=DigitsConfig)
    real: RealConfig = field(default_factory=RealConfig)

    def validate(self, key: str) -> None:
        require(self.seed >= 0, f"{key}.seed", "must be >= 0")
        require(self.image_size >= 16 and self.image_size % 8 == 0 and self.image_size <= 256, f"{key}.image_size",
                f"must be a multiple of 8 in [16, 256], got {self.image_size}")
        require(len(set(self.sources)) == len(self.sources), f"{key}.sources", "list each source once")
        require(bool(self.sources) or self.real.kind != "none", f"{key}.sources",
                "list at least one source (shapes, digits) or set real.kind")


register_section("vision", VisionConfig)


def load_vision(path) -> VisionConfig:
    """The ``vision`` section of the params file at ``path`` (defaults when absent)."""
    return section(read_yaml(path), VisionConfig, "vision")
