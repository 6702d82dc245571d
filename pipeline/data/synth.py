"""The embedded corpus: synthetic spoken commands in the exact Fluent Speech Commands layout.

:func:`synthesize_corpus` writes, fully offline and deterministically::

    root/wavs/speakers/<speakerId>/<uttId>.wav      16 kHz mono PCM_16
    root/data/{train,valid,test}_data.csv           ",path,speakerId,transcription,action,object,location"

so that the FSC reader reads it like the real corpus.

Speakers
    A speaker is a fixed combination of an espeak-ng base voice (the 8 English ones in
    :data:`BASE_VOICES`), a voice variant (a file of the ``voices/!v`` folder of the espeak data:
    espeak silently ignores an unknown variant, so only names found there are used), a base pitch,
    a speaking rate and an intonation range. ``n_variants`` variants (timbres) are shared by the
    speakers, each with several base voices, so (voice, variant) pairs are distinct and voices
    balanced. A seeded shuffle of the speakers puts the first ``valid_speakers`` in valid, the last
    ``test_speakers`` in test and the rest in train (speaker-disjoint splits), skipping a speaker
    whose variant would otherwise have no training speaker (see :func:`plan_speakers`).

Utterances
    Every speaker says every intent equally often (+-1), in a seeded random order: ``U // 31`` rounds
    of all intents plus ``U % 31`` distinct leftover intents, taken as consecutive windows of one
    seeded cyclic order of the intents per split (speaker j of the split continues where speaker
    j-1 stopped), so a split holds every intent as soon as it has >= 31 utterances. The phrasing is drawn uniformly from
    :data:`pipeline.data.phrasings.PHRASINGS`.

Acoustics (all drawn per utterance, see :func:`draw_acoustics`)
    pitch jitter (+-:data:`PITCH_JITTER` on espeak's 0..100 scale) and rate jitter
    (x U[1-:data:`RATE_JITTER`, 1+:data:`RATE_JITTER`]) around the speaker's values; espeak's own
    random generators seeded; band-limited resampling 22050 -> 16000 Hz by the DFT
    (:func:`resample`); leading and trailing silence; with probability :data:`LOWPASS_PROB` a
    zero-phase 4th-order Butterworth-magnitude low-pass (a cheap microphone) and with probability
    :data:`REVERB_PROB` a synthetic room (exponentially decaying Gaussian impulse response, -60 dB
    at RT60), see :func:`room_impulse_response` and :func:`channel_transfer`; the speech is
    scaled to a random peak level; then
    additive *coloured* noise with power spectral density ``S(f) ~ f^-alpha`` (alpha ~ U[0, 2]:
    white at 0, pink at 1, brown at 2; frequencies below 20 Hz flattened) at an SNR drawn uniformly
    from [snr_db_min, snr_db_max], where

        SNR = 10 log10( mean(s[t]^2 over the speech span) / mean(n[t]^2 over the whole clip) )

    (the speech span is where the synthesised speech sits, without the added silences). If the mix
    would clip, speech and noise are scaled down together (the SNR is unchanged).

Determinism
    Every random draw comes from ``SeedSequence(seed, spawn_key=(stream, speaker, utterance))``,
    never from worker order. espeak-ng keeps hidden state between utterances that no API call
    resets (a pitch-flutter phase, an automatic gain, an echo buffer, function-local statics), so
    its output depends on what it said before. Each speaker is therefore synthesised by a pristine
    engine: a private copy of the shared library is loaded (a new copy has fresh static data even
    if the process already loaded espeak), initialised, used for that speaker's utterances in
    order, then terminated and unloaded. libc ``rand()`` (espeak's breath noise) and espeak's own
    generator are seeded before every utterance. The files are bit-identical for the same config
    in the same environment (espeak-ng data, numpy/scipy FFT), whatever ``workers`` is.

Parallelism
    espeak-ng is not thread safe, so speakers are synthesised in worker processes (one task per
    speaker; workers write their WAV files directly). The pool uses the ``spawn`` start method on
    purpose: the caller (the prepare stage, a test session) may already hold threads (torch
    thread pools, tqdm's monitor) and espeak state, and forking a multi-threaded process can
    deadlock; spawned workers start clean for the price of one interpreter start per worker
    (about a second), and nothing is inherited that could affect the audio. As with any spawned
    pool, a *script* that calls :func:`synthesize_corpus` with ``workers != 1`` needs the usual
    ``if __name__ == "__main__":`` guard (``python -m pipeline`` and ``python -c`` are fine).

Atomicity
    Everything is built in ``<root>.tmp`` and renamed to ``root`` at the end; a failed run removes
    the temporary folder, so nothing incomplete ever sits at ``root``.
"""

