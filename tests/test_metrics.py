"""Class-incremental metrics (:mod:`pipeline.report.cil_metrics`), seed aggregation
(:mod:`pipeline.report.aggregate`) and row validation (:mod:`pipeline.report.rows`).

The hand-computed cases work out every expected number in the comments, from the definitions in
the README ("Evaluation and the report": Chaudhry 2018 forgetting, Lopez-Paz 2017 BWT, iCaRL average accuracy); the
random cases compare every metric with the README's formulas written as plain loops.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.report import aggregate as AG
from pipeline.report import cil_metrics as CM
from pipeline.report import rows as RW

NAN = float("nan")


def lower(rows: list[list[float]]) -> np.ndarray:
    """A T x T matrix from its lower-triangle rows, NaN above the diagonal."""
    T = len(rows)
    R = np.full((T, T), NAN)
    for i, r in enumerate(rows):
        R[i, : len(r)] = r
    return R


# R1: the column maxima sit on the diagonal, so Chaudhry forgetting = -BWT.
#   f_0 = max(R00=.9, R10=.6) - R20=.5 = .4 ; f_1 = R11=.8 - R21=.7 = .1 ; F = .25
#   BWT = ((.5-.9) + (.7-.8)) / 2 = -.25
R1 = lower([[0.9], [0.6, 0.8], [0.5, 0.7, 0.95]])
# R2: task 0 improves after task 1 (R10=.9 > R00=.7), so the max is off the diagonal.
#   f_0 = max(.7, .9) - .5 = .4 ; f_1 = .8 - .6 = .2 ; F = .3
#   BWT = ((.5-.7) + (.6-.8)) / 2 = -.2   (F != -BWT here)
R2 = lower([[0.7], [0.9, 0.8], [0.5, 0.6, 0.9]])
# R3: positive backward transfer on task 0.
#   f_0 = max(.5, .6) - .8 = -.2 ; f_1 = .9 - .85 = .05 ; F = -.075
#   BWT = ((.8-.5) + (.85-.9)) / 2 = .125
R3 = lower([[0.5], [0.6, 0.9], [0.8, 0.85, 0.9]])
# R4 (T=4): the max for f_0 runs over l in [0, T-2] = {0,1,2} only, not the final row (R30=.95).
#   f_0 = max(.8, .7, .85) - .95 = -.1 ; f_1 = max(.9, .6) - .5 = .4 ; f_2 = .9 - .4 = .5 ; F = .8/3
#   BWT = ((.95-.8) + (.5-.9) + (.4-.9)) / 3 = -.75/3 = -.25
R4 = lower([[0.8], [0.7, 0.9], [0.85, 0.6, 0.9], [0.95, 0.5, 0.4, 0.9]])

CASES = [
    (R1, [0.4, 0.1], 0.25, [-0.4, -0.1], -0.25),
    (R2, [0.4, 0.2], 0.3, [-0.2, -0.2], -0.2),
    (R3, [-0.2, 0.05], -0.075, [0.3, -0.05], 0.125),
    (R4, [-0.1, 0.4, 0.5], 0.8 / 3, [0.15, -0.4, -0.5], -0.25),
]


@pytest.mark.parametrize("R, f_pt, F, b_pt, B", CASES)
def test_forgetting_and_bwt_hand_computed(R, f_pt, F, b_pt, B):
    np.testing.assert_allclose(CM.forgetting_per_task(R), f_pt, atol=1e-12)
    assert CM.average_forgetting(R) == pytest.approx(F, abs=1e-12)
    np.testing.assert_allclose(CM.bwt_per_task(R), b_pt, atol=1e-12)
    assert CM.backward_transfer(R) == pytest.approx(B, abs=1e-12)
    np.testing.assert_allclose(CM.final_task_accuracies(R), R[-1], atol=0)


def readme_metrics(R: list[list[float]], n_test: list[int]) -> dict:
    """The README's definitions ("Metrics, with R[i][j] ..."), as plain loops over lists.

    A_i is the accuracy on all test data seen after task i, so each task's accuracy weighs by its test size.
    """
    T = len(R)
    A = [sum(R[i][j] * n_test[j] for j in range(i + 1)) / sum(n_test[: i + 1]) for i in range(T)]
    f = [max(R[l][j] for l in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)]  # l in [j, T-2]
    b = [R[T - 1][j] - R[j][j] for j in range(T - 1)]
    return {"A": A, "avg_acc": sum(A) / T, "last_acc": A[T - 1], "f": f, "b": b,
            "forgetting": sum(f) / len(f) if f else None, "bwt": sum(b) / len(b) if b else None}  # fmt: skip


def rows_of_run(R: list[list[float]], n_test: list[int]) -> list:
    """The validated eval.json rows of one run with accuracy matrix R (acc_seen as the train stage writes it)."""
    T = len(R)
    classes = [[f"c{j}_{k}" for k in range(1 + j % 2)] for j in range(T)]
    out = []
    for i in range(T):
        data = {
            "strategy": "s", "seed": 0, "task": i, "n_tasks": T, "task_classes": classes,
            "acc_per_task": R[i][: i + 1], "acc_per_class": {}, "n_test_per_task": n_test[: i + 1],
            "acc_seen": sum(R[i][j] * n_test[j] for j in range(i + 1)) / sum(n_test[: i + 1]),
            "wer_seen": None, "buffer_size": 0, "train_seconds": 1.0,
        }  # fmt: skip
        out.append(RW.parse_row(data, path=f"s{i}.json", strategy="s", seed=0, task=i, n_tasks=T))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_metrics_match_the_readme_formulas_on_random_matrices(seed):
    """Random runs (1 to 7 tasks; accuracies on a coarse grid so that columns tie and peak off the diagonal;
    unequal test sizes): every metric of one run equals the README formula computed by plain loops."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 8))
    grid = [0.0, 0.25, 0.5, 0.75, 1.0] if seed % 2 else list(np.round(np.linspace(0, 1, 101), 2))
    R = [[float(rng.choice(grid)) for _ in range(i + 1)] for i in range(T)]
    n_test = [int(n) for n in rng.integers(1, 200, size=T)]
    want = readme_metrics(R, n_test)

    M = lower(R)
    np.testing.assert_allclose(CM.forgetting_per_task(M), want["f"], atol=1e-12)
    np.testing.assert_allclose(CM.bwt_per_task(M), want["b"], atol=1e-12)
    for got, exp in ((CM.average_forgetting(M), want["forgetting"]), (CM.backward_transfer(M), want["bwt"])):
        assert (got is None) == (exp is None) == (T == 1)
        assert got == pytest.approx(exp, abs=1e-12)
    assert CM.average_accuracy(want["A"]) == pytest.approx(want["avg_acc"], abs=1e-12)
    assert CM.last_accuracy(want["A"]) == pytest.approx(want["last_acc"], abs=1e-12)

    # the same run through the rows: run_result reads A_i from acc_seen (sample-weighted), R from acc_per_task
    r = AG.run_result(rows_of_run(R, n_test))
    np.testing.assert_array_equal(r.R, M)
    np.testing.assert_allclose(r.acc_seen, want["A"], atol=1e-12)
    assert r.avg_acc == pytest.approx(want["avg_acc"], abs=1e-12)
    assert r.last_acc == pytest.approx(want["last_acc"], abs=1e-12)
    assert r.forgetting == pytest.approx(want["forgetting"], abs=1e-12)
    assert r.bwt == pytest.approx(want["bwt"], abs=1e-12)
    np.testing.assert_allclose(r.final_per_task, R[-1], atol=0)


