"""Shared builders of tiny corpus fixtures (FSC and SLURP layouts) written into a test's tmp_path.

Imported by the test modules as ``from conftest import ...`` (pytest puts tests/ on sys.path).
Audio is generated (tones), never synthesised speech, so the builders need no espeak.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import soundfile as sf

SR = 16000

#: audio(i) -> the samples of the i-th file a builder writes (float32 in [-1, 1], SR Hz).
AudioFn = Callable[[int], np.ndarray]


def tone(n: int = 800, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A sine of ``n`` samples at ``freq`` Hz."""
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


# ----------------------------------------------------------------------------- FSC

FSC_HEADER = ",path,speakerId,transcription,action,object,location"
# (split, speaker, uuid, transcription, action, object, location)
FSC_ROWS = [
    ("train", "spkA", "u1", "Turn on the lights.", "activate", "lights", "none"),
    ("train", "spkA", "u2", "OK now switch the main language to Chinese", "change language", "Chinese", "none"),
    ("train", "spkB", "u3", "Heat up the kitchen, please", "increase", "heat", "kitchen"),
    ("valid", "spkC", "u4", "It's too loud", "decrease", "volume", "none"),
    ("test", "spkD", "u5", "Bring me my shoes", "bring", "shoes", "none"),
    ("test", "spkD", "u6", "Lamp off", "deactivate", "lamp", "none"),
]


def fsc_path(speaker: str, uuid: str) -> str:
    """The ``path`` column of an FSC row (relative to the root)."""
    return f"wavs/speakers/{speaker}/{uuid}.wav"


def make_fsc(root: Path, rows=FSC_ROWS, write_audio: bool = True, audio: Optional[AudioFn] = None) -> Path:
    """An FSC copy at ``root`` holding ``rows``; row i's WAV is ``audio(i)`` (default: a 10 ms tone)."""
    (root / "data").mkdir(parents=True)
    by_split: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, (split, spk, uuid, text, act, obj, loc) in enumerate(rows):
        rel = fsc_path(spk, uuid)
        text_field = f'"{text}"' if "," in text else text
        by_split[split].append(f"{i},{rel},{spk},{text_field},{act},{obj},{loc}")
        if write_audio:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, tone(160) if audio is None else audio(i), SR, subtype="PCM_16")
    for split, lines in by_split.items():
        (root / "data" / f"{split}_data.csv").write_text("\n".join([FSC_HEADER, *lines]) + "\n")
    # An extra file of the real release that the reader must ignore.
    (root / "data" / "speaker_demographics.csv").write_text("speakerId,gender\nspkA,f\n")
    return root


# ----------------------------------------------------------------------------- SLURP

# (split file, slurp_id, sentence, scenario, recording files)
SLURP_SETS = [
    ("train.jsonl", 1, "Wake me up at ten.", "alarm", ["audio-100-headset.flac", "audio-100.flac"]),
    ("train.jsonl", 2, "what's the weather", "weather", ["audio-101.flac"]),
    ("train.jsonl", 3, "play jazz", "music", ["audio-102.flac"]),
    ("devel.jsonl", 4, "weather tomorrow", "weather", ["audio-200.flac"]),
    ("test.jsonl", 5, "set an alarm", "alarm", ["audio--300-headset.flac"]),
    ("train_synthetic.jsonl", 6, "play some rock", "music", ["audio-102.flac", "synth-7.flac"]),
    ("train_synthetic.jsonl", 7, "rain today", "weather", ["synth-8.flac"]),
    ("train_synthetic.jsonl", 8, "alarm at six", "alarm", ["synth-9.flac"]),
]


def slurp_record(slurp_id, sentence, scenario, files) -> dict:
    """One SLURP jsonl line (a recording-set) with the keys the reader uses."""
    return {
        "slurp_id": slurp_id,
        "sentence": sentence,
        "sentence_annotation": sentence,
        "intent": f"{scenario}_query",
        "action": "query",
        "scenario": scenario,
        "entities": [],
        "recordings": [{"file": f, "wer": 0.0, "ent_wer": None, "status": "correct"} for f in files],
    }


