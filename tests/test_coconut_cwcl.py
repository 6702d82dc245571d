"""COCONUT with a frozen text target: recipes ``coconut-cwcl`` (CWCL soft targets) and ``coconut-lit`` (one-hot).

The audio-text (MM) term aligns ``model.frozen_text_head(audio pooled)`` with the frozen text tower's cached
embedding of each utterance's transcript (the embed stage's ``text/transcripts`` set). Checked here: the
recipe's validation lines, the first-task grouping, the term's value against the losses on exactly the rows
of the batch's utterances, that the frozen rows are never trained, and end to end through the stages (two
tasks, adoption of stage first, resume after kill -9, a missing or stale cache, the cache in the fingerprint).
The tiny caches here hold random unit rows of 24 dimensions: the head's size comes from the cache file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_train import TINY, kill_after_epoch

from pipeline.__main__ import main as cli
from pipeline.config import Recipe, load_train
from pipeline.continual.first_task import first_task_groups, first_task_recipe
from pipeline.data.embeddings import EmbeddingSet, load_embeddings, write_set
from pipeline.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]
DIM = 24  # not MiniLM's 384: the head must take its size from the cache
COCONUT = TINY["recipes"]["coconut"]
RECIPES = {**TINY["recipes"], "coconut-cwcl": {**COCONUT, "mm_target": "frozen_text", "mm_loss": "cwcl"},
           "coconut-lit": {**COCONUT, "mm_target": "frozen_text"}}


# ----------------------------------------------------------------------------- params


def _params_error(tmp_path: Path, recipe: dict) -> str:
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({**TINY, "recipes": {"bad": recipe}, "cil": {**TINY["cil"], "strategies": ["bad"]}}))
    with pytest.raises(ParamsError) as exc:
        load_train(f)
    return str(exc.value)


@pytest.mark.parametrize("recipe, key, words", [
    ({"mm": True, "mm_loss": "cwcl"}, "recipes.bad.mm_loss", "needs mm_target: frozen_text"),
    ({"mm_target": "frozen_text"}, "recipes.bad.mm_target", "needs mm: true"),
    ({"mm_target": "frozen_text", "mm_loss": "cwcl"}, "recipes.bad.mm_target", "needs mm: true"),
    ({"mm": True, "mm_target": "minilm"}, "recipes.bad.mm_target", "'minilm'"),
    ({"mm": True, "mm_target": "frozen_text", "mm_loss": "soft"}, "recipes.bad.mm_loss", "'soft'"),
])
def test_recipe_validation_is_one_line_naming_the_key(tmp_path, recipe, key, words):
    msg = _params_error(tmp_path, recipe)
    assert msg.startswith(f"params: {key}: ") and words in msg and "\n" not in msg, msg


def test_shipped_recipes():
    p = load_train(ROOT / "params.yaml")
    cwcl, lit, coconut = p.recipes["coconut-cwcl"], p.recipes["coconut-lit"], p.recipes["coconut"]
    assert (cwcl.mm_target, cwcl.mm_loss) == ("frozen_text", "cwcl") and (lit.mm_target, lit.mm_loss) == ("frozen_text", "infonce")
    assert (coconut.mm_target, coconut.mm_loss) == ("model", "infonce")
    # everything else is COCONUT's
    for name in ("mm_target", "mm_loss"):
        setattr(cwcl, name, getattr(coconut, name))
        setattr(lit, name, getattr(coconut, name))
    assert cwcl == coconut and lit == coconut
    assert "coconut-cwcl" in p.cil.strategies


def test_first_task_grouping():
    """coconut-cwcl and coconut-lit each train their own first task (the MM target and loss act on task 0); the
    other strategies are grouped as before."""
    p = load_train(ROOT / "params.yaml")
    before = ["finetune", "replay", "coconut", "coconut+skd", "joint", "lwf", "coconut-no-mm"]
    groups = first_task_groups(p.recipes, before + ["coconut-cwcl", "coconut-lit"])
    assert [m for _, m in groups] == [m for _, m in first_task_groups(p.recipes, before)] + [["coconut-cwcl"], ["coconut-lit"]]
    assert [m for _, m in groups][:2] == [["finetune", "replay", "joint", "lwf", "coconut-no-mm"], ["coconut", "coconut+skd"]]
    assert groups[2][0] == Recipe(mm=True, lambda_mm=0.3, tau_mm=0.1, mm_target="frozen_text", mm_loss="cwcl")
    # without mm they act on nothing
    assert first_task_recipe(Recipe(mm_target="frozen_text", mm_loss="cwcl", replay=True)) == Recipe()
    default = first_task_groups(p.recipes, p.cil.strategies)
    assert ["coconut-cwcl"] in [m for _, m in default]


# ----------------------------------------------------------------------------- the MM term on a small model


def _cache(transcripts: list[str], seed: int = 0) -> tuple[EmbeddingSet, list[dict]]:
    """A transcripts set over the distinct ``transcripts`` (random unit rows, rows not in utterance order) and
    the split's meta rows."""
    distinct = sorted(set(transcripts), reverse=True)
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(len(distinct), DIM, generator=g), dim=1).half()
    row = {t: i for i, t in enumerate(distinct)}
    refs = {"train": [row[t] for t in transcripts]}
    return EmbeddingSet(emb, distinct, "random", distinct, refs), [{"transcript": t} for t in transcripts]


