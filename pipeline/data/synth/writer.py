"""The corpus writer: every planned utterance rendered and written in the Fluent Speech Commands layout.

:func:`synthesize_corpus` writes, fully offline and deterministically::

    root/wavs/speakers/<speakerId>/<uttId>.wav      16 kHz mono PCM_16
    root/data/{train,valid,test}_data.csv           ",path,speakerId,transcription,action,object,location"
    root/.pipeline-output                           owner marker ("synthetic-corpus", pipeline.core.atomic)

so that the FSC reader (:func:`pipeline.data.fsc.read_fsc`, which reads only the CSVs and the WAVs
they list) reads it like the real corpus.

Determinism
    Each speaker is synthesised by a pristine engine (:class:`~pipeline.data.synth.engine.Espeak`,
    see :mod:`pipeline.data.synth.engine` for why), used for that speaker's utterances in index
    order; every draw comes from the seeded streams of :mod:`pipeline.data.synth.speakers`. The
    files are bit-identical for the same config in the same environment (espeak-ng data,
    numpy/scipy FFT), whatever ``workers`` is.

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
    The corpus is built in ``<root>.tmp`` by :func:`pipeline.core.atomic.atomic_dir` (owner
    ``synthetic-corpus``) and replaces ``root`` only when complete; a failed run removes the
    temporary folder, so nothing incomplete ever sits at ``root``. An existing ``root`` is replaced
    only if it is empty or an earlier synthetic corpus (its marker says so); any other folder is
    refused with a one-line UserError and left alone.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import time
import wave
from pathlib import Path

import numpy as np

from pipeline.config import SynthConfig
from pipeline.core.atomic import atomic_dir
from pipeline.data.corpus import SPLITS
from pipeline.data.schema import split_intent
from pipeline.data.synth.effects import SAMPLE_RATE, render_utterance
from pipeline.data.synth.engine import Espeak, check_engine, espeak_paths, list_variants
from pipeline.data.synth.speakers import (
    STREAM_ACOUSTICS,
    Speaker,
    UtterancePlan,
    plan_speakers,
    plan_utterances,
    seeded_rng,
)
from pipeline.errors import ParamsError

#: owner named in the marker file of a corpus folder (pipeline.core.atomic)
OWNER = "synthetic-corpus"
FSC_HEADER = ("", "path", "speakerId", "transcription", "action", "object", "location")


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit mono PCM WAV (stdlib writer: a fixed 44-byte header, byte-identical across runs)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def _synthesize_speaker(task: tuple) -> list[tuple[str, int]]:
    """Worker: one speaker's utterances, in index order, by one pristine engine. Returns (uid, samples)."""
    speaker, plans, out_root, seed, snr_db = task
    out_root = Path(out_root)
    done = []
    with Espeak() as engine:
        engine.set_voice(speaker.espeak_voice)
        for plan in plans:
            rendered = render_utterance(
                engine, speaker, plan.text, seeded_rng(seed, STREAM_ACOUSTICS, speaker.index, plan.index), snr_db
            )
            write_wav(out_root / plan.relpath, rendered.samples)
            done.append((plan.uid, len(rendered.samples)))
    return done


def _n_workers(requested: int) -> int:
    """Worker processes for ``requested`` (0 = the CPUs this process may run on)."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _write_lists(root: Path, speakers: list[Speaker], plans: list[UtterancePlan]) -> None:
    """``data/{train,valid,test}_data.csv`` under ``root``: the utterances of each split, in plan order."""
    speaker_by_index = {s.index: s for s in speakers}
    for split in SPLITS:
        with open(root / "data" / f"{split}_data.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(FSC_HEADER)
            rows = [p for p in plans if speaker_by_index[p.speaker_index].split == split]
            for i, p in enumerate(rows):
                action, obj, location = split_intent(p.intent)
                spk = speaker_by_index[p.speaker_index].speaker_id
                writer.writerow([i, p.relpath, spk, p.text, action, obj, location])


def checked_speakers(cfg: SynthConfig) -> list[Speaker]:
    """The speakers of ``cfg`` after checking the params and that espeak-ng works (the corpus and the keyword
    clips plan the same speakers)."""
    cfg.validate("data.synthetic")
    if cfg.seed < 0:
        raise ParamsError(f"params: data.synthetic.seed: must be >= 0, got {cfg.seed}")
    _, data_path = espeak_paths()
    check_engine()
    return plan_speakers(cfg, list_variants(data_path))


def synthesize_corpus(root: Path, cfg: SynthConfig, progress: bool = True) -> dict:
    """Synthesise the corpus of ``cfg`` into ``root`` (FSC layout, replaced atomically) and return stats.

    Stats: ``root``, ``utterances`` and ``speakers`` per split, ``distinct_phrasings`` used, ``hours``
    of audio, ``seconds`` taken, ``utterances_per_s``, ``workers``.
    Raises DataError if espeak-ng cannot be used, ParamsError for an impossible config, UserError if
    ``root`` is a folder that is not an earlier synthetic corpus.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    speakers = checked_speakers(cfg)
    plans = plan_utterances(cfg, speakers)
    by_speaker: dict[int, list[UtterancePlan]] = {}
    for p in plans:
        by_speaker.setdefault(p.speaker_index, []).append(p)

    root = Path(root)
    snr = (cfg.snr_db_min, cfg.snr_db_max)
    lengths: dict[str, int] = {}
    with atomic_dir(root, owner=OWNER) as tmp:
        tasks = [(s, by_speaker.get(s.index, []), str(tmp), cfg.seed, snr) for s in speakers]
        workers = min(_n_workers(cfg.workers), len(tasks))
        (tmp / "data").mkdir()
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
        _write_lists(tmp, speakers, plans)

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