def make_slurp(
    root: Path, sets=SLURP_SETS, ann_sub: str = "", audio_sub: str = "", audio: Optional[AudioFn] = None
) -> Path:
    """A SLURP copy at ``root``; the i-th recording file written is ``audio(i)`` (default: a 10 ms tone)."""
    ann, aud = root / ann_sub, root / audio_sub
    ann.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    n_written = 0
    for name, sid, sentence, scenario, files in sets:
        lines.setdefault(name, []).append(json.dumps(slurp_record(sid, sentence, scenario, files)))
        folder = aud / ("slurp_synth" if name == "train_synthetic.jsonl" else "slurp_real")
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            x = tone(160) if audio is None else audio(n_written)
            sf.write(folder / f, x, SR, format="FLAC", subtype="PCM_16")
            n_written += 1
    for name, ls in lines.items():
        (ann / name).write_text("\n".join(ls) + "\n")
    return root


# ----------------------------------------------------------------------------- loss references


def loop_dot(u, v):
    """Dot product written out element by element (keeps autograd, avoids any vectorised kernel): the slow
    references of the loss tests use it instead of matmul."""
    total = u[0] * v[0]
    for d in range(1, u.shape[0]):
        total = total + u[d] * v[d]
    return total


def loop_unit_rows(x):
    """The rows of [N, D] ``x`` divided by their loop_dot norm, as a list."""
    return [x[i] / (loop_dot(x[i], x[i]) ** 0.5) for i in range(x.shape[0])]


def one_error(call, *names) -> str:
    """``call()`` raises one DataError line that contains every string in ``names``; returns the line."""
    import pytest

    from pipeline.errors import DataError

    with pytest.raises(DataError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg
    for name in names:
        assert str(name) in msg, msg
    return msg


def value_and_grads(fn, a, b):
    """``fn(a, b)`` on fresh leaf copies of ``a`` and ``b``: (value, d value / d a, d value / d b)."""
    import torch

    a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    value = fn(a1, b1)
    grad_a, grad_b = torch.autograd.grad(value, (a1, b1))
    return value, grad_a, grad_b


def assert_value_and_grads_match(got, want):
    """Two :func:`value_and_grads` results agree to float64 precision (and the gradients are not all zero)."""
    import pytest
    import torch

    (v_got, ga_got, gb_got), (v_want, ga_want, gb_want) = got, want
    assert v_got.dim() == 0 and v_got.dtype == torch.float64
    assert v_got.item() == pytest.approx(v_want.item(), abs=1e-11, rel=1e-11)
    torch.testing.assert_close(ga_got, ga_want, atol=1e-11, rtol=1e-10)
    torch.testing.assert_close(gb_got, gb_want, atol=1e-11, rtol=1e-10)
    assert ga_got.abs().sum() > 0 and gb_got.abs().sum() > 0


def kill_at_first_checkpoint(test_module: str, pause: float, cmd: list[str], partial: Path) -> int:
    """Run ``test_module.slow_stage([pause, *cmd])`` in a fresh process (a stage's CLI slowed by ``pause`` seconds
    per training step), ``kill -9`` it once the trainer's ``partial`` folder holds a state, and return how many
    epochs that state had finished."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", f"import sys, {test_module} as t; t.slow_stage(sys.argv[1:])",
                             str(pause), *cmd], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (partial / "state.json").is_file():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.loads((partial / "state.json").read_text())["epochs_done"]


@pytest.fixture
def restore_torch_globals():
    """A stage run inside the test process sets torch's threads and deterministic flag: give them back
    (``pytestmark = pytest.mark.usefixtures("restore_torch_globals")`` in the modules that run stages)."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch._C._set_deterministic_algorithms(deterministic)