from __future__ import annotations

from collections import Counter

import csv
import ctypes
import math
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

try:  # scipy's pocketfft is ~3x faster than numpy's on non-power-of-two sizes and light to import
    import scipy.fft as _fft
except ImportError:  # pragma: no cover - scipy comes with speechbrain / scikit-learn
    import numpy.fft as _fft

from pipeline.config import SynthConfig
from pipeline.data.corpus import SPLITS
from pipeline.data.phrasings import PHRASINGS
from pipeline.data.schema import FSC_INTENTS, split_intent
from pipeline.errors import DataError, ParamsError

# ----------------------------------------------------------------------------- constants

#: espeak-ng 1.52 names of the 8 English base voices ("en" is British English: "en-gb" is not a
#: name SetVoiceByName accepts in 1.52).
BASE_VOICES: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
#: variant files not used: "fast" says in its own file that it is unstable.
EXCLUDED_VARIANTS = frozenset({"fast"})

SAMPLE_RATE = 16000
FSC_HEADER = ("", "path", "speakerId", "transcription", "action", "object", "location")

# speaker ranges (espeak parameters: pitch and range 0..100, rate in words per minute)
SPEAKER_PITCH = (20, 80)
SPEAKER_RATE = (140, 210)
SPEAKER_INTONATION = (25, 85)
# per-utterance draws
PITCH_JITTER = 4
RATE_JITTER = 0.06
LEAD_SILENCE_S = (0.05, 0.35)
TRAIL_SILENCE_S = (0.05, 0.40)
PEAK_DBFS = (-18.0, -2.0)  # peak level of the speech before the noise is added
NOISE_ALPHA = (0.0, 2.0)  # noise PSD ~ f^-alpha
LOWPASS_PROB, LOWPASS_HZ = 0.4, (3000.0, 7000.0)
REVERB_PROB, REVERB_RT60_S, REVERB_WET = 0.3, (0.15, 0.6), (0.1, 0.5)
MAX_PEAK = 0.99

# independent random streams (first element of the SeedSequence spawn key)
_STREAM_SPEAKERS, _STREAM_SPLITS, _STREAM_INTENTS, _STREAM_TEXT, _STREAM_ACOUSTICS = range(5)

# espeak-ng C API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakRATE, _espeakPITCH, _espeakRANGE = 1, 3, 4
_espeakCHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """The random generator of one stream/speaker/utterance: independent of any other draw."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(int(k) for k in key)))


# ----------------------------------------------------------------------------- espeak-ng engine


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


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: fixed voice, variant, pitch, rate and intonation range."""

    index: int
    speaker_id: str
    voice: str
    variant: str
    pitch: int
    rate: int
    intonation: int
    split: str

    @property
    def espeak_voice(self) -> str:
        return f"{self.voice}+{self.variant}"


@dataclass(frozen=True)
class UtterancePlan:
    """What one utterance says and where it goes (``relpath`` relative to the corpus root)."""

    speaker_index: int
    index: int
    uid: str
    relpath: str
    intent: str
    text: str


