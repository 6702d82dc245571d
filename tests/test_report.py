"""The evaluate stage end to end on generated eval.json rows, its report files, and the compare command."""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.errors import DataError, ParamsError, UserError
from pipeline.stages import compare, evaluate

FIXTURES = Path(__file__).parent / "fixtures"
METRIC_KEYS = {"avg_acc", "last_acc", "forgetting", "bwt", "wer_last", "train_seconds", "buffer_size", "n_seeds"}
STD_KEYS = {"avg_acc_std", "last_acc_std", "forgetting_std", "bwt_std"}

# strategy -> (accuracy right after learning a task, accuracy lost per later task)
PROFILES = {"joint": (0.95, 0.0), "finetune": (0.9, 0.3), "coconut": (0.9, 0.1), "coconut+skd": (0.9, 0.12)}


def acc(strategy: str, seed: int, i: int, j: int) -> float:
    """R[i][j] of the generated runs: a fixed per-task decay, a small seed offset; 4 decimals."""
    top, decay = PROFILES[strategy]
    return round(max(0.0, top - decay * (i - j) - 0.01 * seed - 0.005 * j), 4)


def make_tree(root: Path, strategies, seeds, T: int, wer=True, evaluate_section=None) -> dict:
    """params.yaml, data/prepared/tasks.json and every models/<S>/s<seed>/task<k>/eval.json under root."""
    classes = [f"intent_{c}" for c in range(2 * T + 1)]
    task_names = [classes[:3]] + [classes[3 + 2 * (k - 1) : 3 + 2 * k] for k in range(1, T)]
    n_test = [30 * len(t) for t in task_names]
    (root / "data" / "prepared").mkdir(parents=True)
    (root / "data" / "prepared" / "tasks.json").write_text(json.dumps({
        "source": "synthetic", "preset": None, "classes": classes, "class_order": list(range(len(classes))),
        "tasks": [[classes.index(c) for c in t] for t in task_names], "task_names": task_names,
        "n_train_per_task": [100 * len(t) for t in task_names], "n_valid_per_task": [10] * T, "n_test_per_task": n_test,
    }))  # fmt: skip
    for s in strategies:
        for seed in seeds:
            for i in range(T):
                a = [acc(s, seed, i, j) for j in range(i + 1)]
                d = root / "models" / s / f"s{seed}" / f"task{i}"
                d.mkdir(parents=True)
                (d / "eval.json").write_text(json.dumps({
                    "strategy": s, "seed": seed, "task": i, "n_tasks": T, "task_classes": task_names,
                    "acc_per_task": a, "acc_seen": sum(x * n for x, n in zip(a, n_test)) / sum(n_test[: i + 1]),
                    "acc_per_class": {c: a[j] for j in range(i + 1) for c in task_names[j]},
                    "n_test_per_task": n_test[: i + 1], "wer_seen": 0.1 + 0.01 * i if wer else None,
                    "buffer_size": 0 if s in ("joint", "finetune") else 12 * (i + 1),
                    "train_seconds": 2.0 + i, "epochs": 1, "final_loss": 0.5,
                }))  # fmt: skip
    params = {"seeds": list(seeds), "cil": {"strategies": list(strategies), "tasks": [{"k": k, "prev": f"task{k - 1}" if k else "init"} for k in range(T)]},
              "train": {"epochs": 1}, "evaluate": evaluate_section or {"dpi": 50}}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return {"n_test": n_test, "task_names": task_names}


def eval_args(root: Path, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default=str(root / "params.yaml"))
    evaluate.add_arguments(parser)
    argv = ["--models-dir", str(root / "models"), "--prepared", str(root / "data" / "prepared"), "--out", str(root / "reports" / "cil")]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return parser.parse_args(argv)