def _batch(model):
    from test_model import batch

    feats, lens, tokens = batch([40, 64, 23, 57, 31, 50, 44, 36])
    y = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    rehearsal = torch.tensor([1, 0, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    index = torch.tensor([7, 2, 9, 0, 5, 3, 11, 6])  # positions in the training split, not 0..B-1
    return model(feats, lens, tokens), feats, lens, tokens, y, rehearsal, index


@pytest.mark.parametrize("mm_loss", ["cwcl", "infonce"])
def test_mm_term_is_the_loss_on_the_head_and_the_frozen_rows_of_those_utterances(mm_loss):
    from pipeline.continual.coconut import Coconut, add_frozen_text_head, frozen_transcripts
    from pipeline.losses.cwcl import ContrastiveLoss, CWCLLoss
    from test_model import make

    # 12 training utterances, 5 transcripts; utterances 2 and 5 say the same (an exact duplicate)
    said = ["turn on the lights", "lights on", "heat up", "too loud", "lights on", "heat up", "volume down",
            "bring shoes", "lamp off", "heat up", "too loud", "lamp off"]
    cache, meta = _cache(said)
    table = frozen_transcripts(cache, meta, "cache")
    for i, t in enumerate(said):  # row i is utterance i's transcript, through refs
        assert torch.equal(table[i], cache.emb[cache.index()[t]].float())
    model = make("gru").train()
    add_frozen_text_head(model, table.shape[1], seed=0)
    assert model.frozen_text_head[-1].out_features == DIM
    algo = Coconut("nspt", 0.1, 0.3, True, 0.2, 0.7, mm_loss, table)
    algo.start_task(model, has_past=True)
    out, feats, lens, tokens, y, rehearsal, index = _batch(model)
    terms = algo.penalty(model, out, feats, lens, tokens, y, rehearsal, index)
    assert set(terms) == {"contrastive", "mm"}

    current = ~rehearsal
    rows = algo.frozen_rows(index[current])
    expected_rows = torch.stack([cache.emb[cache.refs["train"][int(i)]].float() for i in index[current]])
    assert torch.equal(rows, expected_rows)
    audio = model.frozen_text_head(out.audio_pooled[current])
    loss = (CWCLLoss if mm_loss == "cwcl" else ContrastiveLoss)(temperature=0.2)
    torch.testing.assert_close(terms["mm"], 0.7 * loss(audio, expected_rows), rtol=0, atol=0)
    other = (ContrastiveLoss if mm_loss == "cwcl" else CWCLLoss)(temperature=0.2)
    assert not torch.allclose(terms["mm"], 0.7 * other(audio, expected_rows))  # the two losses differ here
    # the model's own text tower takes no part; the frozen head does
    terms["mm"].backward()
    assert all(p.grad is None for p in model.text_head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.frozen_text_head.parameters())
    assert table.grad is None and algo.frozen_text.grad is None and not algo.frozen_text.requires_grad


def test_plugin_passes_the_batch_sample_indices():
    """The plugin hands the algorithm strategy.mb_index (the samples' training-split positions)."""
    import contextlib
    from types import SimpleNamespace

    from pipeline.continual.coconut import Coconut, add_frozen_text_head
    from pipeline.continual.plugins import CoconutPlugin, PastClasses
    from test_model import make

    model = make("gru").train()
    add_frozen_text_head(model, DIM, seed=0)
    algo = Coconut("none", 0.1, 0.3, True, 0.1, 1.0, "cwcl", torch.randn(12, DIM))
    out, feats, lens, tokens, y, _, index = _batch(model)
    strategy = SimpleNamespace(model=model, out=out, mb_x=feats, mb_feat_len=lens, mb_tokens=tokens, mb_y=y,
                               mb_index=index, autocast=contextlib.nullcontext, loss=torch.tensor(0.0), loss_terms={})
    CoconutPlugin(algo, PastClasses([])).before_backward(strategy)
    expected = algo.penalty(model, out, feats, lens, tokens, y, torch.zeros(8, dtype=torch.bool), index)["mm"]
    assert strategy.loss_terms["mm"] == pytest.approx(float(expected.detach()), rel=1e-6)
    shuffled = algo.penalty(model, out, feats, lens, tokens, y, torch.zeros(8, dtype=torch.bool), index.flip(0))["mm"]
    assert float(shuffled.detach()) != pytest.approx(float(expected.detach()), rel=1e-6)  # the rows matter


def test_frozen_target_needs_the_indices_and_cwcl_needs_the_frozen_target():
    from pipeline.continual.coconut import Coconut, add_frozen_text_head
    from test_model import make

    model = make("gru").train()
    add_frozen_text_head(model, DIM, seed=0)
    algo = Coconut("none", 0.1, 0.3, True, 0.1, 0.3, "cwcl", torch.randn(12, DIM))
    out, feats, lens, tokens, y, rehearsal, _ = _batch(model)
    with pytest.raises(RuntimeError, match="sample indices"):
        algo.penalty(model, out, feats, lens, tokens, y, rehearsal)
    with pytest.raises(ValueError, match="frozen_text"):
        Coconut("none", 0.1, 0.3, True, 0.1, 0.3, "cwcl", None)


def test_the_head_is_made_from_the_seed_and_leaves_the_global_rng_alone():
    from pipeline.continual.coconut import add_frozen_text_head
    from test_model import make

    a, b = make("gru"), make("gru")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    add_frozen_text_head(a, DIM, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    add_frozen_text_head(b, DIM, seed=5)
    for pa, pb in zip(a.frozen_text_head.parameters(), b.frozen_text_head.parameters()):
        assert torch.equal(pa, pb)


def test_stale_cache_is_one_line():
    from pipeline.continual.coconut import frozen_transcripts
    from pipeline.errors import DataError

    cache, meta = _cache(["a b", "c d", "a b"])
    with pytest.raises(DataError, match=r"^x\.json: made for other prepared data; re-run the embed stage"):
        frozen_transcripts(cache, meta + [{"transcript": "e"}], "x.json")
    with pytest.raises(DataError, match="training utterance 1: 'c d', not 'c e'"):
        frozen_transcripts(cache, [meta[0], {"transcript": "c e"}, meta[2]], "x.json")


# ----------------------------------------------------------------------------- through the stages


def write_cache(prepared: Path, root: Path, seed: int = 0) -> None:
    """The embed stage's transcripts set for ``prepared``, with random unit rows of DIM dimensions."""
    said = {s: [r["transcript"] for r in json.loads((prepared / "meta" / f"{s}.json").read_text())]
            for s in ("train", "valid", "test")}
    row: dict[str, int] = {}
    for s in said:
        for t in said[s]:
            row.setdefault(t, len(row))
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(len(row), DIM, generator=g), dim=1)
    root.mkdir(parents=True, exist_ok=True)
    write_set(root / "text", "transcripts", emb,
              {"ids": list(row), "texts": list(row), "refs": {s: [row[t] for t in said[s]] for s in said}, "tower": "random"})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cwcl")
    params = {**TINY, "recipes": RECIPES, "cil": {**TINY["cil"], "strategies": ["coconut", "coconut-cwcl", "coconut-lit"]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    resume = {**params, "train": {**params["train"], "epochs": 4}}
    (root / "params-resume.yaml").write_text(yaml.safe_dump(resume))
    assert cli(["prepare", "--params", str(root / "params.yaml"), "--out", str(root / "data/prepared"), "--no-progress"]) == 0
    write_cache(root / "data/prepared", root / "emb")
    return root


def args(workdir: Path, models: str, params: str = "params.yaml", emb: str = "emb") -> list[str]:
    return ["--params", str(workdir / params), "--prepared", str(workdir / "data/prepared"),
            "--models", str(workdir / models), "--embeddings", str(workdir / emb)]


def chain(workdir: Path, strategy: str, models: str, tasks=(0, 1), **kw) -> Path:
    common = args(workdir, models, **kw)
    assert cli(["init", "--strategy", strategy, "--seed", "0", *common[:6]]) == 0  # init takes no --embeddings
    for k in tasks:
        assert cli(["train", "--strategy", strategy, "--seed", "0", "--task", str(k), *common]) == 0
    return workdir / models / strategy / "s0"


def test_two_tasks_train_the_head_and_keep_the_frozen_rows_out_of_the_optimiser(workdir):
    from safetensors.torch import load_file

    folder = chain(workdir, "coconut-cwcl", "two")
    head = lambda f: {k: v for k, v in load_file(str(folder / f / "model.safetensors")).items()  # noqa: E731
                      if k.startswith("frozen_text_head.")}
    assert head("init") == {}  # the init checkpoint is every strategy's
    h0, h1 = head("task0"), head("task1")
    assert h0["frozen_text_head.2.weight"].shape == (DIM, TINY["model"]["d_model"])
    assert any(not torch.equal(h0[k], h1[k]) for k in h0)  # optimised on task 1 too
    for task, terms in ((0, ["mm"]), (1, ["mm", "contrastive"])):
        hist = json.loads((folder / f"task{task}" / "state.json").read_text())["history"]
        assert all(h.get(t, 0) > 0 for h in hist for t in terms), (task, hist)
    # the optimiser holds the model's parameters, the head last, and nothing else (no [N, DIM] table)
    from pipeline.continual.coconut import add_frozen_text_head
    from pipeline.data.prepared import load_prepared
    from pipeline.models.build import build_model

    model = build_model(load_train(workdir / "params.yaml").model, load_prepared(workdir / "data/prepared"))
    add_frozen_text_head(model, DIM, 0)
    shapes = [tuple(p.shape) for p in model.parameters()]
    opt = torch.load(folder / "task1" / "optimizer.pt", weights_only=True)
    assert sum(len(g["params"]) for g in opt["param_groups"]) == len(shapes)
    assert all(tuple(st["exp_avg"].shape) == shapes[i] for i, st in opt["state"].items())
    assert {len(shapes) - i for i in range(1, 5)} <= set(opt["state"])  # the head's four tensors were stepped
    assert shapes[-2:] == [(DIM, TINY["model"]["d_model"]), (DIM,)]


def test_frozen_rows_get_no_gradient_and_no_optimiser_state(workdir):
    """The task's strategy after training: the table the MM term reads is no parameter, has no gradient and no
    optimiser state, and still equals the cache; the head has both."""
    from pipeline.config import load_train
    from pipeline.continual.plugins import CoconutPlugin
    from pipeline.continual.run import TaskRun
    from pipeline.core import runtime
    from pipeline.data.prepared import load_prepared
    from pipeline.models.build import build_model

    chain(workdir, "coconut-cwcl", "grad", tasks=())
    params = load_train(workdir / "params.yaml")
    prep = load_prepared(workdir / "data/prepared")
    device = runtime.setup("cpu", 0, 1)
    folder = workdir / "grad" / "coconut-cwcl" / "s0"
    run = TaskRun(params, "coconut-cwcl", 0, 0, prep, folder / "init", folder / "task0", device, embeddings=workdir / "emb")
    strategy = run.train(build_model(params.model, prep))
    (algo,) = [p.algo for p in strategy.plugins if isinstance(p, CoconutPlugin)]
    table = algo.frozen_text
    cache = load_embeddings(workdir / "emb", "text", "transcripts")
    assert torch.equal(table, cache.emb[cache.refs["train"]].float())  # unchanged by training
    assert not table.requires_grad and table.grad is None
    opt_params = [p for g in strategy.optimizer.param_groups for p in g["params"]]
    assert all(p.data_ptr() != table.data_ptr() and p.shape != table.shape for p in opt_params)
    assert all(id(p) != id(table) for p in strategy.optimizer.state)
    assert all(not torch.equal(v, table) for v in strategy.model.state_dict().values() if v.shape == table.shape)
    head = list(strategy.model.frozen_text_head.parameters())
    assert all(any(p is q for q in opt_params) and "exp_avg" in strategy.optimizer.state[p] for p in head)


def test_first_task_is_adopted_byte_for_byte(workdir):
    assert cli(["first", "--seed", "0", *args(workdir, "shared")]) == 0
    first = workdir / "shared" / "first" / "s0"
    # three groups: coconut, coconut-cwcl, coconut-lit
    assert len({(first / s / "model.safetensors").read_bytes() for s in ("coconut", "coconut-cwcl", "coconut-lit")}) == 3
    for strategy in ("coconut-cwcl", "coconut-lit"):
        shared = chain(workdir, strategy, "shared", tasks=(0,)) / "task0"
        alone = chain(workdir, strategy, "alone", tasks=(0,)) / "task0"
        assert json.loads((shared / "eval.json").read_text())["shared_first_task"] is True
        for name in ("model.safetensors", "optimizer.pt", "rng.pt", "buffer.safetensors"):
            assert (shared / name).read_bytes() == (alone / name).read_bytes(), f"{strategy}: {name}"


def test_another_cache_is_not_adopted_nor_resumed(workdir, capsys):
    """The cache's content is in the run fingerprint: a first task trained on other frozen rows is retrained."""
    write_cache(workdir / "data/prepared", workdir / "emb-other", seed=1)
    assert cli(["first", "--seed", "0", *args(workdir, "fp", emb="emb-other")]) == 0
    capsys.readouterr()
    chain(workdir, "coconut-cwcl", "fp", tasks=(0,))  # with emb
    assert "was trained with other params, data or init weights" in capsys.readouterr().out


def test_missing_cache_is_one_line(workdir, capsys):
    chain(workdir, "coconut-cwcl", "missing", tasks=())
    code = cli(["train", "--strategy", "coconut-cwcl", "--seed", "0", "--task", "0", *args(workdir, "missing", emb="nowhere")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere/text/transcripts" in err[0] and err[0].endswith("missing; run the embed stage (dvc repro embed)")
    # a strategy without a frozen target never reads it
    chain(workdir, "coconut", "missing", tasks=(0,), emb="nowhere")


def test_resume_after_kill_matches_uninterrupted_run(workdir):
    for models in ("resume-a", "resume-b"):
        chain(workdir, "coconut-cwcl", models, tasks=(0,), params="params-resume.yaml")
    chain(workdir, "coconut-cwcl", "resume-a", tasks=(1,), params="params-resume.yaml")
    cmd = [sys.executable, "-m", "pipeline", "train", "--strategy", "coconut-cwcl", "--seed", "0", "--task", "1",
           *args(workdir, "resume-b", params="params-resume.yaml")]
    partial = workdir / "resume-b" / "coconut-cwcl" / "s0" / "task1.partial" / "state.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = kill_after_epoch(cmd, partial, 2, env)
    assert 2 <= done < 4
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert f"resuming coconut-cwcl task 1 after epoch {done}" in res.stdout
    a, b = (workdir / m / "coconut-cwcl" / "s0" / "task1" for m in ("resume-a", "resume-b"))
    for name in ("model.safetensors", "optimizer.pt", "rng.pt", "buffer.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ea, eb = (json.loads((f / "eval.json").read_text()) for f in (a, b))
    assert {k: v for k, v in ea.items() if k != "train_seconds"} == {k: v for k, v in eb.items() if k != "train_seconds"}
