"""Real-corpus readers (read_wav, FSC, SLURP) on tiny fixtures written into tmp_path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FSC_HEADER as HEADER
from conftest import FSC_ROWS, SLURP_SETS, SR, make_fsc, make_slurp
from conftest import fsc_path as _fsc_path
from conftest import slurp_record as _record
from conftest import tone as _tone
from pipeline.data.audio import read_wav
from pipeline.data.fsc import normalize_transcript, read_fsc
from pipeline.data.slurp import read_slurp
from pipeline.errors import DataError, ParamsError, UserError

# ----------------------------------------------------------------------------- read_wav


def test_read_wav_pcm16_values_and_shape(tmp_path):
    x = _tone(1000)
    path = tmp_path / "a.wav"
    sf.write(path, x, SR, subtype="PCM_16")
    y = read_wav(path, SR)
    assert y.dtype == np.float32 and y.shape == (1000,)
    # PCM_16 quantisation: |error| <= 1/32768 (half a step after rounding, a full step at worst).
    assert np.max(np.abs(y - x)) <= 1 / 32768 + 1e-7
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=1e-3)


def test_read_wav_flac_and_float_clipping(tmp_path):
    x = _tone(500, amp=0.25)
    flac = tmp_path / "a.flac"
    sf.write(flac, x, SR, format="FLAC", subtype="PCM_16")
    np.testing.assert_allclose(read_wav(flac, SR), x, atol=1 / 32768 + 1e-7)

    loud = np.array([0.0, 1.5, -2.0, 0.3], dtype=np.float32)
    fwav = tmp_path / "float.wav"
    sf.write(fwav, loud, SR, subtype="FLOAT")
    np.testing.assert_allclose(read_wav(fwav, SR), [0.0, 1.0, -1.0, 0.3], atol=1e-7)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "not found"),
        ("corrupt", "unreadable or corrupt"),
        ("rate", "sample rate is 8000 Hz, expected 16000 Hz"),
        ("stereo", "has 2 channels, expected mono"),
        ("empty", "empty (0 samples)"),
        ("nan", "NaN or infinite"),
        ("folder", "is not a file"),
    ],
)
def test_read_wav_errors_name_file_and_problem(tmp_path, case, needle):
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(50)))
    elif case == "rate":
        sf.write(path, _tone(100), 8000)
    elif case == "stereo":
        sf.write(path, np.stack([_tone(100), _tone(100)], axis=1), SR)
    elif case == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), SR)
    elif case == "nan":
        sf.write(path, np.array([0.1, np.nan, 0.2], dtype=np.float32), SR, subtype="FLOAT")
    elif case == "folder":
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_wav(path, SR)
    msg = str(info.value)
    assert str(path) in msg and needle in msg and "\n" not in msg
    assert isinstance(info.value, UserError)


# ----------------------------------------------------------------------------- FSC

def test_read_fsc_end_to_end(tmp_path):
    root = make_fsc(tmp_path / "fsc")
    utts = read_fsc(root)
    assert [u.split for u in utts] == ["train", "train", "train", "valid", "test", "test"]
    first = utts[0]
    assert first.uid == "wavs/speakers/spkA/u1"
    assert first.speaker == "spkA"
    assert first.audio_path == (root / "wavs/speakers/spkA/u1.wav").resolve() and first.audio_path.is_absolute()
    assert first.transcript == "turn on the lights"
    assert first.label == "activate_lights_none"
    assert utts[1].label == "change language_Chinese_none"
    assert utts[1].transcript == "ok now switch the main language to chinese"
    assert utts[2].label == "increase_heat_kitchen" and utts[2].transcript == "heat up the kitchen please"
    assert utts[3].transcript == "it's too loud"
    assert {u.speaker for u in utts if u.split == "test"} == {"spkD"}
    assert read_wav(first.audio_path, SR).shape == (160,)


def test_normalize_transcript():
    assert normalize_transcript("  Turn ON the lights, please. ") == "turn on the lights please"
    assert normalize_transcript("It\u2019s 'quoted' - the lights' state_x") == "it's quoted the lights state x"
    assert normalize_transcript("Café au-lait?") == "café au lait"


def _fsc_error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        read_fsc(root)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_fsc_missing_root(tmp_path):
    msg = _fsc_error(tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and "not found" in msg


def test_fsc_missing_csv(tmp_path):
    root = make_fsc(tmp_path / "fsc")
    (root / "data" / "valid_data.csv").unlink()
    msg = _fsc_error(root)
    assert "valid_data.csv" in msg and "not found" in msg


def test_fsc_missing_columns(tmp_path):
    root = make_fsc(tmp_path / "fsc")
    csv_path = root / "data" / "test_data.csv"
    csv_path.write_text(",path,speaker,transcription,action,object\n0,a.wav,s,t,bring,shoes\n")
    msg = _fsc_error(root)
    assert "test_data.csv" in msg and "speakerId, location" in msg


def test_fsc_intent_outside_schema_names_row(tmp_path):
    rows = [*FSC_ROWS[:2], ("train", "spkB", "u9", "Fly me to the moon", "bring", "moon", "none"), *FSC_ROWS[3:]]
    root = make_fsc(tmp_path / "fsc", rows)
    msg = _fsc_error(root)
    assert "train_data.csv:4" in msg and "'bring_moon_none'" in msg and "31 FSC intents" in msg


def test_fsc_empty_split(tmp_path):
    rows = [r for r in FSC_ROWS if r[0] != "valid"]
    root = make_fsc(tmp_path / "fsc", rows)
    msg = _fsc_error(root)
    assert "valid_data.csv" in msg and "no rows" in msg


def test_fsc_missing_wavs_named_with_count(tmp_path):
    root = make_fsc(tmp_path / "fsc")
    (root / _fsc_path("spkB", "u3")).unlink()
    (root / _fsc_path("spkD", "u6")).unlink()
    msg = _fsc_error(root)
    assert msg.startswith(str((root / _fsc_path("spkB", "u3")).resolve()))
    assert "train_data.csv" in msg and "2 of 6" in msg


def test_fsc_duplicate_path_and_empty_value(tmp_path):
    root = make_fsc(tmp_path / "fsc", [*FSC_ROWS, ("test", "spkA", "u1", "Lights on", "activate", "lights", "none")])
    msg = _fsc_error(root)
    assert "test_data.csv:4" in msg and "already listed at" in msg and "train_data.csv:2" in msg

    root2 = make_fsc(tmp_path / "fsc2")
    (root2 / "data" / "valid_data.csv").write_text(HEADER + "\n0,wavs/speakers/spkC/u4.wav,,Hi,bring,shoes,none\n")
    msg = _fsc_error(root2)
    assert "valid_data.csv:2" in msg and "speakerId" in msg


# ----------------------------------------------------------------------------- SLURP

def test_read_slurp_real_end_to_end(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    utts = read_slurp(root)
    assert [(u.uid, u.split, u.label) for u in utts] == [
        ("audio-100-headset", "train", "alarm"),
        ("audio-100", "train", "alarm"),
        ("audio-101", "train", "weather"),
        ("audio-102", "train", "music"),
        ("audio-200", "valid", "weather"),
        ("audio--300-headset", "test", "alarm"),
    ]
    assert utts[0].transcript == "wake me up at ten" and utts[2].transcript == "what's the weather"
    assert utts[0].speaker == utts[1].speaker == "set-1" and utts[2].speaker == "set-2"
    assert utts[0].audio_path == (root / "slurp_real" / "audio-100-headset.flac").resolve()
    assert read_wav(utts[-1].audio_path, SR).shape == (160,)


def test_read_slurp_synth_both_and_nested_layout(tmp_path):
    root = make_slurp(tmp_path / "slurp", ann_sub="dataset/slurp", audio_sub="audio")
    synth = read_slurp(root, audio="synth")
    train = [u for u in synth if u.split == "train"]
    assert [(u.uid, u.label) for u in train] == [
        ("synth-audio-102", "music"), ("synth-synth-7", "music"), ("synth-synth-8", "weather"), ("synth-synth-9", "alarm"),
    ]  # fmt: skip
    assert all(u.speaker == "synthetic" for u in train) and train[2].transcript == "rain today"
    assert train[0].audio_path == (root / "audio" / "slurp_synth" / "audio-102.flac").resolve()
    # valid / test stay real.
    assert [u.uid for u in synth if u.split != "train"] == ["audio-200", "audio--300-headset"]

    both = read_slurp(root, audio="both")
    assert [u.uid for u in both if u.split == "train"] == [
        "audio-100-headset", "audio-100", "audio-101", "audio-102",
        "synth-audio-102", "synth-synth-7", "synth-synth-8", "synth-synth-9",
    ]  # fmt: skip
    assert len({u.uid for u in both}) == len(both) == 10

    # Synthetic training data without a scenario that valid/test use is refused.
    (root / "dataset" / "slurp" / "train_synthetic.jsonl").write_text(
        json.dumps(_record(6, "play some rock", "music", ["synth-7.flac"])) + "\n"
    )
    msg = _slurp_error(root, audio="synth")
    assert "devel.jsonl:1" in msg and "'weather' does not occur in train" in msg


def test_read_slurp_metadata_speakers(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    meta = {"1": {"recordings": {"audio-100-headset.flac": {"usrid": "MO-433"}, "audio-100.flac": {}}}}
    (root / "metadata.json").write_text(json.dumps(meta))
    utts = read_slurp(root)
    assert utts[0].speaker == "user-MO-433"
    assert utts[1].speaker == "set-1"  # no usrid: falls back to the recording-set id


def _slurp_error(root: Path, audio: str = "real") -> str:
    with pytest.raises(DataError) as info:
        read_slurp(root, audio=audio)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_slurp_missing_root_jsonl_and_audio_dir(tmp_path):
    assert "not found" in _slurp_error(tmp_path / "nope")
    root = make_slurp(tmp_path / "slurp")
    (root / "test.jsonl").unlink()
    msg = _slurp_error(root)
    assert str(root.resolve() / "test.jsonl") in msg and "not found" in msg

    root2 = make_slurp(tmp_path / "slurp2", audio_sub="audio")
    (root2 / "audio" / "slurp_synth").rename(root2 / "elsewhere")
    msg = _slurp_error(root2, audio="both")
    assert "slurp_synth" in msg and "audio folder not found" in msg

    (tmp_path / "empty").mkdir()
    assert "no SLURP annotations" in _slurp_error(tmp_path / "empty")


def test_slurp_bad_json_line_number(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    lines = (root / "devel.jsonl").read_text().splitlines()
    (root / "devel.jsonl").write_text("\n".join([*lines, "", '{"slurp_id": 9, "sentence": oops}']) + "\n")
    msg = _slurp_error(root)
    assert "devel.jsonl:3" in msg and "invalid JSON" in msg


def test_slurp_missing_key(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    rec = _record(7, "hello", "general", ["audio-900.flac"])
    del rec["scenario"]
    with open(root / "train.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    msg = _slurp_error(root)
    assert "train.jsonl:4" in msg and "missing key(s) scenario" in msg

    rec = _record(8, "hello", "general", [])
    rec["recordings"] = [{"wer": 0.0}]
    (root / "test.jsonl").write_text(json.dumps(rec) + "\n")
    (root / "train.jsonl").write_text(json.dumps(_record(1, "x", "alarm", ["audio-100.flac"])) + "\n")
    msg = _slurp_error(root)
    assert "test.jsonl:1" in msg and "recordings[0] lacks a 'file'" in msg


def test_slurp_missing_audio_named_with_count(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    (root / "slurp_real" / "audio-101.flac").unlink()
    (root / "slurp_real" / "audio-200.flac").unlink()
    msg = _slurp_error(root)
    assert msg.startswith(str(root.resolve() / "slurp_real" / "audio-101.flac"))
    assert "train.jsonl" in msg and "2 of 6" in msg


def test_slurp_empty_split(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    (root / "devel.jsonl").write_text("\n")
    msg = _slurp_error(root)
    assert "devel.jsonl" in msg and "valid split has no recordings" in msg


def test_slurp_scenario_absent_from_train(tmp_path):
    sets = [*SLURP_SETS, ("test.jsonl", 9, "tell me a joke", "general", ["audio-301.flac"])]
    root = make_slurp(tmp_path / "slurp", sets)
    msg = _slurp_error(root)
    assert "test.jsonl:2" in msg and "'general' does not occur in train" in msg


def test_slurp_warnings_unknown_scenario_and_duplicates(tmp_path):
    sets = [
        *SLURP_SETS,
        ("train.jsonl", 10, "beam me up", "teleport", ["audio-400.flac"]),
        ("devel.jsonl", 11, "play jazz again", "music", ["audio-102.flac"]),  # already listed in train
    ]
    root = make_slurp(tmp_path / "slurp", sets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utts = read_slurp(root)
    texts = " | ".join(str(w.message) for w in caught)
    assert "outside SLURP's 18: teleport" in texts and "1 recording(s) listed more than once" in texts
    assert [u.split for u in utts if u.uid == "audio-102"] == ["train"]
    assert "teleport" in {u.label for u in utts}


def test_slurp_bad_audio_choice(tmp_path):
    root = make_slurp(tmp_path / "slurp")
    with pytest.raises(ParamsError, match=r"data\.slurp_audio: 'tts' is not one of real, synth, both"):
        read_slurp(root, audio="tts")