@pytest.mark.parametrize("T", [2, 3, 6])
def test_closed_form_cases(T):
    rng = np.random.default_rng(T)
    learned = [float(a) for a in np.round(rng.uniform(0.3, 1.0, size=T), 3)]
    # No forgetting: every task keeps the accuracy it had when learned -> forgetting 0, BWT 0.
    kept = lower([learned[: i + 1] for i in range(T)])
    assert CM.average_forgetting(kept) == 0.0 and CM.backward_transfer(kept) == 0.0
    np.testing.assert_array_equal(CM.forgetting_per_task(kept), np.zeros(T - 1))
    # Task 0 learned, kept until the second-last task, then fully forgotten: f_0 = its accuracy, the rest 0.
    lost = kept.copy()
    lost[T - 1, 0] = 0.0
    np.testing.assert_allclose(CM.forgetting_per_task(lost), [learned[0]] + [0.0] * (T - 2), atol=1e-12)
    np.testing.assert_allclose(CM.bwt_per_task(lost), [-learned[0]] + [0.0] * (T - 2), atol=1e-12)
    assert CM.average_forgetting(lost) == pytest.approx(learned[0] / (T - 1), abs=1e-12)
    assert CM.backward_transfer(lost) == pytest.approx(-learned[0] / (T - 1), abs=1e-12)
    # Task 0 improves after it is learned, then falls back: forgetting counts from the best, BWT from R[0][0].
    peak = lost.copy()
    if T > 2:
        peak[1, 0] = 1.0
        assert CM.forgetting_per_task(peak)[0] == pytest.approx(1.0, abs=1e-12)
        assert CM.bwt_per_task(peak)[0] == pytest.approx(-learned[0], abs=1e-12)


