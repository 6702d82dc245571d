"""Reading one audio file of a real corpus (FSC: 16 kHz WAV, SLURP: 16 kHz FLAC) with soundfile.

``torchaudio.load`` needs torchcodec, which our stack lacks (since torchaudio 2.9 it is an alias of
``load_with_torchcodec``: torchaudio 2.9 documentation and https://github.com/pytorch/audio/issues/3902),
so audio is read with soundfile (libsndfile), which handles WAV and FLAC alike.

Decisions (documented here because they change what a run sees):

* Mono only. FSC and SLURP are released mono, so a multi-channel file means the wrong file or a
  bad conversion; it is an error, not a silent downmix.
* No resampling. A file at another rate is an error naming both rates: features are computed at
  ``features.sample_rate`` and silently resampling a whole corpus hides a misconfiguration.
* Integer PCM is scaled by libsndfile to [-1, 1) (``x / 2**(bits-1)``). Float files may exceed
  [-1, 1]; they are clipped to it so that every reader returns the same range. NaN/inf samples
  are an error (a corrupt float file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import DataError


def read_wav(path: Path, expected_rate: int) -> np.ndarray:
    """Read one mono audio file (WAV, FLAC, or any format libsndfile knows) as float32 in [-1, 1].

    Returns an array of shape (n_samples,). Raises :class:`DataError` (one line naming the file)
    when the file is missing, unreadable or corrupt, not at ``expected_rate`` Hz, not mono,
    empty, or holds non-finite samples.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: audio file not found")
    if not path.is_file():
        raise DataError(f"{path}: is not a file (expected an audio file)")
    try:
        with sf.SoundFile(str(path)) as f:
            rate, channels = f.samplerate, f.channels
            # Read the samples only when the header is acceptable (no wasted decoding).
            data = f.read(dtype="float32", always_2d=True) if rate == expected_rate and channels == 1 else None
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as err:
        reason = getattr(err, "error_string", None) or str(err)
        raise DataError(f"{path}: unreadable or corrupt audio file ({reason.strip()})") from err
    if rate != expected_rate:
        raise DataError(
            f"{path}: sample rate is {rate} Hz, expected {expected_rate} Hz "
            "(resample the corpus or set features.sample_rate)"
        )
    if channels != 1:
        raise DataError(f"{path}: has {channels} channels, expected mono (FSC and SLURP are mono)")
    assert data is not None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file is empty (0 samples)")
    samples = data[:, 0]  # (n_samples, 1) -> (n_samples,)
    if not np.all(np.isfinite(samples)):
        raise DataError(f"{path}: audio holds NaN or infinite samples (corrupt float file)")
    return np.clip(samples, -1.0, 1.0, out=samples)
