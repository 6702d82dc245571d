"""Reader of Fluent Speech Commands (FSC) as released.

Layout of the release (Lugosch et al., "Speech Model Pre-training for End-to-End Spoken Language
Understanding", Interspeech 2019, arXiv:1904.03670)::

    root/data/{train,valid,test}_data.csv    header ",path,speakerId,transcription,action,object,location"
    root/wavs/speakers/<speakerId>/<uuid>.wav (16 kHz mono)

The first CSV column is an unnamed pandas index and is ignored, as are any other files the release
ships (``data/speaker_demographics.csv``, ...). ``path`` is relative to ``root``.

This module only reads the metadata and checks that every referenced WAV exists; the audio itself is
read later (by prepare) with :func:`pipeline.data.audio.read_wav`.

Transcripts: FSC transcriptions are sentence-cased with some punctuation ("Turn on the lights.",
"OK now switch the main language to Chinese"). They are normalised by :func:`normalize_transcript`
(lower-case, punctuation other than in-word apostrophes replaced by a space, whitespace collapsed) so
that FSC and SLURP text share one convention ("it's too loud" keeps its apostrophe).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from pipeline.data.corpus import SPLITS, Utterance
from pipeline.data.schema import FSC_INTENTS, fsc_intent
from pipeline.errors import DataError

REQUIRED_COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")

# Typographic apostrophes and the backtick count as an apostrophe.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
# Anything that is neither a word character, whitespace nor an apostrophe; "_" is a \w but punctuation here.
_PUNCT = re.compile(r"[^\w\s']|_")
# An apostrophe not between two word characters (a quote mark, not a contraction).
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_transcript(text: str) -> str:
    """Lower-case ``text``, replace punctuation by spaces (keeping in-word apostrophes), collapse spaces.

    ``"Turn on the lights, please."`` -> ``"turn on the lights please"``; ``"It's"`` -> ``"it's"``;
    ``"'quoted'"`` -> ``"quoted"``. Used by the FSC and SLURP readers alike.
    """
    text = text.translate(_APOSTROPHES).lower()
    text = _PUNCT.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def read_fsc(root: Path) -> list[Utterance]:
    """Read the train / valid / test lists of an FSC copy at ``root`` (utterances in CSV order, train first).

    Each row gives ``Utterance(uid=path without ".wav", split, speaker=speakerId,
    audio_path=root/path (absolute), transcript=normalize_transcript(transcription),
    label=f"{action}_{object}_{location}")``.

    Raises :class:`DataError` (one line naming the file) when ``root`` or a CSV is missing, a CSV lacks
    columns, a row is incomplete or holds an intent outside the 31-intent schema, a split is empty, a
    path appears twice, or referenced WAV files are missing (the first one and the count are named).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: FSC root folder not found (data.root must be the folder holding data/ and wavs/)")
    base = root.resolve()
    intents = frozenset(FSC_INTENTS)
    utterances: list[Utterance] = []
    seen: dict[str, str] = {}  # uid -> "csv:line" where it first appeared
    for split in SPLITS:
        csv_path = root / "data" / f"{split}_data.csv"
        utterances.extend(_read_csv(csv_path, split, base, intents, seen))

    missing = [u for u in utterances if not u.audio_path.is_file()]
    if missing:
        first = missing[0]
        raise DataError(
            f"{first.audio_path}: WAV file listed in {root / 'data' / f'{first.split}_data.csv'} is missing "
            f"({len(missing)} of {len(utterances)} listed WAV files are missing)"
        )
    return utterances


def _read_csv(csv_path: Path, split: str, base: Path, intents: frozenset[str], seen: dict[str, str]) -> list[Utterance]:
    """Parse one FSC split CSV (see :func:`read_fsc`); ``seen`` collects uids across splits."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: FSC {split} list not found (expected data/{split}_data.csv under the FSC root)")
    out: list[Utterance] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            absent = [c for c in REQUIRED_COLUMNS if c not in header]
            if absent:
                raise DataError(
                    f"{csv_path}: missing column(s) {', '.join(absent)} "
                    f"(expected header ,{','.join(REQUIRED_COLUMNS)})"
                )
            for row in reader:
                where = f"{csv_path}:{reader.line_num}"
                values = {c: (row.get(c) or "").strip() for c in REQUIRED_COLUMNS}
                empty = [c for c in REQUIRED_COLUMNS if not values[c]]
                if empty:
                    raise DataError(f"{where}: empty or missing value(s) for {', '.join(empty)}")
                label = fsc_intent(values["action"], values["object"], values["location"])
                if label not in intents:
                    raise DataError(f"{where}: intent {label!r} is not one of the 31 FSC intents")
                rel = values["path"]
                uid = os.path.splitext(rel)[0]
                if uid in seen:
                    raise DataError(f"{where}: path {rel!r} already listed at {seen[uid]}")
                seen[uid] = where
                transcript = normalize_transcript(values["transcription"])
                if not transcript:
                    raise DataError(f"{where}: transcription {values['transcription']!r} has no words")
                out.append(
                    Utterance(
                        uid=uid,
                        split=split,
                        speaker=values["speakerId"],
                        audio_path=base / rel,
                        transcript=transcript,
                        label=label,
                    )
                )
    except UnicodeDecodeError as err:
        raise DataError(f"{csv_path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise DataError(f"{csv_path}: malformed CSV ({err})") from err
    if not out:
        raise DataError(f"{csv_path}: FSC {split} list has no rows")
    return out
