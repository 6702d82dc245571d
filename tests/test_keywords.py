"""The keyword-spotting test set of the prepare stage (data.keywords): synthetic clips in Google Speech Commands
layout, a real Speech-Commands-like folder, the params checks, and load_keywords.

Tiny configs: a 6-speaker synthetic corpus of 11 utterances each (2 test speakers) or a 33-utterance FSC copy of
tones; the stage runs in-process through the CLI entry point.
"""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import SR, make_fsc
from pipeline.__main__ import main as cli
from pipeline.config import SPEECH_COMMANDS_WORDS, FeaturesConfig, SynthConfig, load_prepare
from pipeline.data.features import compute_features, load_packed
from pipeline.data.keywords import load_keywords
from pipeline.data.phrasings import PHRASINGS
from pipeline.data.schema import FSC_INTENTS, split_intent
from pipeline.data.synth.effects import Acoustics, Rendered
from pipeline.data.synth.engine import espeak_paths, list_variants
from pipeline.data.synth import keywords as synth_keywords
from pipeline.data.synth.keywords import fit_to_clip
from pipeline.data.synth.speakers import plan_speakers
from pipeline.errors import DataError, ParamsError

SYNTH = {"n_speakers": 6, "valid_speakers": 1, "test_speakers": 2, "utterances_per_speaker": 11, "workers": 1}
SPLIT = {"preset": "fsc-3"}
N_FRAMES_1S = 1 + (SR - 400) // 160  # Kaldi framing of 1 s: 98 frames


def run_prepare(tmp_path: Path, data: dict, out: str, capsys=None, name: str = "params.yaml") -> tuple[int, Path, str]:
    """(exit status, the output folder, stderr: read when ``capsys`` is given)."""
    params = tmp_path / name
    params.write_text(yaml.safe_dump({"data": data, "split": SPLIT}))
    code = cli(["prepare", "--params", str(params), "--out", str(tmp_path / out), "--no-progress"])
    return code, tmp_path / out, capsys.readouterr().err if capsys is not None else ""


