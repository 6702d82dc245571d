"""params.yaml validation: every kind of mistake is one ParamsError naming the dotted key and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import PRESETS, SECTIONS, SplitConfig, load_prepare, load_train
from pipeline.errors import ParamsError, UserError

REPO = Path(__file__).resolve().parents[1]

# A valid train-side params file: the tests below break one thing at a time.
TRAIN_OK = {
    "seeds": [0, 1],
    "cil": {"strategies": ["finetune", "coconut"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "task0"}]},
    "recipes": {"finetune": {}, "coconut": {"replay": True, "contrastive": "nspt", "mm": True}},
}


def write(tmp_path: Path, params: dict | str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False))
    return path


def prepare_error(tmp_path: Path, params: dict | str) -> str:
    with pytest.raises(ParamsError) as info:
        load_prepare(write(tmp_path, params))
    msg = str(info.value)
    assert msg.startswith("params: ") and "\n" not in msg
    assert isinstance(info.value, UserError)
    return msg


def train_error(tmp_path: Path, params: dict) -> str:
    with pytest.raises(ParamsError) as info:
        load_train(write(tmp_path, params))
    msg = str(info.value)
    assert msg.startswith("params: ") and "\n" not in msg
    return msg


def with_train(**changes) -> dict:
    out = {k: v for k, v in TRAIN_OK.items()}
    out.update(changes)
    return out


# ----------------------------------------------------------------------------- the shipped file


def test_shipped_params_parse_with_both_loaders():
    p = load_prepare(REPO / "params.yaml")
    assert p.data.source == "synthetic" and p.split.preset == "fsc-6" and p.split.class_order == "paper"
    assert p.features.n_mels == 40 and isinstance(p.features.win_ms, float)
    s = p.data.synthetic
    assert s.valid_speakers + s.test_speakers < s.n_speakers

    t = load_train(REPO / "params.yaml")
    assert set(t.cil.strategies) <= set(t.recipes)
    # fsc-6 = 6 tasks; the cil.tasks chain must say so.
    assert [(x.k, x.prev) for x in t.cil.tasks] == [(0, "init")] + [(k, f"task{k - 1}") for k in range(1, 6)]
    # YAML merge keys: coconut+skd = coconut's settings plus S-KD.
    both = t.recipes["coconut+skd"]
    assert both.replay and both.contrastive == "nspt" and both.mm and both.skd
    assert not t.recipes["coconut"].skd and t.recipes["joint"].joint


def test_values_are_converted_and_defaults_fill_missing_sections(tmp_path):
    p = load_prepare(write(tmp_path, {"features": {"win_ms": 30, "hop_ms": 15}, "split": {
        "preset": None, "n_tasks": 2, "class_order": list(range(30, -1, -1))}}))  # fmt: skip
    assert p.features.win_ms == 30.0 and isinstance(p.features.win_ms, float)  # int -> float
    assert p.split.class_order == list(range(30, -1, -1))
    assert p.data.synthetic.n_speakers == 48  # absent section: the dataclass defaults
    assert load_prepare(write(tmp_path, "")).split == SplitConfig()


# ----------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("loader", [load_prepare, load_train])
def test_unknown_top_level_section(tmp_path, loader):
    with pytest.raises(ParamsError) as info:
        loader(write(tmp_path, {**TRAIN_OK, "slpit": {"preset": "fsc-3"}}))
    msg = str(info.value)
    assert msg.startswith("params: slpit: unknown top-level section; allowed sections: ")
    assert all(name in msg for name in SECTIONS)


@pytest.mark.parametrize(
    "params, key, allowed",
    [
        ({"data": {"synthetic": {"speakers": 10}}}, "data.synthetic.speakers", "n_speakers"),
        ({"data": {"sauce": "fsc"}}, "data.sauce", "source, root, slurp_audio, synthetic"),
        ({"features": {"n_mel": 80}}, "features.n_mel", "n_mels"),
        ({"split": {"tasks": 3}}, "split.tasks", "n_tasks"),
    ],
)
def test_unknown_nested_key_prepare(tmp_path, params, key, allowed):
    msg = prepare_error(tmp_path, params)
    assert msg.startswith(f"params: {key}: unknown key; allowed keys: ") and allowed in msg


def test_unknown_nested_key_train(tmp_path):
    msg = train_error(tmp_path, with_train(model={"layers": 2}))
    assert msg.startswith("params: model.layers: unknown key") and "encoder_layers" in msg
    recipes = {**TRAIN_OK["recipes"], "coconut": {"replay": True, "lamda_mm": 0.5}}
    msg = train_error(tmp_path, with_train(recipes=recipes))
    assert msg.startswith("params: recipes.coconut.lamda_mm: unknown key") and "lambda_mm" in msg
    msg = train_error(tmp_path, with_train(cil={**TRAIN_OK["cil"], "tasks": [{"k": 0, "prev": "init", "x": 1}]}))
    assert msg.startswith("params: cil.tasks[0].x: unknown key; allowed keys: k, prev")


# ----------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"data": {"synthetic": {"n_speakers": "48"}}}, "data.synthetic.n_speakers: expected an integer, got '48'"),
        ({"data": {"synthetic": {"n_speakers": True}}}, "data.synthetic.n_speakers: expected an integer, got True"),
        ({"data": {"synthetic": {"n_speakers": 4.5}}}, "data.synthetic.n_speakers: expected an integer, got 4.5"),
        ({"features": {"win_ms": "25ms"}}, "features.win_ms: expected a number, got '25ms'"),
        ({"features": {"hop_ms": False}}, "features.hop_ms: expected a number, got False"),
        ({"data": {"source": "librispeech"}}, "data.source: expected one of 'synthetic', 'fsc', 'slurp', got 'librispeech'"),
        ({"split": {"preset": None, "n_tasks": "3"}}, "split.n_tasks: expected an integer or null, got '3'"),
        ({"split": {"class_order": "shuffled"}}, "split.class_order: expected one of 'paper', 'sorted', 'random' or a list"),
        ({"split": {"preset": None, "n_tasks": 3, "class_order": [0, "a"]}}, "split.class_order: expected"),
        ({"data": {"synthetic": [1, 2]}}, "data.synthetic: expected a mapping, got [1, 2]"),
        ({"features": 5}, "features: expected a mapping, got 5"),
    ],
)
def test_wrong_type_prepare(tmp_path, params, expected):
    assert prepare_error(tmp_path, params).startswith(f"params: {expected}")


def test_wrong_type_train(tmp_path):
    assert train_error(tmp_path, with_train(train={"lr": True})).startswith("params: train.lr: expected a number, got True")
    assert train_error(tmp_path, with_train(model={"subsample": 3})).startswith(
        "params: model.subsample: expected one of 2, 4, 8, got 3"
    )
    assert train_error(tmp_path, with_train(seeds="0")).startswith("params: seeds: expected a list of an integer")
    msg = train_error(tmp_path, with_train(recipes=["finetune"]))
    assert msg.startswith("params: recipes: expected a mapping of names to a mapping")


def test_not_a_mapping_or_not_yaml(tmp_path):
    assert "expected a mapping at the top level" in prepare_error(tmp_path, "- a\n- b\n")
    assert "not valid YAML" in prepare_error(tmp_path, "data: {source: [\n")
    with pytest.raises(ParamsError, match="file not found"):
        load_prepare(tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- impossible values: prepare


@pytest.mark.parametrize(
    "params, key, needle",
    [
        # speakers: valid + test must leave some for training
        ({"data": {"synthetic": {"n_speakers": 10, "valid_speakers": 4, "test_speakers": 6}}},
         "data.synthetic.n_speakers", "must exceed valid_speakers + test_speakers (10)"),
        ({"data": {"synthetic": {"valid_speakers": 0}}}, "data.synthetic.valid_speakers", ">= 1"),
        ({"data": {"synthetic": {"n_variants": 5}}}, "data.synthetic.n_variants", "too few variants for 48 speakers"),
        ({"data": {"synthetic": {"n_variants": 0}}}, "data.synthetic.n_variants", "must be >= 1"),
        ({"data": {"synthetic": {"snr_db_min": 40.0}}}, "data.synthetic.snr_db_min", "must be <= snr_db_max"),
        ({"data": {"source": "fsc"}}, "data.root", "is required with source 'fsc'"),
        ({"features": {"win_ms": 5.0}}, "features.win_ms", "need win_ms >= hop_ms > 0"),
        ({"features": {"n_mels": 0}}, "features.n_mels", "must be in [1, 256]"),
        # split
        ({"split": {"preset": None, "n_tasks": 32}}, "split.n_tasks",
         "must be at most the number of classes (31), got 32"),
        ({"split": {"preset": None, "n_tasks": 0}}, "split.n_tasks", "must be >= 1"),
        ({"split": {"preset": None, "n_tasks": 3, "class_order": list(range(30))}}, "split.class_order",
         "must be a permutation of 0..30 (31 classes in this corpus), got 30 entries"),
        ({"split": {"preset": None, "n_tasks": 3, "class_order": [0] * 31}}, "split.class_order", "permutation of 0..30"),
        ({"split": {"preset": "fsc-6", "n_tasks": 3}}, "split.preset",
         "set either a preset or n_tasks / initial_increment / increment, not both"),
        ({"split": {"preset": "fsc-7"}}, "split.preset", "expected one of fsc-3, fsc-6, fsc-10, slurp-3, slurp-6 or null"),
        ({"split": {"preset": "slurp-3"}}, "split.preset",
         "'slurp-3' is for slurp corpora but data.source is 'synthetic'; use one of fsc-3, fsc-6, fsc-10 or null"),
        ({"data": {"source": "slurp", "root": "/nowhere"}, "split": {"preset": "fsc-6", "class_order": "sorted"}},
         "split.preset", "'fsc-6' is for fsc corpora but data.source is 'slurp'; use one of slurp-3, slurp-6 or null"),
        ({"data": {"source": "slurp", "root": "/nowhere"}, "split": {"preset": "slurp-3"}}, "split.class_order",
         "'paper' is the fixed FSC order"),
        ({"split": {"preset": None, "initial_increment": 10, "increment": 6}}, "split.increment",
         "31 classes cannot be cut into a first task of 10 and further tasks of 6"),
        ({"split": {"preset": None, "initial_increment": 40, "increment": 1}}, "split.increment",
         "cannot be cut into a first task of 40"),
        ({"split": {"preset": None, "initial_increment": 11}}, "split.increment",
         "must be an integer >= 1 (give initial_increment and increment together)"),
        ({"split": {"preset": None}}, "split.n_tasks", "without a preset, give n_tasks, or initial_increment and increment"),
    ],
)  # fmt: skip
def test_impossible_values_prepare(tmp_path, params, key, needle):
    msg = prepare_error(tmp_path, params)
    assert msg.startswith(f"params: {key}: ") and needle in msg


def test_every_fsc_preset_and_fitting_increments_load(tmp_path):
    for name, preset in PRESETS.items():
        source = {"source": "slurp", "root": "/nowhere"} if preset["family"] == "slurp" else {}
        order = "sorted" if preset["family"] == "slurp" else "paper"
        p = load_prepare(write(tmp_path, {"data": source, "split": {"preset": name, "class_order": order}}))
        assert p.split.preset == name
    p = load_prepare(write(tmp_path, {"split": {"preset": None, "initial_increment": 16, "increment": 5}}))
    assert (p.split.initial_increment, p.split.increment) == (16, 5)


# ----------------------------------------------------------------------------- impossible values: train


@pytest.mark.parametrize(
    "changes, key, needle",
    [
        ({"recipes": {"finetune": {}, "coconut": {"contrastive": "nspt"}}}, "recipes.coconut.contrastive",
         "works on rehearsal samples: needs replay: true"),
        ({"recipes": {"finetune": {}, "coconut": {"skd": True}}}, "recipes.coconut.skd", "needs replay: true"),
        ({"recipes": {"finetune": {"joint": True, "replay": True}, "coconut": {}}}, "recipes.finetune.joint",
         "takes no replay or regularisation switches"),
        ({"recipes": {"finetune": {"replay": True, "buffer_size": 12.5}, "coconut": {}}}, "recipes.finetune.buffer_size",
         "a count must be a whole number"),
        ({"cil": {"strategies": ["finetune", "icarl"], "tasks": [{"k": 0, "prev": "init"}]}}, "cil.strategies",
         "'icarl' has no recipe under recipes: (known: finetune, coconut)"),
        ({"cil": {"strategies": ["finetune", "finetune"], "tasks": [{"k": 0, "prev": "init"}]}}, "cil.strategies",
         "names must be unique"),
        ({"recipes": {"first": {}}, "cil": {"strategies": ["first"], "tasks": [{"k": 0, "prev": "init"}]}},
         "cil.strategies", "'first' names stage first's folder models/cil/first"),
        ({"cil": {"strategies": ["finetune"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "init"}]}},
         "cil.tasks[1]", "expected {k: 1, prev: task0}, got {k: 1, prev: init}"),
        ({"cil": {"strategies": ["finetune"], "tasks": [{"k": 1, "prev": "task0"}]}}, "cil.tasks[0]",
         "expected {k: 0, prev: init}"),
        ({"cil": {"strategies": ["finetune"], "tasks": []}}, "cil.tasks", "list at least one task"),
        ({"model": {"d_model": 100, "heads": 3}}, "model.d_model", "must be divisible by heads (3)"),
        ({"train": {"batch_size": 1}}, "train.batch_size", "must be >= 2"),
        ({"train": {"lr_final": 1.5}}, "train.lr_final", "must be in [0, 1]"),
        ({"train": {"label_smoothing": 1.0}}, "train.label_smoothing", "must be in [0, 1)"),
        ({"train": {"lr_schedule": "step"}}, "train.lr_schedule", "constant"),
        ({"seeds": [1, 1]}, "seeds", "list one or more distinct integers"),
    ],
)  # fmt: skip
def test_impossible_values_train(tmp_path, changes, key, needle):
    msg = train_error(tmp_path, with_train(**changes))
    assert msg.startswith(f"params: {key}: ") and needle in msg


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "params, key",
    [
        ({"data": {"synthetic": {"speakers": 10}}}, "data.synthetic.speakers"),
        ({"split": {"preset": None, "n_tasks": 40}}, "split.n_tasks"),
    ],
)
def test_cli_bad_params_one_line_exit_2_no_work(tmp_path, params, key):
    bad = write(tmp_path, params)
    out = tmp_path / "prepared"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "prepare", "--params", str(bad), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: params: {key}: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not (tmp_path / "prepared.tmp").exists()


# ----------------------------------------------------------------------------- names that become paths


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/abs", ".hidden", "a..b", "", "x" * 65, "sp ace"])
def test_a_strategy_name_that_could_escape_models_is_refused(tmp_path, name):
    """One name rule (pipeline.core.params.check_name) for recipes and cil.strategies, before any stage writes."""
    recipes = {**TRAIN_OK["recipes"], name: {}}
    msg = train_error(tmp_path, with_train(recipes=recipes, cil={**TRAIN_OK["cil"], "strategies": [name]}))
    assert msg.startswith(("params: recipes.", "params: cil.strategies")) and "letters, digits" in msg


def test_the_evaluate_and_train_stages_share_the_name_rule(tmp_path):
    from pipeline.core.params import check_name

    for ok in ("coconut+skd", "replay-2pct", "ewc_0.5", "A1"):
        assert check_name(ok, "k") == ok
    p = write(tmp_path, with_train(cil={**TRAIN_OK["cil"], "strategies": [".."]}))
    assert subprocess_error(["evaluate", "--params", str(p), "--models-dir", str(tmp_path / "m"),
                             "--prepared", str(tmp_path / "d"), "--out", str(tmp_path / "r")]).startswith(
        "error: params: cil.strategies: '..'")
    assert not any(f.name in ("m", "r") for f in tmp_path.iterdir())  # nothing written


def subprocess_error(argv: list[str]) -> str:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    return res.stderr.strip()
