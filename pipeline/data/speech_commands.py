"""The test clips of a Google Speech Commands folder (the real set, or the synthetic one in its layout).

Layout (Warden 2018, "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition")::

    root/<word>/<speakerId>_nohash_<n>.wav     16 kHz mono, 1 s (some real clips are shorter)
    root/testing_list.txt                      the test clips, "<word>/<file>.wav", one a line
    root/validation_list.txt                   (not read: only the test clips are used)

:func:`read_speech_commands` keeps the clips of ``testing_list.txt`` whose word is among ``words``
(every listed clip when ``words`` is None) and checks every kept file's header before any feature is
computed, so a wrong folder fails in a second, with one line naming the file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import soundfile as sf

from pipeline.errors import DataError, one_line

LISTING = "testing_list.txt"
_NAME = re.compile(r"(?P<speaker>.+)_nohash_(?P<n>\d+)\.wav")


@dataclass(frozen=True)
class Clip:
    """One keyword clip: its word, its path relative to the folder's root, its speaker."""

    word: str
    path: str
    speaker: str

    def row(self) -> dict:
        return asdict(self)


def _order(words: Sequence[str]):
    index = {w: i for i, w in enumerate(words)}

    def key(clip: Clip) -> tuple:
        m = _NAME.fullmatch(Path(clip.path).name)
        return index[clip.word], clip.speaker, int(m["n"]) if m else -1, clip.path

    return key


def read_speech_commands(root: Path, words: Optional[Sequence[str]], sample_rate: int) -> tuple[list[str], list[Clip]]:
    """(the words, index = label; the clips) of ``root``'s ``testing_list.txt``, sorted by word (in ``words``'
    order, else alphabetically), speaker and repetition. DataError, naming the folder or file, when the folder
    or its listing is missing, a line is not ``<word>/<file>.wav``, a listed file is missing or not a mono WAV
    at ``sample_rate`` Hz, or a word of ``words`` has no clip."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Speech Commands folder not found (data.keywords.root)")
    listing = root / LISTING
    if not listing.is_file():
        raise DataError(f"{listing}: missing (a Speech Commands folder lists its test clips there)")
    wanted = None if words is None else set(words)
    clips, listed = [], set()
    for lineno, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        rel = line.strip()
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1].endswith(".wav"):
            raise DataError(f"{listing}:{lineno}: expected <word>/<file>.wav, got {rel!r}")
        word, name = parts
        listed.add(word)
        if wanted is None or word in wanted:
            m = _NAME.fullmatch(name)
            clips.append(Clip(word, rel, m["speaker"] if m else name[: -len(".wav")]))
    if words is None:
        words = sorted(listed)
        if not words:
            raise DataError(f"{listing}: lists no clip")
    for word in words:
        if word not in listed:
            known = sorted(listed)
            raise DataError(f"{listing}: no clip of the word {word!r} (data.keywords.words); it lists {len(known)} "
                            f"words: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}")
    for clip in clips:
        _check_header(root / clip.path, sample_rate)
    return list(words), sorted(clips, key=_order(words))


def _check_header(path: Path, sample_rate: int) -> None:
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in {LISTING})")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable or corrupt audio file ({one_line(err)})") from None
    if info.samplerate != sample_rate:
        raise DataError(f"{path}: sample rate is {info.samplerate} Hz, expected {sample_rate} Hz (features.sample_rate)")
    if info.channels != 1:
        raise DataError(f"{path}: has {info.channels} channels, expected mono")