def expected_metrics(strategy: str, seed: int, T: int, n_test: list[int]) -> dict:
    """The metrics of one generated run, computed here with plain loops (independent of the code under test)."""
    R = [[acc(strategy, seed, i, j) for j in range(i + 1)] for i in range(T)]
    A = [sum(R[i][j] * n_test[j] for j in range(i + 1)) / sum(n_test[: i + 1]) for i in range(T)]
    f = [max(R[l][j] for l in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)]
    b = [R[T - 1][j] - R[j][j] for j in range(T - 1)]
    return {"avg_acc": sum(A) / T, "last_acc": A[-1], "forgetting": sum(f) / len(f) if f else None,
            "bwt": sum(b) / len(b) if b else None}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One evaluate run: 4 strategies x 2 seeds x 3 tasks."""
    root = tmp_path_factory.mktemp("cil")
    info = make_tree(root, list(PROFILES), [0, 1], 3)
    evaluate.main(eval_args(root))
    return root, root / "reports" / "cil", info


def test_outputs_exist(report):
    _, out, _ = report
    for name in ["metrics.json", "plots/acc_vs_tasks.json", "plots/forgetting_per_task.json", "details.json",
                 "report.md", "report.html", "figures/acc_vs_tasks.png", "figures/forgetting_per_task.png",
                 "figures/accuracy_matrix_coconut+skd.png", "figures/accuracy_matrix_joint.png"]:  # fmt: skip
        assert (out / name).is_file(), name
    assert len(list((out / "figures").glob("*.png"))) == 2 + len(PROFILES)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cil"]  # no temporary or old folder left behind


def test_metrics_json_shape_and_values(report):
    _, out, info = report
    m = json.loads((out / "metrics.json").read_text())
    assert list(m) == list(PROFILES)  # params order
    for s, entry in m.items():
        assert set(entry) == METRIC_KEYS | STD_KEYS, s
        runs = [expected_metrics(s, seed, 3, info["n_test"]) for seed in (0, 1)]
        for key in ("avg_acc", "last_acc", "forgetting", "bwt"):
            vals = [r[key] for r in runs]
            mean = sum(vals) / 2
            std = abs(vals[0] - vals[1]) / 2**0.5  # sample std of two values
            assert entry[key] == pytest.approx(mean, abs=1e-6), (s, key)
            assert entry[f"{key}_std"] == pytest.approx(std, abs=1e-6), (s, key)
            assert -1 <= entry[key] <= 1
        assert entry["n_seeds"] == 2
        assert entry["wer_last"] == pytest.approx(0.12)
        assert entry["train_seconds"] == pytest.approx(2 + 3 + 4)
        assert entry["buffer_size"] == (0 if s in ("joint", "finetune") else 36)
    # finetune forgets .3 per later task: f_0 = .6 (R00 - R20), f_1 = .3 -> .45 ; joint forgets nothing
    assert m["finetune"]["forgetting"] == pytest.approx(0.45, abs=1e-6)
    assert m["finetune"]["bwt"] == pytest.approx(-0.45, abs=1e-6)
    assert m["joint"]["forgetting"] == pytest.approx(0.0, abs=1e-6)


def test_plot_data_rows(report):
    _, out, _ = report
    m = json.loads((out / "metrics.json").read_text())
    curve = json.loads((out / "plots" / "acc_vs_tasks.json").read_text())
    assert len(curve) == len(PROFILES) * 3
    assert all(set(r) == {"strategy", "tasks_learned", "acc_seen"} for r in curve)
    for s in PROFILES:
        pts = sorted((r["tasks_learned"], r["acc_seen"]) for r in curve if r["strategy"] == s)
        assert [t for t, _ in pts] == [1, 2, 3]
        assert sum(a for _, a in pts) / 3 == pytest.approx(m[s]["avg_acc"], abs=1e-5)  # AvgAcc = mean of the curve
        assert pts[-1][1] == pytest.approx(m[s]["last_acc"], abs=1e-6)
    forg = json.loads((out / "plots" / "forgetting_per_task.json").read_text())
    assert all(set(r) == {"strategy", "task", "forgetting"} for r in forg)
    ft = {r["task"]: r["forgetting"] for r in forg if r["strategy"] == "finetune"}
    assert ft == pytest.approx({0: 0.6, 1: 0.3})


def test_html_is_self_contained(report):
    _, out, _ = report
    text = (out / "report.html").read_text()
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text and "@import" not in text
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(imgs) == 2 + len(PROFILES)
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for needle in ["Comparison", "Final accuracy per task", "Setting", "Provenance", "coconut+skd", "intent_0"]:
        assert needle in text


def test_markdown_report_contents(report):
    root, out, _ = report
    md = (out / "report.md").read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (out / link).is_file()
    table = md.split("## Comparison", 1)[1].split("## Figures", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert len(rows) == 2 + len(PROFILES)  # header, alignment row, one row per strategy
    # best non-upper-bound Avg Acc is coconut (decay .1); joint is better still but never bold
    assert re.search(r"\| \*\*\d+\.\d\d ± \d+\.\d\d\*\* \|", rows["coconut"])
    assert "**" not in rows["*joint (upper bound)*"]
    assert "**" not in rows["finetune"].split("|")[2]
    # provenance: the sha256 of the params file
    import hashlib

    assert hashlib.sha256((root / "params.yaml").read_bytes()).hexdigest() in md
    assert "- **Seeds**: 0, 1" in md
    assert "- **Evaluated on**: test split" in md  # rows without eval_split default to test


def test_single_seed_single_task(tmp_path):
    make_tree(tmp_path, ["finetune", "coconut"], [3], 1, wer=False)
    evaluate.main(eval_args(tmp_path))
    out = tmp_path / "reports" / "cil"
    m = json.loads((out / "metrics.json").read_text())
    for entry in m.values():
        assert set(entry) == METRIC_KEYS  # one seed: no *_std keys
        assert entry["forgetting"] is None and entry["bwt"] is None and entry["wer_last"] is None
        assert entry["avg_acc"] == entry["last_acc"]
    assert json.loads((out / "plots" / "forgetting_per_task.json").read_text()) == []
    assert "n/a" in (out / "report.md").read_text()


def test_bad_row_fails_and_leaves_no_report(tmp_path):
    make_tree(tmp_path, ["finetune", "coconut"], [0], 2)
    bad = tmp_path / "models" / "coconut" / "s0" / "task1" / "eval.json"
    d = json.loads(bad.read_text())
    d["acc_per_task"] = d["acc_per_task"][:1]
    bad.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"task1/eval.json: acc_per_task has 1 values.*train@coconut-0-task1"):
        evaluate.main(eval_args(tmp_path))
    reports = tmp_path / "reports"
    assert not reports.exists() or not any(reports.iterdir())  # nothing that could pass for a report


def test_failure_while_writing_keeps_previous_report_and_cleans_up(tmp_path, monkeypatch):
    make_tree(tmp_path, ["finetune"], [0], 2)
    out = tmp_path / "reports" / "cil"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"old": {}}')

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(evaluate, "write_report", boom)
    with pytest.raises(RuntimeError):
        evaluate.main(eval_args(tmp_path))
    assert (out / "metrics.json").read_text() == '{"old": {}}'  # untouched, not half-replaced
    assert sorted(p.name for p in out.parent.iterdir()) == ["cil"]  # temp folder removed


def test_refuses_to_replace_unrelated_folder(tmp_path, capsys):
    """A mistyped --out that holds foreign files: one line, no traceback, nothing written or removed."""
    from pipeline.__main__ import main

    make_tree(tmp_path, ["finetune"], [0], 2)
    out = tmp_path / "reports" / "cil"
    out.mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match=r"reports/cil: exists and is not an output of evaluate .*'thesis.tex'"):
        evaluate.main(eval_args(tmp_path))
    argv = ["evaluate", "--params", str(tmp_path / "params.yaml"), "--models-dir", str(tmp_path / "models"),
            "--prepared", str(tmp_path / "data" / "prepared"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'thesis.tex'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cil"]  # no temporary folder either


def test_replaces_what_dvc_left_and_keeps_its_gitignores(tmp_path):
    """Before running a stage DVC deletes its outputs but leaves the .gitignore files it wrote for them."""
    make_tree(tmp_path, ["finetune"], [0], 2)
    out = tmp_path / "reports" / "cil"
    (out / "plots").mkdir(parents=True)
    (out / ".gitignore").write_text("/metrics.json\n/figures\n")
    (out / "plots" / ".gitignore").write_text("/acc_vs_tasks.json\n")
    evaluate.main(eval_args(tmp_path))
    assert (out / "metrics.json").is_file() and (out / "plots" / "acc_vs_tasks.json").is_file()
    assert (out / ".gitignore").read_text() == "/metrics.json\n/figures\n"
    assert (out / "plots" / ".gitignore").read_text() == "/acc_vs_tasks.json\n"
    evaluate.main(eval_args(tmp_path))  # and a plain rerun over a complete report works too
    assert sorted(p.name for p in out.parent.iterdir()) == ["cil"]


def test_tasks_json_must_match_params(tmp_path):
    make_tree(tmp_path, ["finetune"], [0], 2)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    p["cil"]["tasks"].append({"k": 2, "prev": "task1"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(DataError, match=r"tasks.json: describes 2 tasks but params cil.tasks has 3"):
        evaluate.main(eval_args(tmp_path))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.update(seeds=[]), "params: seeds: list one or more distinct integers >= 0"),
        (lambda p: p.update(seeds=[0, 0]), "params: seeds:"),
        (lambda p: p.update(seeds="0"), "params: seeds:"),
        (lambda p: p.update(seeds=[-1]), "params: seeds: list one or more distinct integers >= 0"),
        (lambda p: p["cil"].update(strategies=[]), "params: cil.strategies:"),
        (lambda p: p["cil"].update(strategies=["a", "a"]), "params: cil.strategies:"),
        (lambda p: p["cil"].update(strategies=["a/b"]), "params: cil.strategies: 'a/b': use letters, digits"),
        (lambda p: p["cil"].update(strategies=[".."]), "params: cil.strategies: '..': use letters, digits"),
        (lambda p: p["cil"].pop("tasks"), "params: cil.tasks:"),
        (lambda p: p["cil"]["tasks"].pop(0), "params: cil.tasks[0]: expected {k: 0, prev: init}"),
        (lambda p: p.update(cil=[1]), "params: cil: expected a mapping"),
        (lambda p: p.update(evaluate={"colour": "red"}), "params: evaluate.colour: unknown key"),
        (lambda p: p.update(evaluate={"dpi": 5}), "params: evaluate.dpi:"),
        (lambda p: p.update(evaluate={"dpi": True}), "params: evaluate.dpi:"),
        (lambda p: p.update(evaluate={"upper_bound": 3}), "params: evaluate.upper_bound:"),
        (lambda p: p.update(evaluate={"title": " "}), "params: evaluate.title:"),
        (lambda p: p.update(evaluate=[1]), "params: evaluate: expected a mapping"),
    ],
)
def test_params_errors(tmp_path, edit, message):
    make_tree(tmp_path, ["finetune"], [0], 2)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    edit(p)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(ParamsError) as err:
        evaluate.read_params(tmp_path / "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_upper_bound_that_is_not_run_is_not_drawn(tmp_path):
    make_tree(tmp_path, ["finetune"], [0], 2)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    p["evaluate"] = {"upper_bound": "joint"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert evaluate.read_params(tmp_path / "params.yaml").upper_bound is None


def test_seeds_default_to_zero_like_the_train_stages(tmp_path):
    make_tree(tmp_path, ["finetune"], [0], 2)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    del p["seeds"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert evaluate.read_params(tmp_path / "params.yaml").seeds == [0]


def test_cli_reports_user_error_in_one_line(tmp_path, capsys):
    from pipeline.__main__ import main

    (tmp_path / "params.yaml").write_text("seeds: [1, 1]\ncil: {strategies: [a], tasks: [{k: 0, prev: init}]}\n")
    assert main(["evaluate", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: params: seeds:") and err.count("\n") == 1


# ----------------------------------------------------------------------------- compare


def test_compare_parses_real_dvc_exp_show():
    data = json.loads((FIXTURES / "exp_show.json").read_text())
    exps, skipped = compare.parse_experiments(data, "reports/cil/metrics.json")
    # the workspace repeats the last experiment and is dropped; experiments in the order they were made
    assert [e.name for e in exps] == ["main", "buf462", "wight-brio"]
    assert skipped == ["queued-one (queued)"]
    assert {e.name: e.differing for e in exps} == {
        "main": ["recipes.replay.buffer_size=231", "train.epochs=5"],
        "buf462": ["recipes.replay.buffer_size=462", "train.epochs=5"],
        "wight-brio": ["recipes.replay.buffer_size=462", "train.epochs=10"],
    }
    assert exps[1].metrics["coconut"]["avg_acc"] == pytest.approx(0.6512)


def test_compare_keeps_a_workspace_that_differs():
    data = json.loads((FIXTURES / "exp_show.json").read_text())
    ws = data[0]
    assert ws["rev"] == "workspace"
    ws["data"]["metrics"]["reports/cil/metrics.json"]["data"]["coconut"]["avg_acc"] = 0.7
    exps, _ = compare.parse_experiments(data, "reports/cil/metrics.json")
    assert exps[0].name == "workspace" and len(exps) == 4


def test_compare_command_writes_table_and_figure(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="params.yaml")
    compare.add_arguments(parser)
    compare.main(parser.parse_args(["--input", str(FIXTURES / "exp_show.json"), "--out", str(tmp_path / "cmp")]))
    printed = capsys.readouterr().out
    md = (tmp_path / "cmp" / "compare.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| buf462 |") and "| coconut |" in x)
    assert "recipes.replay.buffer_size=462, train.epochs=5" in line and "65.12 ± 1.00" in line and "55.12 ± 2.00" in line
    assert line in printed
    assert len([x for x in md.splitlines() if x.startswith("| ") and "---" not in x]) == 1 + 3 * 2
    assert "Skipped (no metrics): queued-one (queued)" in md
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert {(r["experiment"], r["strategy"]) for r in rows} == {
        (e, s) for e in ("main", "buf462", "wight-brio") for s in ("finetune", "coconut")
    }


def test_compare_without_metrics_is_a_data_error(tmp_path):
    data = json.loads((FIXTURES / "exp_show.json").read_text())
    with pytest.raises(DataError, match="no experiment has reports/other.json"):
        parser = argparse.ArgumentParser()
        compare.add_arguments(parser)
        (tmp_path / "x.json").write_text(json.dumps(data))
        compare.main(parser.parse_args(["--input", str(tmp_path / "x.json"), "--metrics-file", "reports/other.json"]))
