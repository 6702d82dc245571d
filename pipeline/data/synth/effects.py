"""The acoustics of one utterance: random settings, resampling, room, microphone, level and noise.

All drawn per utterance by :func:`draw_acoustics` from the utterance's own generator (stream
``STREAM_ACOUSTICS`` of :mod:`pipeline.data.synth.speakers`): pitch jitter (+-:data:`PITCH_JITTER`
on espeak's 0..100 scale) and rate jitter (x U[1-:data:`RATE_JITTER`, 1+:data:`RATE_JITTER`])
around the speaker's values; the seed of espeak's own random generators; band-limited resampling
22050 -> 16000 Hz by the DFT (:func:`resample`); leading and trailing silence; with probability
:data:`LOWPASS_PROB` a zero-phase 4th-order Butterworth-magnitude low-pass (a cheap microphone) and
with probability :data:`REVERB_PROB` a synthetic room (exponentially decaying Gaussian impulse
response, -60 dB at RT60), see :func:`room_impulse_response` and :func:`channel_transfer`; the
speech is scaled to a random peak level; then additive *coloured* noise with power spectral
density ``S(f) ~ f^-alpha`` (alpha ~ U[0, 2]: white at 0, pink at 1, brown at 2; frequencies
below 20 Hz flattened) at an SNR drawn uniformly from [snr_db_min, snr_db_max], where

    SNR = 10 log10( mean(s[t]^2 over the speech span) / mean(n[t]^2 over the whole clip) )

(the speech span is where the synthesised speech sits, without the added silences). If the mix
would clip, speech and noise are scaled down together (the SNR is unchanged).
:func:`render_utterance` applies all of it to one utterance of an engine.

The transforms use :mod:`scipy.fft` (a declared dependency, no fallback): about 3x faster than numpy's
FFT on the non-power-of-two sizes used here, and one code path for the bytes (nothing guarantees that
numpy's FFT rounds the same way in every version).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.fft as _fft

from pipeline.data.synth.engine import Espeak
from pipeline.data.synth.speakers import Speaker
from pipeline.errors import DataError

SAMPLE_RATE = 16000  # Hz, of the rendered utterances

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
    """The smallest 2^a 3^b 5^c >= n (a transform size pocketfft handles fast)."""
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
    """Band-limited resampling by the DFT (scipy.fft), optionally through a linear filter.

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
    # (2 n_bins,) float64 read as (n_bins,) complex128: consecutive (real, imaginary) pairs
    spec = rng.standard_normal(2 * n_bins).view(np.complex128)
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
        raw.astype(np.float64) / 32768.0,  # int16 at engine.sample_rate -> float, full scale 1.0
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
    samples = np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)  # full scale 1.0 -> int16
    return Rendered(samples=samples, speech_span=span, acoustics=ac)