def hashes(root: Path, skip=("stats.json",)) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}  # fmt: skip


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Three prepare runs of one tiny synthetic corpus: a (default keywords), b (the same params with 2 workers),
    off (data.keywords.source: none)."""
    tmp = tmp_path_factory.mktemp("kw")
    outs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth_keywords, "MIN_CLIPS_PER_WORKER", 1)  # so that run b really uses 2 worker processes
        for run, data in (("a", {"synthetic": SYNTH}),
                          ("b", {"synthetic": {**SYNTH, "workers": 2}}),
                          ("off", {"synthetic": SYNTH, "keywords": {"source": "none"}})):
            code, outs[run], _ = run_prepare(tmp, data, run, name=f"{run}.yaml")
            assert code == 0, run
    return outs


def fsc_corpus(root: Path) -> Path:
    """31 training utterances (one per intent), 1 valid, 1 test: tones of differing pitch and level."""
    rows = [("train", "tr0", f"t{k}", PHRASINGS[i][0], *split_intent(i)) for k, i in enumerate(FSC_INTENTS)]
    rows += [("valid", "va0", "v0", PHRASINGS[FSC_INTENTS[0]][1], *split_intent(FSC_INTENTS[0])),
             ("test", "te0", "e0", PHRASINGS[FSC_INTENTS[1]][1], *split_intent(FSC_INTENTS[1]))]  # fmt: skip

    def audio(i: int) -> np.ndarray:
        t = np.arange(3200 + 160 * i) / SR
        return ((0.05 + 0.01 * (i % 7)) * np.sin(2 * np.pi * (150 + 40 * i) * t)).astype(np.float32)

    return make_fsc(root, rows, audio=audio)


# ----------------------------------------------------------------------------- synthetic


def test_layout_1s_clips_of_the_test_speakers(synthetic):
    out = synthetic["a"]
    kw = out / "corpus" / "keywords"
    test_speakers = sorted({m["speaker"] for m in json.loads((out / "meta" / "test.json").read_text())})
    assert len(test_speakers) == 2
    expected = {f"{w}/{s}_nohash_{n}.wav" for w in SPEECH_COMMANDS_WORDS for s in test_speakers for n in range(2)}
    found = {str(p.relative_to(kw)) for p in kw.rglob("*.wav")}
    assert found == expected and len(found) == 35 * 2 * 2
    listing = (kw / "testing_list.txt").read_text().splitlines()
    assert sorted(listing) == sorted(expected) and len(listing) == len(expected)
    for rel in sorted(expected)[::17]:
        with wave.open(str(kw / rel), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (SR, 1, 2, SR)
            x = np.frombuffer(w.readframes(SR), dtype="<i2").astype(np.float64)
        edges = np.concatenate([x[:800], x[-800:]])
        assert np.count_nonzero(edges) > 700  # noise, not digital silence, at both ends
        mid = x[SR // 2 - 2400 : SR // 2 + 2400]
        assert np.mean(mid**2) > 4 * np.mean(edges**2)  # the word sits in the middle
    stats = json.loads((out / "stats.json").read_text())["keywords"]
    assert stats["source"] == "synthetic" and (stats["words"], stats["speakers"], stats["clips"]) == (35, 2, 140)


def test_two_runs_same_bytes_whatever_the_workers(synthetic):
    a, b = hashes(synthetic["a"]), hashes(synthetic["b"])
    assert any(k.startswith("corpus/keywords/") for k in a) and "keywords/features.safetensors" in a
    assert a.keys() == b.keys()
    assert sorted(k for k in a if a[k] != b[k]) == []
    workers = [json.loads((synthetic[r] / "stats.json").read_text())["keywords"]["workers"] for r in "ab"]
    assert workers == [1, 2]


def test_the_keyword_set_leaves_the_corpus_and_splits_unchanged(synthetic):
    on, off = hashes(synthetic["a"]), hashes(synthetic["off"])
    shared = {k for k in on if not k.startswith(("corpus/keywords/", "keywords/"))}
    assert shared == {k for k in off if not k.startswith("keywords/")}
    assert any(k.startswith("corpus/wavs/") for k in shared) and "corpus/data/test_data.csv" in shared
    assert sorted(k for k in shared if on[k] != off[k]) == []
    assert not (synthetic["off"] / "corpus" / "keywords").exists()
    with pytest.raises(DataError, match=r"keyword spotting is off \(data.keywords.source: none\); set data.keywords.source"):
        load_keywords(synthetic["off"])


def test_load_keywords_shapes_and_labels_follow_clips_json(synthetic):
    out = synthetic["a"]
    ks = load_keywords(out)
    clips = json.loads((out / "keywords" / "clips.json").read_text())
    assert ks.words == list(SPEECH_COMMANDS_WORDS) and ks.clips == clips and ks.source == "synthetic"
    assert ks.root == out / "corpus" / "keywords"
    assert [c["word"] for c in clips] == [w for w in SPEECH_COMMANDS_WORDS for _ in range(4)]  # word order
    assert ks.labels == [ks.words.index(c["word"]) for c in clips]
    assert all((ks.root / c["path"]).is_file() and c["path"].startswith(c["word"] + "/") for c in clips)
    assert len(ks.dataset) == 140
    for i in (0, 77, 139):
        feats, label, n, index = ks.dataset[i]
        assert feats.shape == (N_FRAMES_1S, 40) and n == N_FRAMES_1S and index == i and label == ks.labels[i]
    assert clips[0]["path"].endswith("_nohash_0.wav") and clips[1]["path"].endswith("_nohash_1.wav")


def test_features_are_the_clips_fbank_with_the_training_stats(synthetic):
    out = synthetic["a"]
    ks = load_keywords(out)
    train = load_packed(out / "features" / "train.safetensors")
    assert np.array_equal(ks.mean.numpy(), train["mean"].numpy()) and np.array_equal(ks.std.numpy(), train["std"].numpy())
    i = 101
    (ref,) = compute_features([ks.root / ks.clips[i]["path"]], FeaturesConfig(), progress=False)
    feats, _, n, _ = ks.dataset[i]
    np.testing.assert_allclose(feats[:n].numpy(), ref.astype(np.float32), rtol=0, atol=0)
    other = compute_features([ks.root / ks.clips[i + 1]["path"]], FeaturesConfig(), progress=False)[0]
    assert not np.allclose(feats[:n].numpy(), other.astype(np.float32))


def test_synthetic_keywords_with_a_real_corpus_source(tmp_path, capsys):
    """source: synthetic needs no synthetic corpus: the data.synthetic plan's test speakers say the words."""
    root = fsc_corpus(tmp_path / "fsc")
    synth = {"n_speakers": 4, "valid_speakers": 1, "test_speakers": 1, "workers": 1}
    data = {"source": "fsc", "root": str(root), "synthetic": synth, "keywords": {"words": ["up", "marvin"], "repeats": 1}}
    code, out, err = run_prepare(tmp_path, data, "prepared", capsys)
    assert code == 0, err
    (spk,) = [s.speaker_id for s in plan_speakers(SynthConfig(**synth), list_variants(espeak_paths()[1])) if s.split == "test"]
    ks = load_keywords(out)
    assert [c["path"] for c in ks.clips] == [f"up/{spk}_nohash_0.wav", f"marvin/{spk}_nohash_0.wav"]
    assert ks.labels == [0, 1] and {c["speaker"] for c in ks.clips} == {spk}
    assert sorted(p.name for p in (out / "corpus").iterdir()) == ["keywords"]  # no corpus was synthesised
    train = load_packed(out / "features" / "train.safetensors")
    assert np.array_equal(ks.mean.numpy(), train["mean"].numpy())