def test_last_and_average_accuracy_weigh_tasks_by_test_size():
    """After two tasks with 300 and 100 test samples, task 0 perfect and task 1 all wrong: A_1 = 300/400."""
    r = AG.run_result(rows_of_run([[1.0], [1.0, 0.0]], [300, 100]))
    assert r.last_acc == pytest.approx(0.75, abs=1e-12)  # not the unweighted .5
    assert r.avg_acc == pytest.approx((1.0 + 0.75) / 2, abs=1e-12)


def test_single_task_has_no_forgetting_or_bwt():
    R = lower([[0.8]])
    assert CM.forgetting_per_task(R).shape == (0,)
    assert CM.average_forgetting(R) is None
    assert CM.backward_transfer(R) is None
    assert CM.average_accuracy([0.8]) == CM.last_accuracy([0.8]) == 0.8


def test_matrix_checks_reject_holes_and_non_square():
    with pytest.raises(ValueError):
        CM.forgetting_per_task(np.full((2, 3), 0.5))
    bad = R1.copy()
    bad[2, 1] = NAN
    with pytest.raises(ValueError):
        CM.backward_transfer(bad)


def _avalanche_forgetting_and_bwt(R: np.ndarray):
    """Drive Avalanche 0.6's standalone ``Forgetting`` / ``BWT`` metrics exactly as its plugin does.

    In ``GenericExperienceForgetting`` (avalanche/evaluation/metrics/forgetting_bwt.py) ``before_eval``
    calls ``reset_last()``, and ``after_eval_exp`` calls ``update(k, acc, initial=True)`` when k is the
    experience just trained, else ``update(k, acc)``; the stream value is the mean of ``result_key(k)``
    over the keys that have both values. After training experience i we evaluate experiences 0..i.
    """
    from avalanche.evaluation.metrics.forgetting_bwt import BWT, Forgetting

    forg, bwt = Forgetting(), BWT()
    T = R.shape[0]
    for i in range(T):
        for m in (forg, bwt):
            m.reset_last()
        for j in range(i + 1):
            for m in (forg, bwt):
                m.update(j, float(R[i, j]), initial=(j == i))
    return forg.result(), bwt.result()


@pytest.mark.parametrize("R, f_pt, F, b_pt, B", CASES)
def test_agrees_with_avalanche_definitions(R, f_pt, F, b_pt, B):
    """Avalanche's BWT equals ours per task and on average. Avalanche's "forgetting" is R[j][j] - R[T-1][j]
    (first minus last value), i.e. -BWT; Chaudhry's max-based forgetting is >= it, equal exactly when each
    column peaks on the diagonal (R1), larger otherwise (R2, R4)."""
    pytest.importorskip("avalanche.evaluation.metrics.forgetting_bwt")
    av_f, av_b = _avalanche_forgetting_and_bwt(R)
    T = R.shape[0]
    assert sorted(av_b) == list(range(T - 1))  # the last task has no "last" value: excluded, as in ours
    np.testing.assert_allclose([av_b[j] for j in range(T - 1)], CM.bwt_per_task(R), atol=1e-12)
    assert np.mean(list(av_b.values())) == pytest.approx(CM.backward_transfer(R), abs=1e-12)
    ours = CM.forgetting_per_task(R)
    theirs = np.array([av_f[j] for j in range(T - 1)])
    assert np.all(ours >= theirs - 1e-12)
    col_max_on_diag = all(R[j, j] >= np.nanmax(R[j : T - 1, j]) for j in range(T - 1))
    assert np.allclose(ours, theirs) == col_max_on_diag


