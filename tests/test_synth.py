"""The synthetic spoken-commands corpus (pipeline.data.synth) and its phrasing table.

The corpora are tiny (4 speakers x 31 utterances) so the whole file runs in seconds.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import wave
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import SynthConfig
from pipeline.core.atomic import MARKER
from pipeline.data.synth import synthesize_corpus, writer
from pipeline.data.synth.effects import PEAK_DBFS, coloured_noise, render_utterance, resample
from pipeline.data.synth.engine import BASE_VOICES, Espeak, espeak_paths, list_variants
from pipeline.data.synth.speakers import STREAM_ACOUSTICS, plan_speakers, plan_utterances, seeded_rng
from pipeline.data.phrasings import PHRASINGS, exclusive_words, phrasing_stats
from pipeline.data.schema import FSC_INTENTS, split_intent
from pipeline.errors import DataError, ParamsError, UserError

FSC_HEADER_LINE = ",path,speakerId,transcription,action,object,location"
SPLITS = ("train", "valid", "test")
# 4 speakers (2 train, 1 valid, 1 test) x 31 utterances: every split holds every intent once.
SMALL = dict(n_speakers=4, valid_speakers=1, test_speakers=1, utterances_per_speaker=31)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(root: Path, split: str) -> list[dict]:
    with open(root / "data" / f"{split}_data.csv", newline="") as f:
        return list(csv.DictReader(f))


def _read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return x, w.getframerate(), w.getnchannels(), w.getsampwidth()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict, SynthConfig]:
    cfg = SynthConfig(seed=0, workers=1, **SMALL)
    root = tmp_path_factory.mktemp("synth") / "fsc"
    stats = synthesize_corpus(root, cfg, progress=False)
    return root, stats, cfg


# ----------------------------------------------------------------------------- phrasings


def test_phrasing_table_sizes_and_form():
    assert tuple(PHRASINGS) == FSC_INTENTS
    counts = [len(p) for p in PHRASINGS.values()]
    assert min(counts) >= 5
    assert sum(counts) / len(counts) >= 7
    everything = [p for ps in PHRASINGS.values() for p in ps]
    assert len(set(everything)) == len(everything), "a phrasing is used twice"
    for p in everything:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", p), p
    stats = phrasing_stats()
    assert stats["phrasings"] == len(everything) and stats["min_per_intent"] == min(counts)


def test_keywords_alone_do_not_identify_intents():
    """A word owned by one intent may only be the entity that defines it (a language, an object).

    Compositional intents (lights/heat/volume/music/lamp x on/off/up/down x room) must share every
    word with another intent in most of their phrasings, and even an oracle that picks, for each
    phrasing, its best single word (mapped to that word's majority intent) stays far from 100 %.
    """
    excl = exclusive_words()
    owning = [intent for intent, words in excl.items() if words]
    assert len(owning) <= 10, owning
    entity_defined = {i for i in FSC_INTENTS if i.startswith("bring_") or i.startswith("change language_")}
    for intent in set(FSC_INTENTS) - entity_defined:
        phrases = PHRASINGS[intent]
        with_keyword = sum(any(w in excl[intent] for w in p.split()) for p in phrases)
        assert with_keyword / len(phrases) <= 0.2, (intent, excl[intent])
    # shared on purpose: these words occur in at least 3 intents each
    owners = defaultdict(set)
    for intent, phrases in PHRASINGS.items():
        for p in phrases:
            for w in p.split():
                owners[w].add(intent)
    for w in ("on", "off", "up", "down", "kitchen", "bring", "louder", "quieter", "warmer", "switch", "music"):
        assert len(owners[w]) >= 2, w
    assert all(len(owners[room]) == 4 for room in ("kitchen", "bedroom", "washroom"))
    # best single-word rule: each word votes for its majority intent; oracle choice of the word
    counts = defaultdict(Counter)
    for intent, phrases in PHRASINGS.items():
        for p in phrases:
            for w in set(p.split()):
                counts[w][intent] += 1
    majority = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    total = sum(len(p) for p in PHRASINGS.values())
    solved = sum(any(majority[w] == i for w in set(p.split())) for i, ps in PHRASINGS.items() for p in ps)
    assert solved / total < 0.8


# ----------------------------------------------------------------------------- plans (no audio)


def test_default_speakers_distinct_balanced_and_real_variants():
    cfg = SynthConfig()
    _, data = espeak_paths()
    variants = list_variants(data)
    folder = Path(data) / "voices" / "!v"
    speakers = plan_speakers(cfg, variants)
    assert len(speakers) == cfg.n_speakers >= 40
    assert len({(s.voice, s.variant) for s in speakers}) == len(speakers)
    assert all((folder / s.variant).is_file() for s in speakers)
    per_voice = Counter(s.voice for s in speakers)
    assert set(per_voice) == set(BASE_VOICES)
    assert max(per_voice.values()) - min(per_voice.values()) <= 1
    splits = Counter(s.split for s in speakers)
    n_train = cfg.n_speakers - cfg.valid_speakers - cfg.test_speakers
    assert splits == {"train": n_train, "valid": cfg.valid_speakers, "test": cfg.test_speakers}
    # n_variants shared timbres, each spoken by at least one training speaker
    assert len({s.variant for s in speakers}) == cfg.n_variants
    assert {s.variant for s in speakers} == {s.variant for s in speakers if s.split == "train"}
    # seeded: same seed same table, another seed another table
    assert plan_speakers(cfg, variants) == speakers
    cfg1 = SynthConfig(seed=1)
    assert plan_speakers(cfg1, variants) != speakers


@pytest.mark.parametrize("n, nv, nt, variants", [(48, 16, 8, 16), (20, 4, 4, 4), (12, 2, 2, 50), (8, 1, 1, 1)])
def test_every_held_out_speaker_has_its_variant_in_train(n, nv, nt, variants):
    cfg = SynthConfig(n_speakers=n, valid_speakers=nv, test_speakers=nt, n_variants=variants)
    cfg.validate("data.synthetic")
    speakers = plan_speakers(cfg, list_variants(espeak_paths()[1]))
    assert Counter(s.split for s in speakers) == {"train": n - nv - nt, "valid": nv, "test": nt}
    assert len({(s.voice, s.variant) for s in speakers}) == n
    train_variants = {s.variant for s in speakers if s.split == "train"}
    assert all(s.variant in train_variants for s in speakers)
    assert len(train_variants) == min(variants, n - nv - nt)


def test_default_plan_balances_intents_per_speaker_and_split():
    cfg = SynthConfig()
    speakers = plan_speakers(cfg, list_variants(espeak_paths()[1]))
    plans = plan_utterances(cfg, speakers)
    assert len(plans) == cfg.n_speakers * cfg.utterances_per_speaker
    assert len({p.uid for p in plans}) == len(plans)
    for s in speakers:
        c = Counter(p.intent for p in plans if p.speaker_index == s.index)
        assert set(c) == set(FSC_INTENTS) and max(c.values()) - min(c.values()) <= 1
    for p in plans[:50]:
        assert p.text in PHRASINGS[p.intent]


def test_negative_seed_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError, match="seed"):
        synthesize_corpus(tmp_path / "x", SynthConfig(seed=-1, **SMALL), progress=False)


# ----------------------------------------------------------------------------- signal processing


def test_resample_matches_analytic_sine_and_removes_above_nyquist():
    sr_in = 22050
    t = np.arange(int(0.5 * sr_in)) / sr_in
    x = np.sin(2 * np.pi * 1000 * t) + 0.5 * np.sin(2 * np.pi * 9500 * t)  # 9.5 kHz > 8 kHz
    y = resample(x, sr_in, 16000)
    assert len(y) == math.ceil(len(x) * 16000 / sr_in)
    t_out = np.arange(len(y)) / 16000
    mid = slice(800, len(y) - 800)  # away from the edges of the (non-periodic) clip
    err = y[mid] - np.sin(2 * np.pi * 1000 * t_out[mid])
    assert np.sqrt(np.mean(err**2)) < 1e-2  # the 9.5 kHz tone is gone, the 1 kHz tone intact


def test_coloured_noise_has_the_requested_spectral_slope():
    rng = np.random.default_rng(0)
    for alpha in (0.0, 1.0, 2.0):
        n = coloured_noise(rng, 1 << 16, alpha)
        assert np.mean(n**2) == pytest.approx(1.0, rel=1e-9)
        psd = np.abs(np.fft.rfft(n)) ** 2
        f = np.fft.rfftfreq(len(n), 1 / 16000)
        band = (f > 100) & (f < 7000)
        slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
        assert slope == pytest.approx(-alpha, abs=0.1)


def test_snr_of_added_noise_is_the_drawn_one_and_in_range(corpus):
    root, _, cfg = corpus
    speakers = plan_speakers(cfg, list_variants(espeak_paths()[1]))
    plans = [p for p in plan_utterances(cfg, speakers) if p.speaker_index == 0]
    spk = speakers[0]
    measured = []
    for lo, hi in ((cfg.snr_db_min, cfg.snr_db_max), (3.0, 4.0)):
        for utt in plans[:4]:
            out = {}
            for noisy in (True, False):
                with Espeak() as engine:  # a fresh engine per rendering: identical speech
                    engine.set_voice(spk.espeak_voice)
                    rng = seeded_rng(cfg.seed, STREAM_ACOUSTICS, spk.index, utt.index)
                    out[noisy] = render_utterance(engine, spk, utt.text, rng, (lo, hi), add_noise=noisy)
            clean = out[False].samples.astype(np.float64)
            noise = out[True].samples.astype(np.float64) - clean
            a, b = out[True].speech_span
            snr = 10 * np.log10(np.mean(clean[a:b] ** 2) / np.mean(noise**2))
            assert lo - 0.05 <= snr <= hi + 0.05
            assert snr == pytest.approx(out[True].acoustics.snr_db, abs=0.05)
            assert np.abs(noise).max() > 0
            measured.append(snr)
    assert np.ptp(measured[:4]) > 0.5  # the SNR really varies between utterances
    # the internal function is what the corpus used: utterance 0 of speaker 0 is byte-identical
    with Espeak() as engine:
        engine.set_voice(spk.espeak_voice)
        rng = seeded_rng(cfg.seed, STREAM_ACOUSTICS, spk.index, 0)
        first = render_utterance(engine, spk, plans[0].text, rng, (cfg.snr_db_min, cfg.snr_db_max))
    stored, *_ = _read_wav(root / plans[0].relpath)
    assert np.array_equal(first.samples, stored)


# ----------------------------------------------------------------------------- corpus on disk


def test_layout_header_and_rows(corpus):
    root, stats, cfg = corpus
    assert not root.with_name(root.name + ".tmp").exists()
    referenced = set()
    for split in SPLITS:
        path = root / "data" / f"{split}_data.csv"
        assert path.read_text().splitlines()[0] == FSC_HEADER_LINE
        rows = _rows(root, split)
        assert [int(r[""]) for r in rows] == list(range(len(rows)))
        assert len(rows) == stats["utterances"][split]
        for r in rows:
            m = re.fullmatch(r"wavs/speakers/(spk\d+)/(spk\d+_\d{4})\.wav", r["path"])
            assert m and m.group(1) == r["speakerId"] and m.group(2).startswith(r["speakerId"] + "_")
            assert (root / r["path"]).is_file()
            intent = f"{r['action']}_{r['object']}_{r['location']}"
            assert intent in FSC_INTENTS and split_intent(intent) == (r["action"], r["object"], r["location"])
            assert r["transcription"] in PHRASINGS[intent]
            referenced.add(r["path"])
    wavs = {str(p.relative_to(root)) for p in (root / "wavs" / "speakers").rglob("*.wav")}
    assert wavs == referenced
    assert len(wavs) == cfg.n_speakers * cfg.utterances_per_speaker
    assert {p.name for p in root.iterdir()} == {"wavs", "data", MARKER}
    assert (root / MARKER).read_text() == "synthetic-corpus\n"


def test_speaker_disjoint_splits_and_every_intent_everywhere(corpus):
    root, stats, cfg = corpus
    speakers = {split: {r["speakerId"] for r in _rows(root, split)} for split in SPLITS}
    assert len(speakers["valid"]) == cfg.valid_speakers and len(speakers["test"]) == cfg.test_speakers
    assert len(speakers["train"]) == cfg.n_speakers - cfg.valid_speakers - cfg.test_speakers
    assert not (speakers["train"] & speakers["valid"] or speakers["train"] & speakers["test"])
    assert not speakers["valid"] & speakers["test"]
    assert stats["speakers"] == {k: len(v) for k, v in speakers.items()}
    for split in SPLITS:
        intents = {f"{r['action']}_{r['object']}_{r['location']}" for r in _rows(root, split)}
        assert intents == set(FSC_INTENTS), split
    assert "none" in {r["location"] for r in _rows(root, "train")}


def test_wavs_are_16k_mono_pcm16_and_not_silent(corpus):
    root, stats, _ = corpus
    total = 0
    for path in sorted((root / "wavs").rglob("*.wav")):
        x, rate, channels, width = _read_wav(path)
        assert (rate, channels, width) == (16000, 1, 2)
        assert 0.5 < len(x) / rate < 6.0
        peak = np.abs(x.astype(np.float64)).max() / 32768
        assert peak > 10 ** (PEAK_DBFS[0] / 20) * 0.5  # at least the lowest drawn level, minus clip guard
        assert np.sqrt(np.mean((x / 32768.0) ** 2)) > 1e-3
        total += len(x)
    assert stats["hours"] == pytest.approx(total / 16000 / 3600)
    assert stats["distinct_phrasings"] > 50


def test_deterministic_across_worker_counts_and_seed_changes_audio(corpus, tmp_path):
    root, _, cfg = corpus
    again = synthesize_corpus(tmp_path / "two_workers", SynthConfig(seed=0, workers=2, **SMALL), progress=False)
    assert again["workers"] == 2
    reference = _digest(root)
    assert _digest(tmp_path / "two_workers") == reference
    synthesize_corpus(tmp_path / "seed1", SynthConfig(seed=1, workers=1, **SMALL), progress=False)
    other = _digest(tmp_path / "seed1")
    wav_names = [k for k in reference if k.endswith(".wav")]
    assert set(wav_names) == {k for k in other if k.endswith(".wav")}
    assert all(other[k] != reference[k] for k in wav_names)


# ----------------------------------------------------------------------------- failures


def test_failed_run_leaves_old_corpus_and_no_temporary(tmp_path, monkeypatch):
    root = tmp_path / "fsc"
    root.mkdir()
    (root / MARKER).write_text("synthetic-corpus\n")  # an earlier corpus: replaceable
    (root / "marker").write_text("previous corpus")
    calls = {"n": 0}
    real = writer.write_wav

    def failing(path, samples, rate=16000):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full")
        real(path, samples, rate)

    monkeypatch.setattr(writer, "write_wav", failing)
    with pytest.raises(OSError, match="disk full"):
        synthesize_corpus(root, SynthConfig(workers=1, **SMALL), progress=False)
    assert (root / "marker").read_text() == "previous corpus"
    assert not root.with_name("fsc.tmp").exists()


def test_a_folder_that_is_not_a_corpus_is_refused_and_kept(tmp_path):
    root = tmp_path / "fsc"
    root.mkdir()
    (root / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="not an output of synthetic-corpus"):
        synthesize_corpus(root, SynthConfig(workers=1, **SMALL), progress=False)
    assert [p.name for p in root.iterdir()] == ["thesis.tex"]
    assert not root.with_name("fsc.tmp").exists()


def test_missing_or_broken_espeak_is_one_line_data_error(tmp_path, monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "nope.so"))
    with pytest.raises(DataError, match="espeak-ng library not found") as exc:
        synthesize_corpus(tmp_path / "x", SynthConfig(workers=1, **SMALL), progress=False)
    assert "\n" not in str(exc.value)
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not a library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(bogus))
    with pytest.raises(DataError, match="cannot load the espeak-ng library"):
        synthesize_corpus(tmp_path / "x", SynthConfig(workers=1, **SMALL), progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()
