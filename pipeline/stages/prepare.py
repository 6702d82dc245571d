"""Stage ``prepare``: corpus -> log-Mel features, tokenizer and class-incremental task manifest.

Reads the params sections ``data``, ``features`` and ``split``. Writes one folder (default
``data/prepared``)::

    corpus/                      the synthesised corpus in FSC layout (source: synthetic only)
    corpus/keywords/             synthetic keyword clips, Google Speech Commands layout (data.keywords.source: synthetic)
    features/{train,valid,test}.safetensors   packed log-Mel frames (or raw samples) + offsets (pipeline.data.features)
    meta/{train,valid,test}.json one record per utterance: uid, speaker, label, label_id, transcript, n_frames
                                 (n_frames counts samples with features.kind: waveform)
    tokenizer.json               class tokens + transcript words (pipeline.data.tokenizer)
    tasks.json                   the class-incremental split that the train stages read, and the features'
                                 kind, so that a model that needs the other kind stops with one line
    keywords/                    the zero-shot keyword-spotting test set: manifest, clips, features with the
                                 training split's mean/std (pipeline.data.keywords; not read by the CIL stages)
    stats.json                   corpus size, audio hours, keyword clips, timings

Everything is built in ``<out>.tmp`` and renamed into place at the end (:func:`pipeline.core.atomic.atomic_dir`),
so a failed run leaves no folder that looks complete; an existing ``--out`` is replaced only if an earlier
prepare run wrote it (a mistyped path is refused, never deleted).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.config import PrepareParams, load_prepare
from pipeline.core.atomic import atomic_dir
from pipeline.data.corpus import SPLITS, Utterance
from pipeline.errors import DataError


#: what the stage writes at the top of --out (a folder of these, written before owner markers existed, is replaceable)
OUTPUT_ENTRIES = ("corpus", "features", "meta", "keywords", "tokenizer.json", "tasks.json", "stats.json")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="data/prepared", help="output folder (default: data/prepared)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_corpus(p: PrepareParams, work: Path, progress: bool) -> tuple[list[Utterance], list[str], str, dict]:
    """The utterances, the class names (index = class id), the corpus family and synthesis stats."""
    from pipeline.data.schema import FSC_INTENTS

    synth_stats: dict = {}
    if p.data.source == "synthetic":
        from pipeline.data.fsc import read_fsc
        from pipeline.data.synth import synthesize_corpus

        synth_stats = synthesize_corpus(work / "corpus", p.data.synthetic, progress=progress)
        synth_stats.pop("root", None)  # a path inside prepare's temporary folder: meaningless once renamed
        return read_fsc(work / "corpus"), list(FSC_INTENTS), "fsc", synth_stats
    if p.data.source == "fsc":
        from pipeline.data.fsc import read_fsc

        return read_fsc(Path(p.data.root)), list(FSC_INTENTS), "fsc", synth_stats
    from pipeline.data.slurp import read_slurp

    utts = read_slurp(Path(p.data.root), audio=p.data.slurp_audio)
    classes = sorted({u.label for u in utts if u.split == "train"})
    return utts, classes, "slurp", synth_stats


def check_splits(utts: list[Utterance], classes: list[str], where: str) -> dict[str, list[Utterance]]:
    by_split = {s: [u for u in utts if u.split == s] for s in SPLITS}
    for s, items in by_split.items():
        if not items:
            raise DataError(f"{where}: the {s} split is empty")
    known = set(classes)
    for s, items in by_split.items():
        bad = sorted({u.label for u in items} - known)
        if bad:
            raise DataError(f"{where}: the {s} split has class {bad[0]!r}, which is not among the training classes")
    missing = sorted(known - {u.label for u in by_split["train"]})
    if missing:
        raise DataError(f"{where}: class {missing[0]!r} has no training utterance")
    return by_split


def write_features(p: PrepareParams, by_split: dict[str, list[Utterance]], class_id: dict[str, int], work: Path,
                   progress: bool) -> tuple[dict, tuple]:
    """Features and metadata of every split; returns per-split utterance counts and audio seconds, and the
    (mean, std) stored with them."""
    import numpy as np

    from pipeline.data.features import compute_features, global_stats, save_packed, waveform_stats

    (work / "features").mkdir()
    (work / "meta").mkdir()
    # one worker pool for all splits: its start-up (a fresh interpreter per worker) is paid once
    flat = compute_features([u.audio_path for items in by_split.values() for u in items], p.features, progress=progress)
    feats, start = {}, 0
    for s, items in by_split.items():
        feats[s], start = flat[start : start + len(items)], start + len(items)
    wave = p.features.kind == "waveform"
    mean, std = waveform_stats() if wave else global_stats(feats["train"])
    step_s = 1 / p.features.sample_rate if wave else p.features.hop_ms / 1000  # seconds per stored row
    counts = {}
    for s, items in by_split.items():
        save_packed(work / "features" / f"{s}.safetensors", feats[s], mean, std, np.int16 if wave else np.float16)
        meta = [
            {"uid": u.uid, "speaker": u.speaker, "label": u.label, "label_id": class_id[u.label],
             "transcript": u.transcript, "n_frames": int(f.shape[0])}
            for u, f in zip(items, feats[s])
        ]
        (work / "meta" / f"{s}.json").write_text(json.dumps(meta))
        frames = sum(int(f.shape[0]) for f in feats[s])
        counts[s] = {"utterances": len(items), "speakers": len({u.speaker for u in items}),
                     "hours": round(frames * step_s / 3600, 3)}
    return counts, (mean, std)


def list_keywords(p: PrepareParams) -> tuple[list[str], list] | None:
    """A real Speech Commands set's words and clips, read (headers checked) before the slow part; else None."""
    from pipeline.data.speech_commands import read_speech_commands

    kw = p.data.keywords
    if kw.source != "speech_commands":
        return None
    return read_speech_commands(Path(kw.root), kw.words, p.features.sample_rate)