def test_fit_to_clip_centres_truncates_and_pads_with_matching_noise():
    ac = Acoustics(pitch=50, rate=170, espeak_seed=1, lead_s=0.1, trail_s=0.1, peak_dbfs=-6.0, snr_db=20.0,
                   noise_alpha=1.0, lowpass_hz=None, reverb_rt60_s=None, reverb_wet=None)  # fmt: skip
    ramp = np.arange(20000, dtype=np.int16)
    long = fit_to_clip(Rendered(ramp, (1000, 19000), ac), np.random.default_rng(0))
    assert np.array_equal(long, ramp[2000:18000])  # centred on the span (10000), both ends cut
    rng = np.random.default_rng(1)
    speech = (3000 * rng.standard_normal(4000)).astype(np.int16)
    short = fit_to_clip(Rendered(speech, (0, 4000), ac), np.random.default_rng(0)).astype(np.float64)
    assert len(short) == SR and np.array_equal(short[6000:10000], speech)
    pad = np.concatenate([short[:6000], short[10000:]])
    expected = np.mean(speech.astype(np.float64) ** 2) / (1 + 10**2)  # the power render_utterance's noise has
    assert 0.5 * expected < np.mean(pad**2) < 2 * expected


# ----------------------------------------------------------------------------- a real Speech Commands folder


def speech_commands(root: Path) -> Path:
    """yes / no / up by speakers 0a1b2c3d and ffee0011 (2 clips each), a background-noise folder; the testing
    list holds yes by 0a1b2c3d, all of no and up; the validation list yes by ffee0011."""
    for i, (word, spk, n) in enumerate((w, s, n) for w in ("yes", "no", "up") for s in ("0a1b2c3d", "ffee0011") for n in (0, 1)):
        (root / word).mkdir(parents=True, exist_ok=True)
        x = 0.2 * np.sin(2 * np.pi * (200 + 30 * i) * np.arange(SR - 800 * (i % 3)) / SR)
        sf.write(root / word / f"{spk}_nohash_{n}.wav", x.astype(np.float32), SR, subtype="PCM_16")
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    test = ["yes/0a1b2c3d_nohash_1.wav", "yes/0a1b2c3d_nohash_0.wav"]
    test += [f"{w}/{s}_nohash_{n}.wav" for w in ("up", "no") for s in ("ffee0011", "0a1b2c3d") for n in (1, 0)]
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "validation_list.txt").write_text("yes/ffee0011_nohash_0.wav\nyes/ffee0011_nohash_1.wav\n")
    return root


@pytest.mark.parametrize("words", [["up", "yes"], None])
def test_real_speech_commands_testing_list_only(tmp_path, capsys, words):
    gsc = speech_commands(tmp_path / "gsc")
    kw = {"source": "speech_commands", "root": str(gsc), "words": words}
    code, out, err = run_prepare(tmp_path, {"source": "fsc", "root": str(fsc_corpus(tmp_path / "fsc")), "keywords": kw},
                                 "prepared", capsys)  # fmt: skip
    assert code == 0, err
    ks = load_keywords(out)
    order = ["up", "yes"] if words else ["no", "up", "yes"]
    assert ks.words == order and ks.source == "speech_commands" and ks.root == gsc.resolve()
    expected = [(w, f"{w}/{s}_nohash_{n}.wav", s) for w in order
                for s in (("0a1b2c3d",) if w == "yes" else ("0a1b2c3d", "ffee0011")) for n in (0, 1)]  # fmt: skip
    assert [(c["word"], c["path"], c["speaker"]) for c in ks.clips] == expected
    assert ks.labels == [order.index(c["word"]) for c in ks.clips]
    lengths = [ks.dataset[i][2] for i in range(len(ks.dataset))]
    (ref,) = compute_features([gsc / ks.clips[-1]["path"]], FeaturesConfig(), progress=False)
    assert lengths[-1] == len(ref) and ks.dataset[0][0].shape == (max(lengths), 40) and min(lengths) < max(lengths)
    assert not (out / "corpus").exists()  # nothing is copied
    assert json.loads((out / "stats.json").read_text())["keywords"]["clips"] == len(expected)


