"""espeak-ng through ctypes: where the library and its data are, which voice variants exist, one engine.

The library and its data folder come from the ``espeakng-loader`` wheel (:func:`espeak_paths`);
:func:`list_variants` lists the voice variants that really exist (the files of the data's
``voices/!v`` folder: espeak silently ignores an unknown variant name, so only names found there
are used); :func:`check_engine` fails early, with one line, if espeak cannot be loaded or lacks
one of the :data:`BASE_VOICES`.

Why a pristine engine per speaker: espeak-ng keeps hidden state between utterances that no API
call resets (a pitch-flutter phase, an automatic gain, an echo buffer, function-local statics), so
its output depends on what it said before. :class:`Espeak` therefore loads a private copy of the
shared library (a new copy has fresh static data even if the process already loaded espeak); the
corpus writer uses one such engine per speaker, for that speaker's utterances in order, then
terminates and unloads it. libc ``rand()`` (espeak's breath noise) and espeak's own generator are
seeded before every utterance (:meth:`Espeak.synth`).

espeak-ng is not thread safe: use one engine per process at a time.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.errors import DataError

#: espeak-ng 1.52 names of the 8 English base voices ("en" is British English: "en-gb" is not a
#: name SetVoiceByName accepts in 1.52).
BASE_VOICES: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
#: variant files not used: "fast" says in its own file that it is unstable.
EXCLUDED_VARIANTS = frozenset({"fast"})

# espeak-ng C API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakRATE, _espeakPITCH, _espeakRANGE = 1, 3, 4
_espeakCHARS_UTF8 = 1
# called with (int16 samples, their count, events): the samples are mono at Espeak.sample_rate (22050 Hz)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def espeak_paths() -> tuple[Path, Path]:
    """(shared library, data folder) of the ``espeakng-loader`` wheel; DataError if unavailable."""
    try:
        import espeakng_loader
    except ImportError:
        raise DataError(
            "synthetic corpus: the espeak-ng speech synthesiser is missing (pip package espeakng-loader)"
        ) from None
    lib, data = Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())
    if not lib.is_file():
        raise DataError(f"synthetic corpus: espeak-ng library not found at {lib} (reinstall espeakng-loader)")
    if not (data / "phontab").is_file():
        raise DataError(f"synthetic corpus: espeak-ng data folder {data} is incomplete (reinstall espeakng-loader)")
    return lib, data


def list_variants(data_path: Path) -> list[str]:
    """Voice variants that really exist in the espeak data (``voices/!v``), sorted; DataError if none."""
    folder = Path(data_path) / "voices" / "!v"
    names = sorted(
        p.name for p in folder.glob("*") if p.is_file() and re.fullmatch(r"[A-Za-z0-9_-]+", p.name)
    ) if folder.is_dir() else []
    names = [n for n in names if n not in EXCLUDED_VARIANTS]
    if not names:
        raise DataError(f"synthetic corpus: no voice variants in {folder} (reinstall espeakng-loader)")
    return names


class Espeak:
    """One pristine espeak-ng instance (a private copy of the library), synchronous, in-process.

    The library is copied to a temporary file and loaded from there: the dynamic loader treats
    the copy as a new library, so its static data (espeak's hidden synthesis state) starts fresh
    even if this process has used espeak before. Use as a context manager; :meth:`close`
    terminates and unloads it. Not thread safe.
    """

    def __init__(self) -> None:
        lib_path, data_path = espeak_paths()
        fd, copy = tempfile.mkstemp(prefix="espeak-ng-", suffix=".so")
        os.close(fd)
        try:
            shutil.copyfile(lib_path, copy)
            try:
                self._lib = ctypes.CDLL(copy)
            except OSError as exc:
                raise DataError(f"synthetic corpus: cannot load the espeak-ng library {lib_path}: {exc}") from None
        finally:
            os.unlink(copy)  # the mapping stays valid; nothing is left on disk
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        # 1000 ms callback buffers: a few callbacks per utterance instead of dozens
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 1000, str(data_path).encode(), 0)
        if self.sample_rate <= 0:
            self._unload()
            raise DataError(f"synthetic corpus: espeak-ng failed to initialise with data {data_path}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)
        self._voice: Optional[str] = None

    def _collect(self, wav, n, _events) -> int:
        if n > 0 and wav:
            # (n,) int16 view of espeak's buffer, copied: espeak reuses the buffer after we return
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # continue synthesis

    def set_voice(self, name: str) -> None:
        """Select a voice ("en-us+f3"); DataError if espeak does not know the base voice."""
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise DataError(f"synthetic corpus: espeak-ng has no voice {name!r}")
        self._voice = name

    def synth(self, text: str, pitch: int, rate: int, intonation: int, seed: int) -> np.ndarray:
        """int16 samples at :attr:`sample_rate` of ``text`` said by the current voice."""
        if self._voice is None:
            raise RuntimeError("set_voice first")
        lib = self._lib
        lib.espeak_SetParameter(_espeakRATE, int(rate), 0)
        lib.espeak_SetParameter(_espeakPITCH, int(pitch), 0)
        lib.espeak_SetParameter(_espeakRANGE, int(intonation), 0)
        lib.espeak_ng_SetRandSeed(int(seed))
        self._libc.srand(ctypes.c_uint(int(seed)))
        self._chunks = []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        status = lib.espeak_Synth(buf, len(buf), 0, 0, 0, _espeakCHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise DataError(f"synthetic corpus: espeak-ng produced no audio for {text!r} (status {status})")
        return np.concatenate(self._chunks)

    def _unload(self) -> None:
        import _ctypes

        dlclose = getattr(_ctypes, "dlclose", None)
        if dlclose is not None:
            dlclose(self._lib._handle)

    def close(self) -> None:
        if getattr(self, "_lib", None) is not None:
            self._lib.espeak_Terminate()
            self._unload()
            self._lib = None

    def __enter__(self) -> "Espeak":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_engine() -> None:
    """Fail early, with one line, if espeak cannot be loaded or lacks a base voice."""
    with Espeak() as engine:
        for voice in BASE_VOICES:
            engine.set_voice(voice)