def write_keywords(p: PrepareParams, listed, stats: tuple, work: Path, progress: bool) -> dict:
    """The keyword test set (pipeline.data.keywords), its features stored with the training split's
    ``stats`` (mean, std); returns its stats.json entry."""
    import numpy as np

    from pipeline.data.features import compute_features
    from pipeline.data.keywords import FOLDER, write_keyword_set
    from pipeline.data.speech_commands import read_speech_commands

    kw = p.data.keywords
    entry: dict = {"source": kw.source}
    if kw.source == "none":
        write_keyword_set(work / FOLDER, "none", None, [], [])
        return entry
    if kw.source == "synthetic":
        from pipeline.data.synth.keywords import synthesize_keywords

        rel = "corpus/keywords"
        synth = synthesize_keywords(work / rel, p.data.synthetic, kw.words, kw.repeats, progress=progress)
        entry.update(synthesis_seconds=synth["seconds"], workers=synth["workers"])
        root, where = work / rel, rel
        words, clips = read_speech_commands(root, kw.words, p.features.sample_rate)
    else:
        root, where = Path(kw.root), str(Path(kw.root).resolve())
        words, clips = listed
    t0 = time.time()
    feats = compute_features([root / c.path for c in clips], p.features, progress=progress)
    entry["feature_seconds"] = round(time.time() - t0, 2)
    wave = p.features.kind == "waveform"
    write_keyword_set(work / FOLDER, kw.source, where, words, clips, feats, stats, np.int16 if wave else np.float16)
    step_s = 1 / p.features.sample_rate if wave else p.features.hop_ms / 1000
    entry.update(words=len(words), speakers=len({c.speaker for c in clips}), clips=len(clips),
                 audio_seconds=round(sum(int(f.shape[0]) for f in feats) * step_s, 1))
    return entry


def write_manifest(p: PrepareParams, by_split: dict[str, list[Utterance]], classes: list[str], family: str, work: Path) -> dict:
    from pipeline.data.splits import class_order, make_tasks

    tasks = make_tasks(p.split, classes, family)

    def per_task(split: str) -> list[int]:
        labels = [u.label for u in by_split[split]]
        return [sum(labels.count(classes[c]) for c in t) for t in tasks]

    manifest = {
        "source": p.data.source,
        "family": family,
        "preset": p.split.preset,
        "classes": classes,
        "class_order": class_order(p.split, classes),
        "tasks": tasks,
        "task_names": [[classes[c] for c in t] for t in tasks],
        "n_train_per_task": per_task("train"),
        "n_valid_per_task": per_task("valid"),
        "n_test_per_task": per_task("test"),
        "features": {"kind": p.features.kind, "sample_rate": p.features.sample_rate},
    }
    (work / "tasks.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(args) -> None:
    from pipeline.data.tokenizer import Tokenizer

    t0 = time.time()
    params = load_prepare(args.params)
    progress = not args.no_progress
    listed = list_keywords(params)
    with atomic_dir(Path(args.out), owner="prepare", legacy=OUTPUT_ENTRIES) as work:
        utts, classes, family, synth_stats = load_corpus(params, work, progress)
        where = "synthetic corpus" if params.data.source == "synthetic" else str(params.data.root)
        by_split = check_splits(utts, classes, where)
        manifest = write_manifest(params, by_split, classes, family, work)  # validates the split before the slow part
        t_feat = time.time()
        counts, train_stats = write_features(params, by_split, {c: i for i, c in enumerate(classes)}, work, progress)
        t_feat = time.time() - t_feat
        keywords = write_keywords(params, listed, train_stats, work, progress)
        Tokenizer.build(classes, [u.transcript for u in by_split["train"]]).save(work / "tokenizer.json")
        stats = {
            "splits": counts,
            "classes": len(classes),
            "tasks": len(manifest["tasks"]),
            "phrasings": len({u.transcript for u in utts}),
            "synthesis": synth_stats,
            "keywords": keywords,
            "feature_seconds": round(t_feat, 2),
            "seconds": round(time.time() - t0, 2),
        }
        (work / "stats.json").write_text(json.dumps(stats, indent=1))
    n = sum(c["utterances"] for c in counts.values())
    hours = sum(c["hours"] for c in counts.values())
    per_split = ", ".join(f"{s} {c['utterances']}" for s, c in counts.items())
    kw = f"{keywords['clips']} keyword clips of {keywords['words']} words" if "clips" in keywords else "no keyword set"
    print(
        f"prepare: {n} utterances ({per_split}), "
        f"{len(classes)} classes in {len(manifest['tasks'])} tasks, {hours:.2f} h of audio, {kw}, "
        f"{stats['seconds']:.1f} s"
    )