def break_root(gsc: Path) -> tuple[dict, str, str]:
    return {"root": str(gsc / "nope")}, str(gsc / "nope"), "Speech Commands folder not found"


def break_word(gsc: Path) -> tuple[dict, str, str]:
    return {"words": ["yes", "cat"]}, str(gsc / "testing_list.txt"), "no clip of the word 'cat'"


def break_rate(gsc: Path) -> tuple[dict, str, str]:
    sf.write(gsc / "no" / "ffee0011_nohash_1.wav", np.zeros(8000, np.float32), 8000, subtype="PCM_16")
    return {}, str(gsc / "no" / "ffee0011_nohash_1.wav"), "sample rate is 8000 Hz, expected 16000 Hz"


def break_listing(gsc: Path) -> tuple[dict, str, str]:
    (gsc / "testing_list.txt").unlink()
    return {}, str(gsc / "testing_list.txt"), "missing"


@pytest.mark.parametrize("breaker", [break_root, break_word, break_rate, break_listing])
def test_bad_speech_commands_folder_is_one_line_and_no_output(tmp_path, capsys, breaker):
    gsc = speech_commands(tmp_path / "gsc")
    change, where, what = breaker(gsc)
    kw = {"source": "speech_commands", "root": str(gsc), "words": ["yes", "no"], **change}
    code, out, err = run_prepare(tmp_path, {"source": "fsc", "root": str(fsc_corpus(tmp_path / "fsc")), "keywords": kw},
                                 "prepared", capsys)  # fmt: skip
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {where}") and what in lines[0], err
    assert not out.exists() and not (tmp_path / "prepared.tmp").exists()


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "keywords, key, needle",
    [
        ({"source": "librispeech"}, "source", "expected one of 'synthetic', 'speech_commands', 'none'"),
        ({"words": []}, "words", "list at least one word"),
        ({"words": ["up", "down", "up"]}, "words", "'up' is listed twice"),
        ({"words": [True, "no"]}, "words[0]", "True is not a word: YAML reads an unquoted yes, no, on or off"),
        ({"words": ["up/down"]}, "words[0]", "use letters, digits"),
        ({"words": None}, "words", "needs source 'speech_commands'"),
        ({"repeats": 0}, "repeats", "must be >= 1"),
        ({"source": "speech_commands"}, "root", "is required with source 'speech_commands'"),
        ({"root": "/data/gsc"}, "root", "is read only with source 'speech_commands'"),
        ({"reps": 2}, "reps", "unknown key; allowed keys: source, root, words, repeats"),
    ],
)
def test_bad_keyword_params_name_the_key(tmp_path, keywords, key, needle):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"data": {"keywords": keywords}}))
    with pytest.raises(ParamsError) as info:
        load_prepare(tmp_path / "p.yaml")
    msg = str(info.value)
    assert msg.startswith(f"params: data.keywords.{key}: ") and needle in msg and "\n" not in msg, msg


def test_params_without_the_block_take_the_defaults_and_none_needs_no_words(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"data": {"source": "synthetic"}}))
    kw = load_prepare(tmp_path / "p.yaml").data.keywords
    assert (kw.source, kw.root, kw.words, kw.repeats) == ("synthetic", None, list(SPEECH_COMMANDS_WORDS), 2)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"data": {"keywords": {"source": "speech_commands", "root": "/x",
                                                                           "words": None}}}))  # fmt: skip
    assert load_prepare(tmp_path / "p.yaml").data.keywords.words is None
    shipped = load_prepare(Path(__file__).resolve().parents[1] / "params.yaml").data.keywords
    assert shipped.words == list(SPEECH_COMMANDS_WORDS) and shipped.source == "synthetic" and shipped.repeats == 2


def test_missing_keyword_folder_says_run_prepare(tmp_path):
    with pytest.raises(DataError, match=r"keywords: missing; run the prepare stage \(dvc repro prepare\)"):
        load_keywords(tmp_path)
