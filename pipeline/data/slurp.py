"""Reader of SLURP (Spoken Language Understanding Resource Package).

Layout accepted (both ways people store it are found by checking which exists)::

    annotations: root/{train,devel,test,train_synthetic}.jsonl
                 or root/dataset/slurp/*.jsonl   (the layout of the SLURP git repository)
    audio:       root/slurp_real/, root/slurp_synth/
                 or root/audio/slurp_real/, root/audio/slurp_synth/  (download_audio.sh's layout)

Each jsonl line is one recording-set: {"slurp_id", "sentence", "scenario", "action", "intent",
"entities", "recordings": [{"file": "audio-xxx.flac", "wer", "ent_wer", "status"}, ...], ...}.
One :class:`Utterance` is made per recording:

* ``uid``: the recording's file stem (``audio-1434542201-headset``). Synthetic recordings get
  ``synth-<stem>`` so that a synthetic and a real file can never share a uid.
* ``split``: train / valid / test (SLURP's ``devel`` is ``valid``).
* ``speaker``: the jsonl carries no speaker id. When SLURP's ``metadata.json`` sits next to the
  jsonl files, its ``usrid`` of the recording gives ``user-<usrid>``; otherwise ``set-<slurp_id>``
  (the recording-set id: it groups the recordings of one sentence, it is not a person).
  Synthetic recordings have speaker ``synthetic``.
* ``transcript``: ``sentence`` normalised as for FSC (:func:`pipeline.data.fsc.normalize_transcript`).
* ``label``: the ``scenario`` (the class of class-incremental learning).

``audio`` selects the training recordings: ``"real"`` (train.jsonl + slurp_real), ``"synth"``
(train_synthetic.jsonl + slurp_synth) or ``"both"``. Valid and test are always the real
recordings of devel.jsonl / test.jsonl (SLURP has no synthetic valid/test set).

A recording file listed twice (SLURP lists a few files in more than one recording-set) is kept once,
at its first listing in the order train, valid, test, with a warning giving the count.

The classes are the scenarios seen in train; a valid/test scenario absent from train is an error.
:data:`SLURP_SCENARIOS` (the 18 published scenarios) is used only to warn about unexpected names.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

from pipeline.data.corpus import Utterance
from pipeline.data.fsc import normalize_transcript
from pipeline.data.jsonl import json_objects
from pipeline.errors import DataError, ParamsError

# The 18 scenarios of the SLURP release (for a validation warning only; the classes come from train).
SLURP_SCENARIOS: frozenset[str] = frozenset(
    {
        "alarm", "audio", "calendar", "cooking", "datetime", "email", "general", "iot", "lists",
        "music", "news", "play", "qa", "recommendation", "social", "takeaway", "transport", "weather",
    }
)  # fmt: skip
assert len(SLURP_SCENARIOS) == 18

AUDIO_CHOICES = ("real", "synth", "both")
SPLIT_FILES = {"train": "train.jsonl", "valid": "devel.jsonl", "test": "test.jsonl"}
SYNTH_TRAIN_FILE = "train_synthetic.jsonl"
REAL_DIR, SYNTH_DIR = "slurp_real", "slurp_synth"
REQUIRED_KEYS = ("slurp_id", "sentence", "scenario", "recordings")


def read_slurp(root: Path, audio: str = "real") -> list[Utterance]:
    """Read a SLURP copy at ``root`` into one Utterance per recording (train, then valid, then test).

    ``audio`` is ``"real"``, ``"synth"`` or ``"both"`` and selects the training recordings (see the
    module docstring); another value raises :class:`ParamsError`. Raises :class:`DataError` (one
    line naming the file) for a missing root, jsonl file or audio folder, an invalid JSON line (with
    its line number), a missing or mistyped key, missing audio files (the first one and the count),
    an empty split, or a valid/test scenario that train lacks.
    """
    if audio not in AUDIO_CHOICES:
        raise ParamsError(f"data.slurp_audio: {audio!r} is not one of {', '.join(AUDIO_CHOICES)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: SLURP root folder not found (data.root must hold the jsonl files and slurp_real/)")
    root = root.resolve()
    ann_dir = _annotation_dir(root)
    speakers = _read_speakers(ann_dir / "metadata.json")

    # (split, jsonl file, audio folder name, synthetic?)
    sources: list[tuple[str, Path, str, bool]] = []
    if audio in ("real", "both"):
        sources.append(("train", ann_dir / SPLIT_FILES["train"], REAL_DIR, False))
    if audio in ("synth", "both"):
        sources.append(("train", ann_dir / SYNTH_TRAIN_FILE, SYNTH_DIR, True))
    sources += [(s, ann_dir / SPLIT_FILES[s], REAL_DIR, False) for s in ("valid", "test")]

    audio_dirs = {name: _audio_dir(root, name) for name in {src[2] for src in sources}}
    utterances: list[Utterance] = []
    listed_in: dict[Path, Path] = {}  # audio path -> the jsonl listing it (for the missing-file error)
    scenario_at: dict[str, dict[str, str]] = {}  # split -> scenario -> "file:line" of its first row
    duplicates = 0
    for split, jsonl, audio_name, synthetic in sources:
        seen_scenarios = scenario_at.setdefault(split, {})
        for where, rec in _read_jsonl(jsonl):
            scenario = rec["scenario"]
            if rec["recordings"]:  # a scenario counts in a split only with a recording there
                seen_scenarios.setdefault(scenario, where)
            transcript = normalize_transcript(rec["sentence"])
            for file in rec["recordings"]:
                path = audio_dirs[audio_name] / file
                if path in listed_in:
                    duplicates += 1
                    continue
                listed_in[path] = jsonl
                stem = Path(file).stem
                if synthetic:
                    uid, speaker = f"synth-{stem}", "synthetic"
                else:
                    usrid = speakers.get(file)
                    uid, speaker = stem, (f"user-{usrid}" if usrid is not None else f"set-{rec['slurp_id']}")
                utterances.append(Utterance(uid, split, speaker, path, transcript, scenario))

    for split in ("train", "valid", "test"):
        if not any(u.split == split for u in utterances):
            files = ", ".join(str(src[1]) for src in sources if src[0] == split)
            raise DataError(f"{files}: SLURP {split} split has no recordings")
    train_scenarios = scenario_at["train"]
    for split in ("valid", "test"):
        for scenario, where in scenario_at[split].items():
            if scenario not in train_scenarios:
                raise DataError(f"{where}: scenario {scenario!r} does not occur in train (classes come from train)")
    unknown = sorted(set().union(*scenario_at.values()) - SLURP_SCENARIOS)
    if unknown:
        warnings.warn(f"{ann_dir}: scenario(s) outside SLURP's 18: {', '.join(unknown)}", stacklevel=2)
    if duplicates:
        warnings.warn(f"{ann_dir}: {duplicates} recording(s) listed more than once were kept once", stacklevel=2)

    missing = [u.audio_path for u in utterances if not u.audio_path.is_file()]
    if missing:
        raise DataError(
            f"{missing[0]}: audio file listed in {listed_in[missing[0]]} is missing "
            f"({len(missing)} of {len(utterances)} listed audio files are missing)"
        )
    return utterances


def _annotation_dir(root: Path) -> Path:
    """The folder holding the jsonl files: ``root`` or ``root/dataset/slurp`` (whichever has them)."""
    names = [*SPLIT_FILES.values(), SYNTH_TRAIN_FILE]
    for cand in (root, root / "dataset" / "slurp"):
        if any((cand / n).is_file() for n in names):
            return cand
    raise DataError(
        f"{root}: no SLURP annotations found (expected {', '.join(names)} in it or in its dataset/slurp/)"
    )


def _audio_dir(root: Path, name: str) -> Path:
    """The audio folder ``name`` (slurp_real / slurp_synth): ``root/name`` or ``root/audio/name``."""
    for cand in (root / name, root / "audio" / name):
        if cand.is_dir():
            return cand
    raise DataError(f"{root / name}: SLURP audio folder not found (nor {root / 'audio' / name})")


def _read_jsonl(path: Path):
    """Yield ("file:line", record) for each non-blank line of a SLURP jsonl, with its keys checked.

    ``record["recordings"]`` is replaced by the list of file names.
    """
    if not path.is_file():
        raise DataError(f"{path}: SLURP annotation file not found")
    for where, rec in json_objects(path):
        absent = [k for k in REQUIRED_KEYS if k not in rec]
        if absent:
            raise DataError(f"{where}: missing key(s) {', '.join(absent)}")
        for key in ("sentence", "scenario"):
            if not isinstance(rec[key], str) or not rec[key].strip():
                raise DataError(f"{where}: {key!r} must be a non-empty string, got {rec[key]!r}")
        recordings = rec["recordings"]
        if not isinstance(recordings, list):
            raise DataError(f"{where}: 'recordings' must be a list, got {type(recordings).__name__}")
        files = []
        for i, r in enumerate(recordings):
            file = r.get("file") if isinstance(r, dict) else None
            if not isinstance(file, str) or not file.strip():
                raise DataError(f"{where}: recordings[{i}] lacks a 'file' name")
            files.append(file.strip())
        yield where, {**rec, "scenario": rec["scenario"].strip(), "recordings": files}


def _read_speakers(path: Path) -> dict[str, str]:
    """Map recording file -> usrid from SLURP's optional metadata.json ({} when the file is absent).

    metadata.json: {"<slurp_id>": {"recordings": {"audio-xxx.flac": {"usrid": "...", ...}, ...}, ...}, ...}.
    Entries without a usrid are skipped (their recordings fall back to ``set-<slurp_id>``).
    """
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err}); delete or fix it (it only provides speaker ids)") from err
    speakers: dict[str, str] = {}
    records = meta.values() if isinstance(meta, dict) else []
    for record in records:
        recordings: Optional[dict] = record.get("recordings") if isinstance(record, dict) else None
        if not isinstance(recordings, dict):
            continue
        for file, info in recordings.items():
            if isinstance(info, dict) and info.get("usrid") not in (None, ""):
                speakers[file] = str(info["usrid"])
    return speakers
