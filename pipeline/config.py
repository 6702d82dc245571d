"""params.yaml as typed, validated config objects.

Each DVC stage reads only its own top-level sections (``prepare`` reads ``data``, ``features``
and ``split``; the train stages read ``model``, ``train`` and ``cil``; ``evaluate`` reads
``evaluate``). Parsing is strict: an unknown key, a wrong type or an impossible value raises
:class:`ParamsError` with the dotted key and what is allowed, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pipeline.core.params import check_name, parse_seeds, read_yaml, register_section, section
from pipeline.core.params import require as _require

# ----------------------------------------------------------------------------- prepare: data


@dataclass
class SynthConfig:
    """The embedded corpus: spoken commands synthesised offline by espeak-ng (FSC layout)."""

    seed: int = 0
    n_speakers: int = 48  # a speaker is a fixed (voice, variant, pitch, rate) combination
    n_variants: int = 16  # voice variants (timbres) shared by the speakers; each has a training speaker
    valid_speakers: int = 6
    test_speakers: int = 8
    utterances_per_speaker: int = 190
    snr_db_min: float = 10.0  # additive noise at a uniform random SNR in [min, max] dB
    snr_db_max: float = 35.0
    workers: int = 2  # processes used for synthesis (0 = all cores)

    @property
    def variant_pool(self) -> int:
        """Variants actually used: every one needs a training speaker, so at most that many."""
        return min(self.n_variants, self.n_speakers - self.valid_speakers - self.test_speakers)

    def validate(self, key: str) -> None:
        _require(self.n_speakers >= 3, f"{key}.n_speakers", "need at least 3 speakers (train, valid, test)")
        _require(self.valid_speakers >= 1, f"{key}.valid_speakers", "must be >= 1")
        _require(self.test_speakers >= 1, f"{key}.test_speakers", "must be >= 1")
        _require(
            self.valid_speakers + self.test_speakers < self.n_speakers,
            f"{key}.n_speakers",
            f"must exceed valid_speakers + test_speakers ({self.valid_speakers + self.test_speakers}) "
            "so that some speakers are left for training",
        )
        _require(self.n_variants >= 1, f"{key}.n_variants", "must be >= 1")
        pool = self.variant_pool
        _require(self.n_speakers <= 8 * pool, f"{key}.n_variants",
                 f"too few variants for {self.n_speakers} speakers: a (base voice, variant) pair is one speaker, there "
                 f"are 8 base voices and at most the number of training speakers of variants are used ({pool})")
        _require(self.utterances_per_speaker >= 1, f"{key}.utterances_per_speaker", "must be >= 1")
        _require(self.snr_db_min <= self.snr_db_max, f"{key}.snr_db_min", "must be <= snr_db_max")
        _require(self.workers >= 0, f"{key}.workers", "must be >= 0 (0 = all cores)")


#: The 35 words of Google Speech Commands v2, the default keyword-spotting vocabulary.
SPEECH_COMMANDS_WORDS: tuple[str, ...] = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine", "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila",
    "tree", "wow", "backward", "forward", "follow", "learn", "visual",
)


@dataclass
class KeywordsConfig:
    """The zero-shot keyword-spotting test set that prepare writes beside the corpus (a CWCL stage classifies
    each clip by its nearest word embedding). ``synthetic``: the ``data.synthetic`` plan's test speakers say
    each word ``repeats`` times (whatever ``data.source`` is); ``speech_commands``: the ``testing_list.txt``
    clips of a Google Speech Commands folder at ``root`` (``words: null`` keeps every word it lists);
    ``none``: no keyword set. Words become folder names, hence the name rule."""

    source: Literal["synthetic", "speech_commands", "none"] = "synthetic"
    root: Optional[str] = None  # a Google Speech Commands folder (source speech_commands)
    # bool too, only to say what went wrong: YAML reads an unquoted yes/no/on/off as true/false
    words: Optional[list[Union[str, bool]]] = field(default_factory=lambda: list(SPEECH_COMMANDS_WORDS))
    repeats: int = 2  # synthetic: clips per word per test speaker

    def validate(self, key: str) -> None:
        if self.source == "speech_commands":
            _require(self.root is not None, f"{key}.root",
                     "is required with source 'speech_commands' (the dataset's folder)")
        else:
            _require(self.root is None, f"{key}.root",
                     f"is read only with source 'speech_commands', not {self.source!r} (set it to null)")
        if self.words is None:
            _require(self.source != "synthetic", f"{key}.words",
                     "null (every word testing_list.txt lists) needs source 'speech_commands'; "
                     "list the words to synthesise")
        else:
            _require(len(self.words) >= 1, f"{key}.words", "list at least one word")
            for i, word in enumerate(self.words):
                _require(not isinstance(word, bool), f"{key}.words[{i}]",
                         f"{word} is not a word: YAML reads an unquoted yes, no, on or off as true/false; quote them")
                check_name(word, f"{key}.words[{i}]")
            for word in self.words:
                _require(self.words.count(word) == 1, f"{key}.words", f"{word!r} is listed twice (a word is one class)")
        _require(self.repeats >= 1, f"{key}.repeats", f"must be >= 1, got {self.repeats}")


@dataclass
class DataConfig:
    source: Literal["synthetic", "fsc", "slurp"] = "synthetic"
    root: Optional[str] = None  # a real FSC or SLURP copy (source fsc / slurp)
    slurp_audio: Literal["real", "synth", "both"] = "real"  # which SLURP recordings to use
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    keywords: KeywordsConfig = field(default_factory=KeywordsConfig)

    def validate(self, key: str) -> None:
        if self.source != "synthetic":
            _require(self.root is not None, f"{key}.root", f"is required with source {self.source!r} (the dataset's folder)")


@dataclass
class FeaturesConfig:
    """What prepare stores per utterance: log-Mel filterbanks (Kaldi-style fbank, the default) or, with
    ``kind: waveform``, the raw samples that a pretrained wav2vec2-style encoder (``model.pretrained_encoder``)
    reads. ``n_mels``, ``win_ms`` apply to fbank only; ``max_frames`` counts ``hop_ms`` frames for both
    kinds, so that it cuts the same duration (waveform: ``max_frames * hop_ms`` ms of samples)."""

    kind: Literal["fbank", "waveform"] = "fbank"
    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    max_frames: Optional[int] = None  # longer utterances are cut (null = keep all)

    def validate(self, key: str) -> None:
        _require(self.sample_rate > 0, f"{key}.sample_rate", "must be > 0")
        _require(1 <= self.n_mels <= 256, f"{key}.n_mels", "must be in [1, 256]")
        _require(self.hop_ms > 0 and self.win_ms >= self.hop_ms, f"{key}.win_ms", "need win_ms >= hop_ms > 0")
        _require(self.max_frames is None or self.max_frames > 0, f"{key}.max_frames", "must be > 0 or null")


PRESETS: dict[str, dict[str, Any]] = {
    # name: the corpus family it fits, the number of classes, the first task's size, the other tasks' size
    "fsc-3": {"family": "fsc", "n_classes": 31, "initial_increment": 11, "increment": 10},
    "fsc-6": {"family": "fsc", "n_classes": 31, "initial_increment": 6, "increment": 5},
    "fsc-10": {"family": "fsc", "n_classes": 31, "initial_increment": 4, "increment": 3},
    "slurp-3": {"family": "slurp", "n_classes": 18, "initial_increment": 6, "increment": 6},
    "slurp-6": {"family": "slurp", "n_classes": 18, "initial_increment": 3, "increment": 3},
}


@dataclass
class SplitConfig:
    """Class-incremental split: class order, then the first task's size and the other tasks' size.

    ``preset`` (one of :data:`PRESETS`) fixes both increments; otherwise give ``initial_increment``
    and ``increment``, or ``n_tasks`` (classes spread as evenly as possible, extras in the first task).
    ``class_order``: ``"paper"`` (the fixed FSC order of Cappellazzo et al.), ``"sorted"``, ``"random"``
    (permutation drawn with ``order_seed``) or an explicit list of class indices.
    """

    preset: Optional[str] = "fsc-6"
    n_tasks: Optional[int] = None
    initial_increment: Optional[int] = None
    increment: Optional[int] = None
    class_order: Union[Literal["paper", "sorted", "random"], list[int]] = "paper"
    order_seed: int = 0

    def validate(self, key: str) -> None:
        if self.preset is not None:
            _require(self.preset in PRESETS, f"{key}.preset", f"expected one of {', '.join(PRESETS)} or null, got {self.preset!r}")
            _require(
                self.n_tasks is None and self.initial_increment is None and self.increment is None,
                f"{key}.preset",
                "set either a preset or n_tasks / initial_increment / increment, not both",
            )
        else:
            given_incr = self.initial_increment is not None or self.increment is not None
            _require(
                (self.n_tasks is not None) != given_incr,
                f"{key}.n_tasks",
                "without a preset, give n_tasks, or initial_increment and increment",
            )
            if self.n_tasks is not None:
                _require(self.n_tasks >= 1, f"{key}.n_tasks", "must be >= 1")
            else:
                both = "give initial_increment and increment together"
                _require(self.initial_increment is not None and self.initial_increment >= 1, f"{key}.initial_increment",
                         f"must be an integer >= 1 ({both})")
                _require(self.increment is not None and self.increment >= 1, f"{key}.increment",
                         f"must be an integer >= 1 ({both})")


@dataclass
class PrepareParams:
    data: DataConfig
    features: FeaturesConfig
    split: SplitConfig


def load_prepare(path: str | Path = "params.yaml") -> PrepareParams:
    """The prepare stage's params, with the split checked against the corpus family of ``data.source``.

    The FSC family (``fsc`` and ``synthetic``) has its 31 classes fixed, so its whole split (preset,
    n_tasks, increments, class order) is checked here, before any work. SLURP's classes come from its
    training data: only the preset's family and the class order ``paper`` are checked here, the rest
    once the corpus has been read (still before features are computed).
    """
    from pipeline.data.splits import check_split_for_source

    raw = read_yaml(path)
    params = PrepareParams(
        data=section(raw, DataConfig, "data"),
        features=section(raw, FeaturesConfig, "features"),
        split=section(raw, SplitConfig, "split"),
    )
    check_split_for_source(params.split, params.data.source)
    return params


# ----------------------------------------------------------------------------- train: model, train, cil, recipes


@dataclass
class ModelConfig:
    """The seq2seq SLU model: a front end (frame stacking by default) and a speech encoder (a bidirectional
    GRU by default; see :mod:`pipeline.models.encoder`), a Transformer decoder, projection heads."""

    encoder: Literal["gru", "conv", "transformer"] = "gru"  # bidirectional GRU; see pipeline.models.encoder
    utterance_norm: bool = True  # subtract each utterance's mean feature vector (gain / channel invariance)
    spec_augment: bool = False  # frequency and time masking while training (slower to converge)
    d_model: int = 96
    encoder_layers: int = 2
    decoder_layers: int = 1
    heads: int = 4
    ff_mult: int = 2  # feed-forward width = ff_mult * d_model
    dropout: float = 0.1
    front: Literal["stack", "conv"] = "stack"  # frame stacking or strided convolutions (pipeline.models.encoder)
    subsample: Literal[2, 4, 8] = 8  # time reduction of the front end (10 ms frames -> 80 ms)
    conv_channels: int = 96  # width of the convolutions before the last one
    proj_dim: int = 64  # audio / text projection heads (contrastive losses)
    max_decode_len: int = 40  # tokens, for greedy decoding
    # A local Hugging Face wav2vec2-style folder (config.json + weights) replacing the from-scratch encoder
    # (pipeline.models.pretrained); needs features.kind: waveform. encoder, utterance_norm, front, subsample
    # and conv_channels then do not apply; spec_augment switches the checkpoint's own time/feature masking.
    pretrained_encoder: Optional[str] = None
    freeze_pretrained_feature_encoder: bool = True  # keep the pretrained convolutional feature encoder fixed

    def validate(self, key: str) -> None:
        _require(self.d_model % self.heads == 0, f"{key}.d_model", f"must be divisible by heads ({self.heads})")
        _require(self.encoder_layers >= 1 and self.decoder_layers >= 1, f"{key}.encoder_layers", "need >= 1 layer each")
        _require(0.0 <= self.dropout < 1.0, f"{key}.dropout", "must be in [0, 1)")
        _require(self.proj_dim >= 1, f"{key}.proj_dim", "must be >= 1")
        _require(self.conv_channels >= 1, f"{key}.conv_channels", "must be >= 1")
        _require(self.max_decode_len >= 4, f"{key}.max_decode_len", "must be >= 4")
        if self.pretrained_encoder is not None:  # checked here so that a typo fails before any work
            folder = Path(self.pretrained_encoder)
            _require(folder.is_dir(), f"{key}.pretrained_encoder",
                     f"{folder}: not a folder (expected a local Hugging Face checkpoint folder; nothing is downloaded)")
            _require((folder / "config.json").is_file(), f"{key}.pretrained_encoder",
                     f"{folder / 'config.json'}: missing (expected a folder written by save_pretrained)")


@dataclass
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA with bf16 autocast when present, else CPU
    first_task_epochs: int = 10  # the first task also learns the acoustic front end from scratch
    epochs: int = 3  # every later task
    intent_weight: float = 1.0  # extra weight of the intent step: loss = CE(tokens) + intent_weight * CE(intent)
    label_smoothing: float = 0.1  # of both cross-entropies above (0: none)
    batch_size: int = 64
    eval_batch_size: int = 128
    lr: float = 3e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # per task: cosine from lr down to lr * lr_final
    lr_final: float = 0.05  # cosine: the last step's learning rate as a fraction of lr
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    threads: int = 0  # CPU threads (0 = all cores)
    reset_optimizer: bool = True  # a fresh optimiser per task (Avalanche's default) or carry its state over
    progress: bool = True

    def validate(self, key: str) -> None:
        _require(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        _require(self.first_task_epochs >= 1, f"{key}.first_task_epochs", "must be >= 1")
        _require(self.intent_weight >= 0, f"{key}.intent_weight", "must be >= 0")
        _require(0.0 <= self.label_smoothing < 1.0, f"{key}.label_smoothing", "must be in [0, 1)")
        _require(self.batch_size >= 2, f"{key}.batch_size", "must be >= 2 (contrastive losses need pairs)")
        _require(self.eval_batch_size >= 1, f"{key}.eval_batch_size", "must be >= 1")
        _require(self.lr > 0, f"{key}.lr", "must be > 0")
        _require(0.0 <= self.lr_final <= 1.0, f"{key}.lr_final", "must be in [0, 1] (a fraction of lr)")
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        _require(self.grad_clip > 0, f"{key}.grad_clip", "must be > 0")
        _require(self.threads >= 0, f"{key}.threads", "must be >= 0")


@dataclass
class Recipe:
    """One named strategy: which continual-learning ingredients it uses and their hyper-parameters.

    ``replay``: class-balanced rehearsal buffer (Avalanche storage policies) of ``buffer_size`` samples
    (a fraction of the training set if < 1, else a count); ``contrastive``: COCONUT's NSPT loss on
    rehearsal samples, or its SupCon / NTPT variants; ``mm``: audio-text InfoNCE on current samples;
    ``skd``: sequence-level KD towards the teacher's stored transcripts of rehearsal samples;
    ``lwf`` / ``ewc``: regularisation baselines; ``joint``: train on all classes seen so far (upper bound).
    ``mm_target``: the audio-text term's text side, the model's own text embedding (``model``, COCONUT) or
    the frozen text tower's embedding of the transcript from the embed stage's cache (``frozen_text``,
    reached through a projection head of its own); ``mm_loss``: one-hot InfoNCE (``infonce``) or CWCL's
    soft targets from the frozen embeddings' similarities (``cwcl``, Srinivasa et al. 2023; needs
    ``frozen_text``). ``epochs`` overrides ``train.epochs`` for this strategy (joint's later tasks pass over all the data
    seen so far, so a few epochs there cost as much as many for the others).
    """

    joint: bool = False
    replay: bool = False
    buffer_size: float = 231  # 231 = ER 1 % of real FSC (23,132 training utterances): ~7 per class
    buffer_selection: Literal["random", "herding"] = "random"
    buffer_batch_size: Optional[int] = 32  # rehearsal samples added to each batch (null = train.batch_size)
    contrastive: Literal["none", "nspt", "supcon", "ntpt"] = "none"
    lambda_contrastive: float = 0.1
    tau: float = 0.1
    mm: bool = False
    lambda_mm: float = 0.1
    tau_mm: float = 0.1
    mm_target: Literal["model", "frozen_text"] = "model"
    mm_loss: Literal["infonce", "cwcl"] = "infonce"
    skd: bool = False
    lambda_skd: float = 1.0
    lwf: bool = False
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    ewc: bool = False
    ewc_lambda: float = 100.0
    epochs: Optional[int] = None  # epochs of every task after the first (null = train.epochs)

    def validate(self, key: str) -> None:
        _require(self.epochs is None or self.epochs >= 1, f"{key}.epochs", "must be >= 1 or null (train.epochs)")
        if self.joint:
            _require(
                not (self.replay or self.contrastive != "none" or self.mm or self.skd or self.lwf or self.ewc),
                f"{key}.joint", "joint training sees all data: it takes no replay or regularisation switches",
            )
        _require(self.buffer_size > 0, f"{key}.buffer_size", "must be > 0 (a fraction < 1 or a count >= 1)")
        _require(self.buffer_size < 1 or float(self.buffer_size).is_integer(), f"{key}.buffer_size",
                 "a count must be a whole number (or give a fraction < 1)")
        _require(self.buffer_batch_size is None or self.buffer_batch_size >= 1, f"{key}.buffer_batch_size", "must be >= 1")
        for name in ("contrastive", "skd"):
            on = getattr(self, name) not in (False, "none")
            _require(not on or self.replay, f"{key}.{name}", "works on rehearsal samples: needs replay: true")
        if self.mm_target != "model" or self.mm_loss != "infonce":
            changed = "mm_target" if self.mm_target != "model" else "mm_loss"
            _require(self.mm, f"{key}.{changed}", "sets the audio-text term: needs mm: true")
        _require(self.mm_loss != "cwcl" or self.mm_target == "frozen_text", f"{key}.mm_loss",
                 "cwcl takes its soft targets from the frozen text tower: needs mm_target: frozen_text")
        _require(self.tau > 0 and self.tau_mm > 0 and self.lwf_temperature > 0, f"{key}.tau", "temperatures must be > 0")
        for name in ("lambda_contrastive", "lambda_mm", "lambda_skd", "lwf_alpha", "ewc_lambda"):
            _require(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")


@dataclass
class TaskItem:
    """One task of the chain; ``prev`` names the checkpoint it starts from (``init`` or ``task<k-1>``).

    DVC templating cannot compute k-1, so the list spells it out.
    """

    k: int
    prev: str


@dataclass
class CilConfig:
    strategies: list[str] = field(default_factory=lambda: ["finetune", "replay", "coconut", "coconut+skd", "joint"])
    tasks: list[TaskItem] = field(default_factory=list)

    def validate(self, key: str) -> None:
        _require(len(self.strategies) >= 1, f"{key}.strategies", "list at least one strategy")
        for name in self.strategies:
            check_name(name, f"{key}.strategies")
            _require(name != "first", f"{key}.strategies",
                     "'first' names stage first's folder models/cil/first: rename the strategy")
        _require(len(set(self.strategies)) == len(self.strategies), f"{key}.strategies", "names must be unique")
        _require(len(self.tasks) >= 1, f"{key}.tasks", "list at least one task")
        for i, t in enumerate(self.tasks):
            want = "init" if i == 0 else f"task{i - 1}"
            _require(t.k == i and t.prev == want, f"{key}.tasks[{i}]", f"expected {{k: {i}, prev: {want}}}, got {{k: {t.k}, prev: {t.prev}}}")


@dataclass
class TrainParams:
    model: ModelConfig
    train: TrainConfig
    cil: CilConfig
    recipes: dict[str, Recipe]
    seeds: list[int]

    def check_strategy(self, name: str) -> None:
        """A strategy named on the command line must have a recipe."""
        _require(name in self.recipes, "recipes", f"no recipe named {name!r} (known: {', '.join(self.recipes)})")


def load_train(path: str | Path = "params.yaml") -> TrainParams:
    raw = read_yaml(path)
    recipes = section(raw, dict[str, Recipe], "recipes")
    for name in recipes:
        check_name(name, f"recipes.{name}")
    cil = section(raw, CilConfig, "cil")
    for name in cil.strategies:
        _require(name in recipes, "cil.strategies", f"{name!r} has no recipe under recipes: (known: {', '.join(recipes)})")
    seeds = parse_seeds(raw)
    return TrainParams(
        model=section(raw, ModelConfig, "model"),
        train=section(raw, TrainConfig, "train"),
        cil=cil,
        recipes=recipes,
        seeds=seeds,
    )


# ----------------------------------------------------------------------------- evaluate


@dataclass
class EvaluateConfig:
    """The class-incremental report (stage ``evaluate``)."""

    upper_bound: Optional[str] = "joint"  # drawn dashed and never marked best; a strategy not run is not drawn
    dpi: int = 120
    title: str = "Class-incremental learning report"

    def validate(self, key: str) -> None:
        _require(50 <= self.dpi <= 600, f"{key}.dpi", f"expected an integer in [50, 600], got {self.dpi!r}")
        _require(bool(self.title.strip()), f"{key}.title", f"expected a non-empty string, got {self.title!r}")


# ----------------------------------------------------------------------------- the sections this module declares

_SCHEMAS = {"data": DataConfig, "features": FeaturesConfig, "split": SplitConfig, "model": ModelConfig,
            "train": TrainConfig, "cil": CilConfig, "recipes": dict[str, Recipe], "evaluate": EvaluateConfig}
for _name, _schema in _SCHEMAS.items():
    register_section(_name, _schema)
#: The top-level sections of the prepare and class-incremental stages (other tracks register their own).
SECTIONS = ("seeds", *_SCHEMAS)