def plan_speakers(cfg: SynthConfig, variants: Sequence[str]) -> list[Speaker]:
    """The speakers of ``cfg`` (seeded): shared variants, distinct (voice, variant) pairs, splits.

    A pool of ``P = min(n_variants, training speakers)`` variants is drawn; speaker ``k`` gets variant
    ``pool[k % P]`` and, among the speakers of one variant, base voices in turn (so the pairs are
    distinct and the voices balanced). Valid and test speakers are then taken from a seeded order,
    skipping any whose variant would be left without a training speaker: the test speakers are new
    people from the training population, not voices unlike anything heard in training (with a
    distinct variant per speaker, a test speaker whose variant scales every formant by 1.45 was
    recognised 14 % of the time while the others were at 75-97 %).
    """
    n = cfg.n_speakers
    pool_size = cfg.variant_pool
    if pool_size > len(variants):
        raise ParamsError(f"params: data.synthetic.n_variants: only {len(variants)} espeak voice variants exist, "
                          f"got {pool_size}")
    rng = _rng(cfg.seed, _STREAM_SPEAKERS)
    voice_order = rng.permutation(len(BASE_VOICES))
    pool = [variants[i] for i in rng.permutation(len(variants))[:pool_size]]
    width = max(2, len(str(n - 1)))
    drafts = []
    for k in range(n):
        v, j = k % pool_size, k // pool_size  # j-th speaker of variant v
        voice = BASE_VOICES[voice_order[(v + j) % len(BASE_VOICES)]]
        pitch = int(rng.integers(SPEAKER_PITCH[0], SPEAKER_PITCH[1] + 1))
        rate = int(rng.integers(SPEAKER_RATE[0], SPEAKER_RATE[1] + 1))
        intonation = int(rng.integers(SPEAKER_INTONATION[0], SPEAKER_INTONATION[1] + 1))
        drafts.append((k, f"spk{k:0{width}d}", voice, pool[v], pitch, rate, intonation))
    order = [int(k) for k in _rng(cfg.seed, _STREAM_SPLITS).permutation(n)]
    in_train = Counter(d[3] for d in drafts)  # speakers per variant still in train
    split_of: dict[int, str] = {}

    def take(candidates, split: str, count: int) -> None:
        for k in candidates:
            if count == 0:
                return
            if k not in split_of and in_train[drafts[k][3]] > 1:
                split_of[k] = split
                in_train[drafts[k][3]] -= 1
                count -= 1

    take(order, "valid", cfg.valid_speakers)
    take(reversed(order), "test", cfg.test_speakers)  # always enough: training speakers >= pool_size
    return [Speaker(*d, split=split_of.get(d[0], "train")) for d in drafts]


def plan_utterances(cfg: SynthConfig, speakers: Sequence[Speaker]) -> list[UtterancePlan]:
    """Every utterance of the corpus, grouped by split, then speaker, then index."""
    plans: list[UtterancePlan] = []
    n_intents = len(FSC_INTENTS)
    full, rest = divmod(cfg.utterances_per_speaker, n_intents)
    for s_ix, split in enumerate(SPLITS):
        members = [s for s in speakers if s.split == split]
        cyclic = _rng(cfg.seed, _STREAM_INTENTS, s_ix).permutation(n_intents)
        for j, spk in enumerate(members):
            # `full` rounds of all intents + `rest` consecutive intents of the split's cyclic
            # order (distinct, and consecutive speakers continue where the previous one stopped)
            leftover = cyclic[(j * rest + np.arange(rest)) % n_intents]
            ids = np.concatenate([np.tile(np.arange(n_intents), full), leftover])
            ids = _rng(cfg.seed, _STREAM_INTENTS, s_ix, spk.index).permutation(ids)
            for u, intent_ix in enumerate(ids):
                intent = FSC_INTENTS[int(intent_ix)]
                choices = PHRASINGS[intent]
                text = choices[int(_rng(cfg.seed, _STREAM_TEXT, spk.index, u).integers(len(choices)))]
                uid = f"{spk.speaker_id}_{u:04d}"
                plans.append(
                    UtterancePlan(spk.index, u, uid, f"wavs/speakers/{spk.speaker_id}/{uid}.wav", intent, text)
                )
    return plans


# ----------------------------------------------------------------------------- acoustics


@dataclass(frozen=True)
class Acoustics:
    """The random acoustic settings of one utterance (see the module docstring)."""

    pitch: int
    rate: int
    espeak_seed: int
    lead_s: float
    trail_s: float
    peak_dbfs: float
    snr_db: float
    noise_alpha: float
    lowpass_hz: Optional[float]
    reverb_rt60_s: Optional[float]
    reverb_wet: Optional[float]


