"""The one record every corpus reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    """One recording of a spoken command.

    uid: unique within the corpus (FSC: the wav path without extension; SLURP: the recording file stem).
    split: one of SPLITS ("valid" is SLURP's "devel").
    label: the class for class-incremental learning (FSC: the intent name; SLURP: the scenario).
    """

    uid: str
    split: str
    speaker: str
    audio_path: Path
    transcript: str
    label: str
