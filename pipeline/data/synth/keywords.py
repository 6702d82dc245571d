"""Synthetic keyword clips: the corpus's test speakers say single words, in Google Speech Commands' layout.

:func:`synthesize_keywords` writes, offline and deterministically::

    root/<word>/<speakerId>_nohash_<n>.wav     16 kHz mono PCM_16, exactly 1 s; n = 0 .. repeats-1
    root/testing_list.txt                      every clip, "<word>/<file>.wav", one a line
    root/.pipeline-output                      owner marker ("synthetic-keywords", pipeline.core.atomic)

so that the Speech Commands reader (:mod:`pipeline.data.speech_commands`) reads it like the real set.

Same people, same recording chain
    The speakers are the ``test`` speakers of :func:`~pipeline.data.synth.speakers.plan_speakers` for the
    same ``data.synthetic`` params (voice, variant, pitch, rate, intonation), and every clip goes through
    :func:`~pipeline.data.synth.effects.render_utterance` (per-clip jitter, room, microphone, level,
    coloured noise at a random SNR). A keyword classifier is thus tested on voices it never trained on,
    recorded like the corpus.

1 s clips
    Speech Commands clips are 1 s long. The rendered clip is cut to the 1 s window centred on the word
    (a word longer than 1 s loses both ends equally); where the window reaches past the rendering, it is
    filled with fresh noise of the clip's own colour (``noise_alpha``) and level, so the padding is never
    digital silence. The level is the one render_utterance added: with ``P`` the mean power of the rendered
    speech span (speech + noise, which are independent), the noise power is ``P / (1 + 10^(SNR/10))``.

Seeding
    Every draw comes from ``seeded_rng(seed, STREAM_KEYWORDS, speaker, word, n)``, a stream the corpus never
    uses, so adding (or changing) the keyword set leaves every corpus byte unchanged. Each speaker has a
    pristine engine (see :mod:`pipeline.data.synth.engine`) that says its words in list order, so the
    bytes do not depend on ``workers``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.config import SynthConfig
from pipeline.core.atomic import atomic_dir
from pipeline.data.synth.effects import SAMPLE_RATE, Rendered, coloured_noise, render_utterance
from pipeline.data.synth.engine import Espeak
from pipeline.data.synth.speakers import Speaker, seeded_rng
from pipeline.data.synth.writer import _n_workers, checked_speakers, write_wav

#: owner named in the marker file of a keyword folder (pipeline.core.atomic)
OWNER = "synthetic-keywords"
#: first element of the keyword clips' spawn keys: far from the corpus's STREAM_* (0..4)
STREAM_KEYWORDS = 1000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s, as in Speech Commands
#: A spawned worker costs an interpreter start (1-2 s, the time of ~500 clips here): fewer clips per worker are
#: faster in-process (the default 560 clips: 1.6 s in-process, 3.4 s with 2 workers on 2 cores).
MIN_CLIPS_PER_WORKER = 500


def clip_name(speaker: Speaker, n: int) -> str:
    return f"{speaker.speaker_id}_nohash_{n}.wav"


def fit_to_clip(rendered: Rendered, rng: np.random.Generator, n: int = CLIP_SAMPLES) -> np.ndarray:
    """The ``n``-sample window of ``rendered`` centred on its speech, padded with matching noise (int16)."""
    x = rendered.samples.astype(np.float64)
    a, b = rendered.speech_span
    start = (a + b) // 2 - n // 2
    lo, hi = max(start, 0), min(start + n, len(x))
    ac = rendered.acoustics
    p_span = float(np.mean(x[a:b] ** 2))
    level = math.sqrt(p_span / (1.0 + 10.0 ** (ac.snr_db / 10.0)))
    out = coloured_noise(rng, n, ac.noise_alpha) * level  # always drawn: the stream does not depend on the fit
    out[lo - start : hi - start] = x[lo:hi]
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _synthesize_speaker(task: tuple) -> int:
    """Worker: one speaker's clips, words in order and ``repeats`` each, by one pristine engine."""
    speaker, words, repeats, out_root, seed, snr_db = task
    out_root = Path(out_root)
    with Espeak() as engine:
        engine.set_voice(speaker.espeak_voice)
        for w, word in enumerate(words):
            for n in range(repeats):
                rng = seeded_rng(seed, STREAM_KEYWORDS, speaker.index, w, n)
                rendered = render_utterance(engine, speaker, word, rng, snr_db)
                write_wav(out_root / word / clip_name(speaker, n), fit_to_clip(rendered, rng))
    return len(words) * repeats


def synthesize_keywords(root: Path, cfg: SynthConfig, words: Sequence[str], repeats: int, progress: bool = True) -> dict:
    """Write the keyword clips of ``cfg``'s test speakers into ``root`` (replaced atomically); return stats:
    ``words``, ``speakers``, ``clips``, ``audio_seconds``, ``seconds`` taken, ``workers``."""
    from tqdm import tqdm

    start = time.perf_counter()
    speakers = [s for s in checked_speakers(cfg) if s.split == "test"]
    words = list(words)
    snr = (cfg.snr_db_min, cfg.snr_db_max)
    with atomic_dir(Path(root), owner=OWNER) as tmp:
        for word in words:
            (tmp / word).mkdir()
        tasks = [(s, words, repeats, str(tmp), cfg.seed, snr) for s in speakers]
        n_clips = len(tasks) * len(words) * repeats
        workers = max(1, min(_n_workers(cfg.workers), len(tasks), n_clips // MIN_CLIPS_PER_WORKER))
        with tqdm(total=n_clips, desc="keywords", unit="clip", disable=not progress) as bar:
            if workers <= 1:
                for done in map(_synthesize_speaker, tasks):
                    bar.update(done)
            else:
                with mp.get_context("spawn").Pool(workers) as pool:
                    for done in pool.imap_unordered(_synthesize_speaker, tasks, chunksize=1):
                        bar.update(done)
        listing = [f"{word}/{clip_name(s, n)}" for word in words for s in speakers for n in range(repeats)]
        (tmp / "testing_list.txt").write_text("".join(line + "\n" for line in listing))
    return {
        "words": len(words),
        "speakers": len(speakers),
        "clips": n_clips,
        "audio_seconds": n_clips * CLIP_SAMPLES / SAMPLE_RATE,
        "seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
    }