# ----------------------------------------------------------------------------- seeds


def _run(seed: int, R: np.ndarray, acc_seen, wer=0.1, buffer=10, secs=(1.0, 2.0, 3.0)) -> AG.RunResult:
    return AG.RunResult(
        strategy="s", seed=seed, R=R, acc_seen=np.asarray(acc_seen, float),
        avg_acc=CM.average_accuracy(acc_seen), last_acc=CM.last_accuracy(acc_seen),
        forgetting=CM.average_forgetting(R), bwt=CM.backward_transfer(R),
        forgetting_per_task=CM.forgetting_per_task(R), final_per_task=CM.final_task_accuracies(R),
        final_per_class={"a": 0.5 + 0.1 * seed}, wer_last=wer, train_seconds=float(sum(secs)), buffer_size=buffer,
    )  # fmt: skip


def test_seed_aggregation_mean_and_sample_std():
    # Three seeds with last acc .5/.6/.7: mean .6, sample std sqrt(((.1)^2 + 0 + (.1)^2) / 2) = .1
    # (the population std would be .0816). Forgetting R1 -> .25, R2 -> .3, R3 -> -.075: mean .158333,
    # sample std of (.25, .3, -.075): deviations .091667, .141667, -.233333 -> var (.008403+.020069+.054444)/2
    runs = [_run(0, R1, [0.9, 0.7, 0.5]), _run(1, R2, [0.8, 0.7, 0.6]), _run(2, R3, [0.7, 0.7, 0.7])]
    s = AG.summarize(runs, [["a"], ["b"], ["c"]])
    assert s.last_acc == pytest.approx((0.6, 0.1))
    assert s.forgetting[0] == pytest.approx(0.475 / 3)
    assert s.forgetting[1] == pytest.approx(math.sqrt((0.008403 + 0.020069 + 0.054444) / 2), abs=1e-4)
    # AvgAcc per seed: .7, .7, .7 -> std 0
    assert s.avg_acc == pytest.approx((0.7, 0.0))
    np.testing.assert_allclose(s.acc_seen, [0.8, 0.7, 0.6])
    np.testing.assert_allclose(s.acc_seen_std, [0.1, 0.0, 0.1], atol=1e-12)
    # matrices averaged cell by cell, NaN kept above the diagonal
    np.testing.assert_allclose(s.R[2], [(0.5 + 0.5 + 0.8) / 3, (0.7 + 0.6 + 0.85) / 3, (0.95 + 0.9 + 0.9) / 3])
    assert np.isnan(s.R[0, 1])
    assert s.train_seconds == 6.0  # per-run total 1+2+3, mean over seeds
    assert s.final_per_class["a"] == pytest.approx(0.6)

    out = AG.metrics_json({"s": s})["s"]
    assert set(out) == {
        "avg_acc", "last_acc", "forgetting", "bwt", "avg_acc_std", "last_acc_std", "forgetting_std", "bwt_std",
        "wer_last", "train_seconds", "buffer_size", "n_seeds",
    }  # fmt: skip
    assert out["n_seeds"] == 3 and out["last_acc_std"] == pytest.approx(0.1)


def test_single_seed_has_no_std_keys_and_missing_wer_is_null():
    s = AG.summarize([_run(4, R2, [0.7, 0.85, 0.6667], wer=None)], [["a"], ["b"], ["c"]])
    assert s.avg_acc[1] is None and s.acc_seen_std is None
    out = AG.metrics_json({"x": s})["x"]
    assert not any(k.endswith("_std") for k in out)
    assert out["wer_last"] is None and out["n_seeds"] == 1
    assert out["forgetting"] == pytest.approx(0.3) and out["bwt"] == pytest.approx(-0.2)
    # one seed with WER and one without: no partial mean
    s2 = AG.summarize([_run(0, R1, [0.9, 0.7, 0.7], wer=0.2), _run(1, R1, [0.9, 0.7, 0.7], wer=None)], [["a"], ["b"], ["c"]])
    assert s2.wer_last is None


