"""The prepare stage end to end (``python -m pipeline prepare``) on tiny FSC, SLURP and synthetic corpora.

The stage runs in-process through :func:`pipeline.__main__.main` (same code path as the CLI, without
an interpreter start per run); ``test_config.py`` covers the CLI as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import SR, make_fsc, make_slurp
from pipeline.__main__ import main as cli
from pipeline.config import FeaturesConfig
from pipeline.data.audio import read_wav
from pipeline.data.features import fbank, load_packed
from pipeline.data.phrasings import PHRASINGS
from pipeline.data.schema import FSC_INTENTS, split_intent
from pipeline.data.slurp import SLURP_SCENARIOS
from pipeline.data.tokenizer import Tokenizer, words

SPLITS = ("train", "valid", "test")
WIN, HOP = 400, 160  # 25 ms and 10 ms at 16 kHz (the params defaults)
OUTPUTS = [
    *(f"features/{s}.safetensors" for s in SPLITS), *(f"meta/{s}.json" for s in SPLITS),
    "tokenizer.json", "tasks.json", "stats.json",
]  # fmt: skip


def n_samples(i: int) -> int:
    """Length of fixture file i: 0.2 .. 0.33 s, not a whole number of hops."""
    return 3200 + 160 * ((7 * i) % 20) + 37 * (i % 3)


def audio_fn(split_of: list[str]):
    """audio(i): a tone plus seeded noise; valid/test are 4x louder than train so that statistics over
    all splits differ from statistics over train (log-Mel energies shift by log 16)."""

    def audio(i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        n = n_samples(i)
        x = 0.1 * np.sin(2 * np.pi * (200 + 50 * (i % 9)) * np.arange(n) / SR) + 0.02 * rng.standard_normal(n)
        gain = 1.0 if split_of[i] == "train" else 4.0
        return (gain * x).astype(np.float32)

    return audio


def fsc_rows(train_per_intent, other_per_intent: int = 1) -> list[tuple]:
    """FSC rows covering all 31 intents in every split; ``train_per_intent(k)`` utterances of intent k in train.

    Train has two speakers, valid and test one each; transcripts are the project's phrasings (valid and
    test use other phrasings than train, so some of their words are not in the training vocabulary).
    """
    rows = []
    for split in SPLITS:
        for k, intent in enumerate(FSC_INTENTS):
            count = train_per_intent(k) if split == "train" else other_per_intent
            for j in range(count):
                act, obj, loc = split_intent(intent)
                spk = {"train": f"tr{j % 2}", "valid": "va0", "test": "te0"}[split]
                texts = PHRASINGS[intent]
                text = texts[j % 2] if split == "train" else texts[2 + (split == "test")]
                rows.append((split, spk, f"{split}-{k}-{j}", text, act, obj, loc))
    return rows


def write_params(tmp_path: Path, data: dict, split: dict, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"data": data, "split": split}))
    return path


def run_prepare(params: Path, out: Path, capsys) -> tuple[int, str, str]:
    code = cli(["prepare", "--params", str(params), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }  # fmt: skip


def expected_frames(n: int) -> int:
    return 1 + (n - WIN) // HOP  # Kaldi framing with snip_edges


# ----------------------------------------------------------------------------- FSC


def test_prepare_fsc_end_to_end(tmp_path, capsys):
    rows = fsc_rows(train_per_intent=lambda k: 1 + k % 2)  # 1 or 2 per intent: per-task counts differ
    split_of = [r[0] for r in rows]
    root = make_fsc(tmp_path / "fsc", rows, audio=audio_fn(split_of))
    params = write_params(tmp_path, {"source": "fsc", "root": str(root)},
                          {"preset": None, "n_tasks": 3, "class_order": "sorted"})  # fmt: skip
    out = tmp_path / "prepared"
    code, stdout, stderr = run_prepare(params, out, capsys)
    assert code == 0, stderr
    n_split = {s: split_of.count(s) for s in SPLITS}
    assert n_split == {"train": 31 + 15, "valid": 31, "test": 31}
    assert stdout.startswith(f"prepare: {len(rows)} utterances (train 46, valid 31, test 31), 31 classes in 3 tasks")
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert not (tmp_path / "prepared.tmp").exists()

    classes = list(FSC_INTENTS)
    index = {s: [i for i, r in enumerate(rows) if r[0] == s] for s in SPLITS}
    packed = {s: load_packed(out / "features" / f"{s}.safetensors") for s in SPLITS}
    for s in SPLITS:
        meta = json.loads((out / "meta" / f"{s}.json").read_text())
        assert [m["uid"] for m in meta] == [f"wavs/speakers/{rows[i][1]}/{rows[i][2]}" for i in index[s]]
        labels = [f"{rows[i][4]}_{rows[i][5]}_{rows[i][6]}" for i in index[s]]
        assert [m["label"] for m in meta] == labels
        assert [m["label_id"] for m in meta] == [classes.index(lab) for lab in labels]
        assert [m["transcript"] for m in meta] == [rows[i][3] for i in index[s]]
        assert [m["n_frames"] for m in meta] == [expected_frames(n_samples(i)) for i in index[s]]

        frames, offsets = packed[s]["frames"].numpy(), packed[s]["offsets"].numpy()
        assert frames.dtype == np.float16 and frames.shape[1] == 40
        assert offsets[0] == 0 and offsets[-1] == frames.shape[0] and len(offsets) == len(meta) + 1
        np.testing.assert_array_equal(np.diff(offsets), [m["n_frames"] for m in meta])
        assert np.isfinite(frames).all()
    # The stored frames are the fbank of the right file, in CSV order (first and last of test).
    off = packed["test"]["offsets"].numpy()
    for j in (0, len(index["test"]) - 1):
        i = index["test"][j]
        ref = fbank(read_wav(root / f"wavs/speakers/{rows[i][1]}/{rows[i][2]}.wav", SR), FeaturesConfig())
        got = packed["test"]["frames"].numpy()[off[j] : off[j + 1]]
        np.testing.assert_allclose(got.astype(np.float32), ref, rtol=2e-3, atol=2e-3)  # float16 storage

    # mean / std: over the training frames only, stored identically in every split's file.
    train = packed["train"]["frames"].numpy().astype(np.float64)
    everything = np.concatenate([packed[s]["frames"].numpy().astype(np.float64) for s in SPLITS])
    mean, std = packed["train"]["mean"].numpy(), packed["train"]["std"].numpy()
    np.testing.assert_allclose(mean, train.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(std, train.std(0), rtol=1e-4, atol=1e-4)
    assert np.abs(everything.mean(0) - mean).max() > 0.3  # louder valid/test would have shifted it
    for s in ("valid", "test"):
        assert np.array_equal(packed[s]["mean"].numpy(), mean) and np.array_equal(packed[s]["std"].numpy(), std)

    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks["source"] == "fsc" and tasks["family"] == "fsc" and tasks["preset"] is None
    assert tasks["classes"] == classes and tasks["class_order"] == list(range(31))
    assert tasks["tasks"] == [list(range(11)), list(range(11, 21)), list(range(21, 31))]
    assert tasks["task_names"] == [[classes[c] for c in t] for t in tasks["tasks"]]
    per_task_train = [sum(1 + k % 2 for k in t) for t in tasks["tasks"]]
    assert tasks["n_train_per_task"] == per_task_train == [16, 15, 15]
    assert tasks["n_valid_per_task"] == tasks["n_test_per_task"] == [11, 10, 10]

    tok = Tokenizer.load(out / "tokenizer.json")
    assert tok.classes == classes
    assert tok.vocab_words == sorted({w for r in rows if r[0] == "train" for w in words(r[3])})

    stats = json.loads((out / "stats.json").read_text())
    assert {s: stats["splits"][s]["utterances"] for s in SPLITS} == n_split
    assert {s: stats["splits"][s]["speakers"] for s in SPLITS} == {"train": 2, "valid": 1, "test": 1}
    assert stats["classes"] == 31 and stats["tasks"] == 3 and stats["synthesis"] == {}
    assert stats["phrasings"] == len({r[3] for r in rows})


# ----------------------------------------------------------------------------- SLURP


def test_prepare_slurp_preset(tmp_path, capsys):
    scenarios = sorted(SLURP_SCENARIOS)
    sets = [("train.jsonl", 100 + k, f"do the {sc} thing", sc, [f"audio-{k}.flac"] + [f"audio-{k}-headset.flac"] * (k % 3 == 0))
            for k, sc in enumerate(scenarios)]  # fmt: skip
    sets += [("devel.jsonl", 200, "what is the weather", "weather", ["audio-d1.flac"]),
             ("devel.jsonl", 201, "wake me at six", "alarm", ["audio-d2.flac"]),
             ("test.jsonl", 300, "play some jazz", "music", ["audio-t1.flac"])]  # fmt: skip
    root = make_slurp(tmp_path / "slurp", sets, audio=lambda i: audio_fn(["train"] * 64)(i))
    params = write_params(tmp_path, {"source": "slurp", "root": str(root)}, {"preset": "slurp-3", "class_order": "sorted"})
    out = tmp_path / "prepared"
    code, stdout, stderr = run_prepare(params, out, capsys)
    assert code == 0, stderr
    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks["family"] == "slurp" and tasks["preset"] == "slurp-3" and tasks["classes"] == scenarios
    assert tasks["tasks"] == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    n_train = [1 + (k % 3 == 0) for k in range(18)]
    assert tasks["n_train_per_task"] == [sum(n_train[:6]), sum(n_train[6:12]), sum(n_train[12:])]
    by_task = {c: t for t, cs in enumerate(tasks["tasks"]) for c in cs}
    assert tasks["n_valid_per_task"] == [
        sum(by_task[scenarios.index(sc)] == t for sc in ("weather", "alarm")) for t in range(3)
    ]
    meta = {s: json.loads((out / "meta" / f"{s}.json").read_text()) for s in SPLITS}
    assert [m["uid"] for m in meta["test"]] == ["audio-t1"] and meta["test"][0]["speaker"] == "set-300"
    assert meta["valid"][1]["label_id"] == scenarios.index("alarm")
    assert meta["train"][0]["n_frames"] == expected_frames(n_samples(0))
    assert len(meta["train"]) == sum(n_train)
    assert Tokenizer.load(out / "tokenizer.json").classes == scenarios


def test_prepare_slurp_preset_needs_18_scenarios(tmp_path, capsys):
    sets = [("train.jsonl", 1, "play jazz", "music", ["a.flac"]), ("train.jsonl", 2, "rain", "weather", ["b.flac"]),
            ("devel.jsonl", 3, "rock", "music", ["c.flac"]), ("test.jsonl", 4, "sun", "weather", ["d.flac"])]  # fmt: skip
    root = make_slurp(tmp_path / "slurp", sets)
    params = write_params(tmp_path, {"source": "slurp", "root": str(root)}, {"preset": "slurp-3", "class_order": "sorted"})
    code, _, stderr = run_prepare(params, tmp_path / "prepared", capsys)
    assert code == 2
    assert stderr == "error: params: split.preset: 'slurp-3' is for slurp with 18 classes, but the corpus is slurp with 2 classes\n"
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "prepared.tmp").exists()


# ----------------------------------------------------------------------------- synthetic


def test_prepare_synthetic_is_deterministic(tmp_path, capsys):
    synth = {"n_speakers": 5, "valid_speakers": 1, "test_speakers": 1, "utterances_per_speaker": 31, "workers": 1}
    params = write_params(tmp_path, {"source": "synthetic", "synthetic": synth}, {"preset": "fsc-3", "class_order": "paper"})
    hashes = []
    for run in ("a", "b"):
        out = tmp_path / run
        code, stdout, stderr = run_prepare(params, out, capsys)
        assert code == 0, stderr
        hashes.append(tree_hashes(out))
    a = tmp_path / "a"
    # The corpus is in FSC layout under OUT/corpus and was read back by the FSC reader.
    for s in SPLITS:
        assert (a / "corpus" / "data" / f"{s}_data.csv").is_file()
    meta = {s: json.loads((a / "meta" / f"{s}.json").read_text()) for s in SPLITS}
    assert {s: len(m) for s, m in meta.items()} == {"train": 93, "valid": 31, "test": 31}
    assert all((a / "corpus" / (m["uid"] + ".wav")).is_file() for m in meta["test"])
    assert {m["label"] for m in meta["valid"]} == set(FSC_INTENTS)  # every intent in every split
    speakers = {s: {m["speaker"] for m in meta[s]} for s in SPLITS}
    assert [len(speakers[s]) for s in SPLITS] == [3, 1, 1] and not (speakers["train"] & speakers["test"])
    stats = json.loads((a / "stats.json").read_text())
    assert stats["synthesis"]["utterances"] == {"train": 93, "valid": 31, "test": 31}
    tasks = json.loads((a / "tasks.json").read_text())
    assert [len(t) for t in tasks["tasks"]] == [11, 10, 10]
    # Two runs: identical features, metadata, tokenizer and corpus (stats.json holds timings).
    assert hashes[0].keys() == hashes[1].keys()
    differ = sorted(k for k in hashes[0] if hashes[0][k] != hashes[1][k])
    assert differ == ["stats.json"], differ
    assert any(k.startswith("features/") for k in hashes[0])


# ----------------------------------------------------------------------------- bad data


def small_fsc(root: Path) -> tuple[Path, list[tuple]]:
    """31 train utterances (one per intent), 1 valid, 1 test: the smallest corpus prepare accepts."""
    rows = [r for r in fsc_rows(train_per_intent=lambda k: 1) if r[0] == "train" or r[2].endswith("-0-0")]
    return make_fsc(root, rows, audio=audio_fn([r[0] for r in rows])), rows


def wav(root: Path, row: tuple) -> Path:
    return root / f"wavs/speakers/{row[1]}/{row[2]}.wav"


def break_missing_wav(root, rows):
    wav(root, rows[5]).unlink()
    return str(wav(root, rows[5]).resolve()), "is missing"


def break_8khz(root, rows):
    sf.write(wav(root, rows[-1]), np.zeros(2400, np.float32), 8000, subtype="PCM_16")
    return str(wav(root, rows[-1]).resolve()), "sample rate is 8000 Hz, expected 16000 Hz"


def break_column(root, rows):
    csv_path = root / "data" / "test_data.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0].replace(",location", "")] + [ln.rsplit(",", 1)[0] for ln in lines[1:]]) + "\n")
    return str(csv_path), "missing column(s) location"


def break_intent(root, rows):
    csv_path = root / "data" / "train_data.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 3)[0] + ",bring,moon,none"
    csv_path.write_text("\n".join(lines) + "\n")
    return f"{csv_path}:4", "intent 'bring_moon_none' is not one of the 31 FSC intents"


def break_empty_split(root, rows):
    csv_path = root / "data" / "valid_data.csv"
    csv_path.write_text(csv_path.read_text().splitlines()[0] + "\n")
    return str(csv_path), "has no rows"


@pytest.mark.parametrize("breaker", [break_missing_wav, break_8khz, break_column, break_intent, break_empty_split])
def test_prepare_bad_data_one_line_and_no_output(tmp_path, capsys, breaker):
    root, rows = small_fsc(tmp_path / "fsc")
    where, what = breaker(root, rows)
    params = write_params(tmp_path, {"source": "fsc", "root": str(root)}, {"preset": "fsc-3"})
    out = tmp_path / "prepared"
    code, stdout, stderr = run_prepare(params, out, capsys)
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {where}") and what in lines[0], stderr
    assert stdout == ""
    assert not out.exists() and not (tmp_path / "prepared.tmp").exists()


def test_failed_rerun_keeps_previous_output(tmp_path, capsys):
    root, rows = small_fsc(tmp_path / "fsc")
    params = write_params(tmp_path, {"source": "fsc", "root": str(root)}, {"preset": "fsc-10"})
    out = tmp_path / "prepared"
    assert run_prepare(params, out, capsys)[0] == 0
    before = tree_hashes(out)
    assert len(json.loads((out / "tasks.json").read_text())["tasks"]) == 10
    where, _ = break_8khz(root, rows)  # fails in the feature pass, the last and slowest step
    code, _, stderr = run_prepare(params, out, capsys)
    assert code == 2 and where in stderr
    assert tree_hashes(out) == before
    assert not (tmp_path / "prepared.tmp").exists()


# ----------------------------------------------------------------------------- feature worker processes


def test_feature_worker_pool_matches_in_process(tmp_path, monkeypatch):
    """The spawn pool (used for corpora of >= 2 * MIN_FILES_PER_WORKER files) returns the in-process
    features, in input order, across several 64-file jobs."""
    from pipeline.data import features

    paths = []
    for i in range(140):  # 3 jobs of <= 64 files
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], audio_fn(["train"] * 140)(i), SR, subtype="PCM_16")
    cfg = FeaturesConfig()
    serial = features.compute_features(paths, cfg, workers=1, progress=False)
    monkeypatch.setattr(features, "MIN_FILES_PER_WORKER", 1)
    pooled = features.compute_features(paths, cfg, workers=2, progress=False)
    assert len(pooled) == len(serial) == 140
    assert [f.shape[0] for f in pooled] == [expected_frames(n_samples(i)) for i in range(140)]
    assert all(np.array_equal(a, b) for a, b in zip(serial, pooled))
