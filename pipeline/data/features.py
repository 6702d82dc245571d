"""Log-Mel filterbank features, computed once in prepare and stored packed with their lengths.

Storage (one safetensors file per split): ``frames`` [sum of n_frames, n_mels] float16 holds every
utterance's frames back to back; ``offsets`` [N + 1] int64 marks where each utterance starts, so
utterance i is ``frames[offsets[i]:offsets[i + 1]]``. Training memory-maps the file once: no audio is
decoded per epoch. ``mean``/``std`` [n_mels] are global statistics of the training split, applied by
the model (so the stored features stay raw and the statistics travel with them).

With ``features.kind: waveform`` (for a pretrained wav2vec2-style encoder) the same layout holds the raw
samples: ``frames`` [sum of n_samples, 1] int16, ``mean`` = [0] and ``std`` = [32768], so that the model's
``(frames - mean) / std`` is the waveform in [-1, 1) exactly as read from the file. int16 rather than
float16: it is lossless for the 16-bit PCM of FSC, SLURP and the synthetic corpus and takes the same
space, whereas float16 keeps only 11 bits for loud samples. Global statistics would be useless: the
encoder normalises each utterance itself, as Hugging Face's Wav2Vec2FeatureExtractor does.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

from pipeline.config import FeaturesConfig
from pipeline.data.audio import read_wav


def fbank(wave: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """Kaldi-style log-Mel filterbank of one waveform: [n_frames, n_mels] float32.

    Dither is off so that features are a pure function of the audio (determinism).
    """
    import torch
    import torchaudio.compliance.kaldi as kaldi

    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)  # [1, samples]
    win = int(round(cfg.win_ms * cfg.sample_rate / 1000))
    if x.shape[1] < win:  # kaldi.fbank needs one full window
        x = torch.nn.functional.pad(x, (0, win - x.shape[1]))
    feats = kaldi.fbank(
        x * 32768.0,  # Kaldi's convention: int16 scale
        num_mel_bins=cfg.n_mels,
        frame_length=cfg.win_ms,
        frame_shift=cfg.hop_ms,
        sample_frequency=cfg.sample_rate,
        dither=0.0,
        energy_floor=1.0,
    )
    if cfg.max_frames is not None:
        feats = feats[: cfg.max_frames]
    return feats.numpy()


#: The int16 scale: stored waveform samples divided by it are the file's samples in [-1, 1).
WAVE_SCALE = 32768.0


def waveform(wave: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """The samples of one waveform as stored for ``kind: waveform``: [n_samples, 1] int16.

    ``max_frames`` keeps the duration it keeps for fbank: ``max_frames`` hops of ``hop_ms``.
    """
    if cfg.max_frames is not None:
        wave = wave[: int(round(cfg.max_frames * cfg.hop_ms * cfg.sample_rate / 1000))]
    ints = np.clip(np.round(np.asarray(wave, dtype=np.float64) * WAVE_SCALE), -32768, 32767).astype(np.int16)
    return ints[:, None]  # [n_samples] -> [n_samples, 1]: one "bin" per step, the packed layout of fbank


def waveform_stats() -> tuple[np.ndarray, np.ndarray]:
    """``mean``/``std`` stored with waveforms: the int16 scale, not statistics (see the module docstring)."""
    return np.zeros(1), np.full(1, WAVE_SCALE)


#: Fewer files than this per worker process are not worth a worker's start-up.
MIN_FILES_PER_WORKER = 500


def _work(job: tuple[list[str], FeaturesConfig]) -> list[np.ndarray]:
    import torch

    torch.set_num_threads(1)  # one process per core already
    paths, cfg = job
    if cfg.kind == "waveform":
        return [waveform(read_wav(Path(p), cfg.sample_rate), cfg) for p in paths]
    return [fbank(read_wav(Path(p), cfg.sample_rate), cfg).astype(np.float16) for p in paths]


def compute_features(paths: list[Path], cfg: FeaturesConfig, workers: int = 0, progress: bool = True) -> list[np.ndarray]:
    """Features of every file, in order. ``workers`` processes (0 = all cores); 'spawn' because the
    parent may already run torch threads, which makes 'fork' unsafe."""
    from tqdm import tqdm

    import torch

    if not workers:  # the cores this process may use (taskset, SLURM), not all of the machine's
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # A spawned worker costs an interpreter start and a torch import (seconds); one file costs ~3 ms.
    # Small corpora are therefore faster in-process.
    workers = max(1, min(workers, len(paths) // MIN_FILES_PER_WORKER))
    chunk = 64
    jobs = [([str(p) for p in paths[i : i + chunk]], cfg) for i in range(0, len(paths), chunk)]
    out: list[np.ndarray] = []
    bar = tqdm(total=len(paths), desc="features", unit="utt", disable=not progress)
    threads = torch.get_num_threads()  # _work sets 1; restored for an in-process run
    if workers == 1 or len(jobs) == 1:
        results = map(_work, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap(_work, jobs)  # ordered
    try:
        for feats in results:
            out.extend(feats)
            bar.update(len(feats))
    finally:
        bar.close()
        torch.set_num_threads(threads)
        if pool is not None:
            pool.close()
            pool.join()
    return out


def save_packed(path: Path, feats: list[np.ndarray], mean: np.ndarray, std: np.ndarray, dtype=np.float16) -> None:
    """``dtype``: of the stored frames (float16 for fbank, int16 for waveforms)."""
    import torch
    from safetensors.torch import save_file

    lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_mels = mean.shape[0]
    frames = np.concatenate(feats, axis=0) if feats else np.zeros((0, n_mels), dtype)
    save_file(
        {
            "frames": torch.from_numpy(frames.astype(dtype)),
            "offsets": torch.from_numpy(offsets),
            "mean": torch.from_numpy(mean.astype(np.float32)),
            "std": torch.from_numpy(std.astype(np.float32)),
        },
        str(path),
    )


def load_packed(path: Path) -> dict:
    """The stored tensors: frames, offsets, mean, std."""
    from safetensors.torch import load_file

    return load_file(str(path))


def global_stats(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and std over all frames (float64 accumulation)."""
    total = sum(f.shape[0] for f in feats)
    s = sum(f.astype(np.float64).sum(0) for f in feats)
    s2 = sum((f.astype(np.float64) ** 2).sum(0) for f in feats)
    mean = s / total
    std = np.sqrt(np.maximum(s2 / total - mean**2, 1e-8))
    return mean, std