def test_mean_std_helper():
    assert AG.mean_std([0.2]) == (0.2, None)
    assert AG.mean_std([0.2, None]) == (None, None)
    m, sd = AG.mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and sd == pytest.approx(np.std([1, 2, 4], ddof=1))


# ----------------------------------------------------------------------------- rows

CLASSES = [["a0", "a1"], ["b0", "b1"], ["c0"]]


def good_row(strategy="coconut", seed=0, task=2) -> dict:
    acc = [0.5, 0.75, 1.0][: task + 1]
    n = [40, 20, 20][: task + 1]
    return {
        "strategy": strategy, "seed": seed, "task": task, "n_tasks": 3, "task_classes": CLASSES,
        "acc_per_task": acc, "acc_seen": sum(a * k for a, k in zip(acc, n)) / sum(n),
        "acc_per_class": {c: 0.5 for t in CLASSES[: task + 1] for c in t}, "n_test_per_task": n,
        "wer_seen": 0.12, "buffer_size": 8, "train_seconds": 1.5, "epochs": 2, "final_loss": 0.3,
    }  # fmt: skip


def write(tmp_path, data, strategy="coconut", seed=0, task=2, raw=None):
    p = RW.eval_json_path(tmp_path / "models", strategy, seed, task)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(raw if raw is not None else json.dumps(data))
    return p


def test_good_row_loads(tmp_path):
    p = write(tmp_path, good_row())
    row = RW.load_row(p, strategy="coconut", seed=0, task=2, n_tasks=3)
    # acc_seen = (40*.5 + 20*.75 + 20*1)/80 = .6875
    assert row.acc_seen == pytest.approx(0.6875) and row.acc_per_task == [0.5, 0.75, 1.0]


def _set(key, value):
    def f(d):
        d[key] = value
        return d

    return f


def _drop(key):
    def f(d):
        del d[key]
        return d

    return f