def draw_acoustics(rng: np.random.Generator, speaker: Speaker, snr_db: tuple[float, float]) -> Acoustics:
    """Draw one utterance's settings; always the same number of draws, in the same order."""
    u = rng.uniform(size=11)
    pitch = int(np.clip(speaker.pitch + round((2 * u[0] - 1) * PITCH_JITTER), 0, 100))
    rate = int(round(speaker.rate * (1 + (2 * u[1] - 1) * RATE_JITTER)))
    lowpass = LOWPASS_HZ[0] + u[8] * (LOWPASS_HZ[1] - LOWPASS_HZ[0]) if u[7] < LOWPASS_PROB else None
    reverb = u[9] < REVERB_PROB
    rt60 = REVERB_RT60_S[0] + u[10] * (REVERB_RT60_S[1] - REVERB_RT60_S[0])
    wet = REVERB_WET[0] + u[2] * (REVERB_WET[1] - REVERB_WET[0])
    return Acoustics(
        pitch=pitch,
        rate=rate,
        espeak_seed=1 + int(u[3] * (2**31 - 2)),
        lead_s=LEAD_SILENCE_S[0] + u[4] * (LEAD_SILENCE_S[1] - LEAD_SILENCE_S[0]),
        trail_s=TRAIL_SILENCE_S[0] + u[5] * (TRAIL_SILENCE_S[1] - TRAIL_SILENCE_S[0]),
        peak_dbfs=PEAK_DBFS[0] + u[6] * (PEAK_DBFS[1] - PEAK_DBFS[0]),
        snr_db=float(rng.uniform(snr_db[0], snr_db[1])),
        noise_alpha=float(rng.uniform(*NOISE_ALPHA)),
        lowpass_hz=lowpass,
        reverb_rt60_s=rt60 if reverb else None,
        reverb_wet=wet if reverb else None,
    )


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (a transform size numpy's FFT handles fast)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


_LOG_FREQS: dict[tuple[int, int], np.ndarray] = {}


def _log_freqs(n_fft: int, rate: int) -> np.ndarray:
    """log of the rfft bin frequencies of an n_fft-point transform, floored at 20 Hz (cached)."""
    out = _LOG_FREQS.get((n_fft, rate))
    if out is None:
        out = np.log(np.maximum(np.fft.rfftfreq(n_fft, 1.0 / rate), 20.0))
        if len(_LOG_FREQS) > 256:
            _LOG_FREQS.clear()
        _LOG_FREQS[(n_fft, rate)] = out
    return out


def resample(
    x: np.ndarray,
    rate_in: int,
    rate_out: int = SAMPLE_RATE,
    n_keep: Optional[int] = None,
    min_len: int = 0,
    transfer: Optional[Callable[[int], np.ndarray]] = None,
) -> np.ndarray:
    """Band-limited resampling by the DFT (numpy only), optionally through a linear filter.

    ``x`` is zero-padded to ``L_in = down * k`` samples (``up/down = rate_out/rate_in`` in lowest
    terms, ``k`` 5-smooth so both transform sizes are fast), its spectrum is cut (or zero-extended)
    to the ``L_out = up * k`` point output grid, the top 5 % of the common band is rolled off with
    a raised cosine (no ringing at the new Nyquist frequency), optionally multiplied by
    ``transfer(L_out)`` (a filter's rfft on the output grid), and transformed back:

        y = irfft( taper * X[:L_out/2+1] * H ) * L_out / L_in

    ``k`` is chosen so that ``L_out >= max(ceil(len(x) up/down) + 256, min_len)``: with
    ``min_len >= len(y) + len(h)`` a filter acts as a linear (not circular) convolution on the
    kept samples. Returns the first ``n_keep`` samples (default ``ceil(len(x) up/down)``).
    """
    x = np.asarray(x, dtype=np.float64)
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    n_res = math.ceil(len(x) * up / down)
    k = _fast_len(math.ceil(max(n_res + 256, min_len) / up))
    l_in, l_out = down * k, up * k
    spec = _fft.rfft(x, l_in)
    n_out = l_out // 2 + 1
    if n_out <= len(spec):
        spec = spec[:n_out]  # a view of our own array: safe to scale in place
    else:
        spec = np.concatenate([spec, np.zeros(n_out - len(spec), dtype=spec.dtype)])
    if up != down:
        band = min(n_out, l_in // 2 + 1)  # bins that carry signal on both grids
        roll = max(1, band // 20)
        spec[band - roll : band] *= 0.5 * (1 + np.cos(np.pi * (np.arange(roll) + 1) / roll))
        spec[band:] = 0.0
    if transfer is not None:
        spec *= transfer(l_out)
    y = _fft.irfft(spec, l_out) * (l_out / l_in)
    return y[: n_res if n_keep is None else n_keep]


def coloured_noise(rng: np.random.Generator, n: int, alpha: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of unit-power Gaussian noise with PSD ~ f^-alpha (f floored at 20 Hz, no DC).

    Drawn directly in the frequency domain (i.i.d. complex Gaussian bins, the spectrum of white
    Gaussian noise) of a fast transform length >= n, shaped by f^(-alpha/2), one inverse FFT, cut
    to n samples and normalised to mean power 1.
    """
    n_fft = _fast_len(n)
    n_bins = n_fft // 2 + 1
    spec = rng.standard_normal(2 * n_bins).view(np.complex128)  # (n_bins,) complex
    spec *= np.exp((-alpha / 2) * _log_freqs(n_fft, rate))
    spec[0] = 0.0
    noise = _fft.irfft(spec, n_fft)[:n]
    return noise / max(math.sqrt(float(np.mean(noise**2))), 1e-12)


def room_impulse_response(rng: np.random.Generator, ac: Acoustics, rate: int = SAMPLE_RATE) -> Optional[np.ndarray]:
    """The synthetic room of one utterance, or None: ``h[0] = 1`` (direct path) plus a tail
    ``e[t] 10^(-3 t / RT60)`` (``e`` Gaussian: -60 dB at RT60) scaled to energy ``wet^2``."""
    if ac.reverb_rt60_s is None:
        return None
    n_rir = max(2, int(ac.reverb_rt60_s * rate))
    t = np.arange(n_rir) / rate
    rir = rng.standard_normal(n_rir) * 10.0 ** (-3.0 * t / ac.reverb_rt60_s)
    rir[0] = 0.0
    rir *= ac.reverb_wet / math.sqrt(float(np.sum(rir**2)))
    rir[0] = 1.0
    return rir


def channel_transfer(
    rir: Optional[np.ndarray], lowpass_hz: Optional[float], rate: int = SAMPLE_RATE
) -> Optional[Callable[[int], np.ndarray]]:
    """``n_fft -> H`` on the rfft grid: the room (rfft of ``rir``) times the microphone, a zero-phase
    Butterworth magnitude of order 4, ``|H(f)| = (1 + (f/fc)^8)^-1/2``; None if neither applies."""
    if rir is None and lowpass_hz is None:
        return None

    def transfer(n_fft: int) -> np.ndarray:
        h = np.ones(n_fft // 2 + 1, dtype=np.complex128) if rir is None else _fft.rfft(rir, n_fft)
        if lowpass_hz is not None:
            r = np.fft.rfftfreq(n_fft, 1.0 / rate) / lowpass_hz
            r *= r
            r *= r  # (f/fc)^4
            h /= np.sqrt(1.0 + r * r)
        return h

    return transfer


@dataclass
class Rendered:
    """One rendered utterance: int16 samples at 16 kHz, where the speech sits, its settings."""

    samples: np.ndarray
    speech_span: tuple[int, int]
    acoustics: Acoustics


def render_utterance(
    engine: Espeak,
    speaker: Speaker,
    text: str,
    rng: np.random.Generator,
    snr_db: tuple[float, float],
    add_noise: bool = True,
) -> Rendered:
    """Synthesise ``text`` with ``speaker``'s voice (already set on ``engine``) and apply the acoustics.

    Order: espeak (22050 Hz) -> resampling to 16 kHz through the room and microphone (one DFT
    pass, :func:`resample`) -> leading/trailing silence -> peak level -> coloured noise at the
    drawn SNR -> joint anti-clipping scale -> int16. With ``add_noise=False`` the result is
    exactly the same utterance without its noise term (the noise is still drawn and used for the
    anti-clipping scale), so ``noisy - clean`` is the noise, up to int16 rounding.
    """
    ac = draw_acoustics(rng, speaker, snr_db)
    raw = engine.synth(text, ac.pitch, ac.rate, speaker.intonation, ac.espeak_seed)
    rir = room_impulse_response(rng, ac)
    lead, trail = int(round(ac.lead_s * SAMPLE_RATE)), int(round(ac.trail_s * SAMPLE_RATE))
    n_speech = math.ceil(len(raw) * SAMPLE_RATE / engine.sample_rate)
    body = resample(  # the speech and its reverberant tail, up to the end of the clip
        raw.astype(np.float64) / 32768.0,
        engine.sample_rate,
        SAMPLE_RATE,
        n_keep=n_speech + trail,
        min_len=n_speech + trail + (0 if rir is None else len(rir)) + 256,
        transfer=channel_transfer(rir, ac.lowpass_hz),
    )
    x = np.concatenate([np.zeros(lead), body])
    span = (lead, lead + n_speech)
    peak = float(np.max(np.abs(x)))
    if peak <= 0:
        raise DataError(f"synthetic corpus: espeak-ng produced silence for {text!r} ({speaker.espeak_voice})")
    x *= 10.0 ** (ac.peak_dbfs / 20.0) / peak
    p_speech = float(np.mean(x[span[0] : span[1]] ** 2))
    noise = coloured_noise(rng, len(x), ac.noise_alpha)
    noise *= math.sqrt(p_speech / 10.0 ** (ac.snr_db / 10.0))
    mix_peak = float(np.max(np.abs(x + noise)))
    scale = MAX_PEAK / mix_peak if mix_peak > MAX_PEAK else 1.0
    out = (x + noise) * scale if add_noise else x * scale
    samples = np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)
    return Rendered(samples=samples, speech_span=span, acoustics=ac)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit mono PCM WAV (stdlib writer: a fixed 44-byte header, byte-identical across runs)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


# ----------------------------------------------------------------------------- corpus


def _synthesize_speaker(task: tuple) -> list[tuple[str, int]]:
    """Worker: one speaker's utterances, in index order, by one pristine engine. Returns (uid, samples)."""
    speaker, plans, out_root, seed, snr_db = task
    out_root = Path(out_root)
    done = []
    with Espeak() as engine:
        engine.set_voice(speaker.espeak_voice)
        for plan in plans:
            rendered = render_utterance(
                engine, speaker, plan.text, _rng(seed, _STREAM_ACOUSTICS, speaker.index, plan.index), snr_db
            )
            write_wav(out_root / plan.relpath, rendered.samples)
            done.append((plan.uid, len(rendered.samples)))
    return done


def _check_engine() -> None:
    """Fail early, with one line, if espeak cannot be loaded or lacks a base voice."""
    with Espeak() as engine:
        for voice in BASE_VOICES:
            engine.set_voice(voice)


def _n_workers(requested: int) -> int:
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def synthesize_corpus(root: Path, cfg: SynthConfig, progress: bool = True) -> dict:
    """Synthesise the corpus of ``cfg`` into ``root`` (FSC layout, replaced atomically) and return stats.

    Stats: ``utterances`` and ``speakers`` per split, ``distinct_phrasings`` used, ``hours`` of
    audio, ``seconds`` taken, ``utterances_per_s``, ``workers``.
    Raises DataError if espeak-ng cannot be used, ParamsError for an impossible config.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    cfg.validate("data.synthetic")
    if cfg.seed < 0:
        raise ParamsError(f"params: data.synthetic.seed: must be >= 0, got {cfg.seed}")
    _, data_path = espeak_paths()
    _check_engine()
    speakers = plan_speakers(cfg, list_variants(data_path))
    plans = plan_utterances(cfg, speakers)
    by_speaker: dict[int, list[UtterancePlan]] = {}
    for p in plans:
        by_speaker.setdefault(p.speaker_index, []).append(p)

    root = Path(root)
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    snr = (cfg.snr_db_min, cfg.snr_db_max)
    tasks = [(s, by_speaker.get(s.index, []), str(tmp), cfg.seed, snr) for s in speakers]
    workers = min(_n_workers(cfg.workers), len(tasks))
    lengths: dict[str, int] = {}
    try:
        (tmp / "data").mkdir(parents=True)
        for s in speakers:
            (tmp / "wavs" / "speakers" / s.speaker_id).mkdir(parents=True)
        with tqdm(total=len(plans), desc="synthesising", unit="utt", disable=not progress) as bar:
            if workers <= 1:
                results = map(_synthesize_speaker, tasks)
                for done in results:
                    lengths.update(done)
                    bar.update(len(done))
            else:
                with mp.get_context("spawn").Pool(workers) as pool:
                    for done in pool.imap_unordered(_synthesize_speaker, tasks, chunksize=1):
                        lengths.update(done)
                        bar.update(len(done))
        speaker_by_index = {s.index: s for s in speakers}
        for split in SPLITS:
            with open(tmp / "data" / f"{split}_data.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(FSC_HEADER)
                rows = [p for p in plans if speaker_by_index[p.speaker_index].split == split]
                for i, p in enumerate(rows):
                    action, obj, location = split_intent(p.intent)
                    spk = speaker_by_index[p.speaker_index].speaker_id
                    writer.writerow([i, p.relpath, spk, p.text, action, obj, location])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        old = root.with_name(root.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old)
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(root)

    seconds = time.perf_counter() - start
    split_of = {s.index: s.split for s in speakers}
    return {
        "root": str(root),
        "utterances": {sp: sum(1 for p in plans if split_of[p.speaker_index] == sp) for sp in SPLITS},
        "speakers": {sp: sum(1 for s in speakers if s.split == sp) for sp in SPLITS},
        "distinct_phrasings": len({p.text for p in plans}),
        "hours": sum(lengths.values()) / SAMPLE_RATE / 3600.0,
        "seconds": seconds,
        "utterances_per_s": len(plans) / seconds if seconds > 0 else float("inf"),
        "workers": workers,
    }