MALFORMED = {
    "not an object": (lambda d: [d], "expected a JSON object"),
    "missing key": (_drop("acc_seen"), "missing key 'acc_seen'"),
    "task index mismatch": (_set("task", 1), "task is 1, expected 2"),
    "strategy mismatch": (_set("strategy", "replay"), "strategy is 'replay'"),
    "seed mismatch": (_set("seed", 3), "seed is 3, expected 0"),
    "n_tasks mismatch": (_set("n_tasks", 4), "n_tasks is 4, expected 3"),
    "acc_per_task too short": (_set("acc_per_task", [0.5, 0.75]), "acc_per_task has 2 values, expected 3"),
    "acc_per_task not a list": (_set("acc_per_task", 0.5), "acc_per_task: expected a list of 3 fractions"),
    "acc above 1": (_set("acc_per_task", [0.5, 1.2, 1.0]), "acc_per_task[1] is 1.2"),
    "acc below 0": (_set("acc_per_task", [-0.1, 0.75, 1.0]), "acc_per_task[0] is -0.1"),
    "acc NaN": (_set("acc_per_task", [NAN, 0.75, 1.0]), "acc_per_task[0] is nan"),
    "acc is a bool": (_set("acc_per_task", [True, 0.75, 1.0]), "acc_per_task[0] is True"),
    "acc_seen above 1": (_set("acc_seen", 55.0), "acc_seen is 55.0"),
    "acc_seen inconsistent": (_set("acc_seen", 0.9), "disagrees with the test-size-weighted mean"),
    "per-class above 1": (lambda d: d["acc_per_class"].update(a0=3) or d, "acc_per_class['a0'] is 3"),
    "per-class unseen class": (lambda d: d["acc_per_class"].update(zz=0.5) or d, "class 'zz'"),
    "task_classes wrong length": (_set("task_classes", CLASSES[:2]), "task_classes: expected 3"),
    "n_test wrong length": (_set("n_test_per_task", [40, 20]), "n_test_per_task: expected 3"),
    "task without test data": (_set("n_test_per_task", [40, 0, 20]), "n_test_per_task[1] is 0"),
    "eval_split not a string": (_set("eval_split", 1), "eval_split is 1"),
    "negative buffer": (_set("buffer_size", -1), "buffer_size is -1"),
    "negative wer": (_set("wer_seen", -0.5), "wer_seen is -0.5"),
    "train_seconds a string": (_set("train_seconds", "12"), "train_seconds is '12'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_row_names_file_and_stage(tmp_path, case):
    mutate, expected = MALFORMED[case]
    p = write(tmp_path, mutate(good_row()))
    with pytest.raises(DataError) as err:
        RW.load_row(p, strategy="coconut", seed=0, task=2, n_tasks=3)
    msg = str(err.value)
    assert expected in msg
    assert str(p) in msg and "train@coconut-0-task2" in msg
    assert "\n" not in msg


def test_bad_json_and_missing_file(tmp_path):
    p = write(tmp_path, None, raw='{"strategy": "coconut", ')
    with pytest.raises(DataError, match=r"not valid JSON .*train@coconut-0-task2"):
        RW.load_row(p, strategy="coconut", seed=0, task=2, n_tasks=3)
    missing = RW.eval_json_path(tmp_path / "models", "lwf", 1, 0)
    with pytest.raises(DataError) as err:
        RW.load_row(missing, strategy="lwf", seed=1, task=0, n_tasks=3)
    assert str(missing) in str(err.value) and "dvc repro train@lwf-1-task0" in str(err.value)


def test_stage_name_is_spelled_in_one_place(tmp_path, monkeypatch):
    assert RW.train_stage_name("coconut+skd", 2, 5) == "train@coconut+skd-2-task5"
    assert RW.eval_json_path("models", "coconut+skd", 2, 5).as_posix() == "models/coconut+skd/s2/task5/eval.json"
    monkeypatch.setattr(RW, "train_stage_name", lambda s, seed, k: f"TRAIN[{s}/{seed}/{k}]")
    p = write(tmp_path, _set("task", 0)(good_row()))
    with pytest.raises(DataError, match=r"TRAIN\[coconut/0/2\]"):
        RW.load_row(p, strategy="coconut", seed=0, task=2, n_tasks=3)


def test_load_run_rejects_mixed_splits(tmp_path):
    for k in range(3):
        d = good_row(task=k)
        if k == 2:
            d["task_classes"] = [["a0", "a1"], ["b0", "c0"], ["b1"]]
            d["acc_per_class"] = {}
        write(tmp_path, d, task=k)
    with pytest.raises(DataError, match=r"task2/eval.json: task_classes differ from those in .*task0/eval.json"):
        RW.load_run(tmp_path / "models", "coconut", 0, 3)


def test_load_run_then_compute(tmp_path):
    for k in range(3):
        write(tmp_path, good_row(task=k), task=k)
    rows = RW.load_run(tmp_path / "models", "coconut", 0, 3)
    r = AG.run_result(rows)
    # R = [[.5], [.5, .75], [.5, .75, 1]]: no accuracy changes after a task is learned -> F = 0, BWT = 0
    # A = [.5, (40*.5+20*.75)/60 = .583333, .6875]; AvgAcc = (.5 + .583333 + .6875)/3 = .590278
    assert r.forgetting == pytest.approx(0.0) and r.bwt == pytest.approx(0.0)
    assert r.avg_acc == pytest.approx((0.5 + 35 / 60 + 0.6875) / 3)
    assert r.train_seconds == pytest.approx(4.5) and r.buffer_size == 8


def test_shared_first_task_adds_stage_first_timing(tmp_path):
    """A run whose task 0 adopted stage first's training counts that training's seconds (timing.json)."""
    for k in range(3):
        write(tmp_path, {**good_row(task=k), "shared_first_task": k == 0}, task=k)
    first = tmp_path / "models" / "first" / "s0"
    with pytest.raises(DataError, match=r"task0/eval.json: task 0 was adopted from stage first@0, .*no time for 'coconut'"):
        RW.load_run(tmp_path / "models", "coconut", 0, 3)
    first.mkdir(parents=True)
    (first / "timing.json").write_text(json.dumps({"coconut": 30.0, "replay": 7.0}))
    rows = RW.load_run(tmp_path / "models", "coconut", 0, 3)
    assert [r.train_seconds for r in rows] == [31.5, 1.5, 1.5]
    assert AG.run_result(rows).train_seconds == pytest.approx(34.5)
    (first / "timing.json").write_text(json.dumps({"coconut": "slow"}))
    with pytest.raises(DataError, match=r"timing.json: expected an object"):
        RW.load_run(tmp_path / "models", "coconut", 0, 3)
