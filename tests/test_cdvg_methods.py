"""The debiasing runs (``cdvg@<method>-<backbone>-<rho>-<seed>``): GCE against its formula, the CDvG contrastive
term against a slow NT-Xent loop, LfF's weights against a hand computation, and the stage end to end on tiny
synthetic biased sets (every method, determinism, bias labels never read, kill -9 resume, one-line errors)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file

from conftest import kill_at_first_checkpoint, loop_dot, loop_unit_rows
from pipeline.__main__ import main as cli
from pipeline.cdvg.params import METHODS, MethodsConfig
from pipeline.data.vision.imageset import ImageSet, write_split

pytestmark = pytest.mark.usefixtures("restore_torch_globals")

CLASSES = ["a", "b", "c", "d"]
OUT_FILES = ("model.safetensors", "history.jsonl", "result.json")
SIZE = 12
TINTS = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [220, 220, 40]], dtype=np.int64)


# ----------------------------------------------------------------------------- GCE


def test_gce_matches_its_formula_value_and_gradient():
    from pipeline.losses.gce import GCELoss, generalized_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    q = 0.7

    def by_hand(z):
        p = torch.softmax(z, dim=1)[torch.arange(6), y]
        return ((1 - p ** q) / q).mean()

    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    got, want = generalized_cross_entropy(a, y, q), by_hand(b)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-10)
    # the gradient is p_y^q times cross-entropy's, per sample
    c = logits.clone().requires_grad_(True)
    per = generalized_cross_entropy(c, y, q, reduction="none")
    assert per.shape == (6,)
    p_y = torch.softmax(logits, 1)[torch.arange(6), y]
    ce_grad = torch.softmax(logits, 1) - F.one_hot(y, 5)
    per[2].backward()
    torch.testing.assert_close(c.grad[2], p_y[2] ** q * ce_grad[2], atol=1e-12, rtol=1e-10)
    assert GCELoss(q)(logits, y).item() == pytest.approx(want.item(), rel=1e-12)


def test_gce_limits_q_to_zero_is_cross_entropy_and_q_one_is_one_minus_p():
    from pipeline.losses.gce import generalized_cross_entropy

    logits = torch.randn(8, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(8) % 4
    ce = F.cross_entropy(logits, y, reduction="none")
    near0 = generalized_cross_entropy(logits, y, 1e-7, reduction="none")
    torch.testing.assert_close(near0, ce, atol=1e-5, rtol=1e-5)
    one = generalized_cross_entropy(logits, y, 1.0, reduction="none")
    torch.testing.assert_close(one, 1 - torch.softmax(logits, 1)[torch.arange(8), y], atol=1e-12, rtol=1e-12)
    # large logits do not overflow; q strictly between: between 1 - p and CE
    big = generalized_cross_entropy(torch.tensor([[1e4, 0.0]]), torch.tensor([1]), 0.7)
    assert torch.isfinite(big) and big.item() == pytest.approx(1 / 0.7)
    mid = generalized_cross_entropy(logits, y, 0.5, reduction="none")
    assert bool((mid <= ce + 1e-12).all() and (mid >= one - 1e-12).all())


@pytest.mark.parametrize("kwargs,message", [
    ({"q": 0.0}, "q must be a number in (0, 1]"), ({"q": 1.5}, "q must be a number in (0, 1]"),
    ({"reduction": "max"}, "reduction must be one of"), ({"targets": torch.tensor([0, 4])}, "targets must be class"),
    ({"targets": torch.tensor([0.0, 1.0])}, "integer tensor"), ({"logits": torch.zeros(2)}, "shape [B, K]"),
])
def test_gce_rejects_bad_arguments(kwargs, message):
    from pipeline.losses.gce import generalized_cross_entropy

    args = {"logits": torch.zeros(2, 4), "targets": torch.tensor([0, 1]), "q": 0.7, **kwargs}
    with pytest.raises(ValueError) as e:
        generalized_cross_entropy(**args)
    assert message in str(e.value)


# ----------------------------------------------------------------------------- the objective


def tiny_rows(n=10, k=3, views=True, seed=0):
    from pipeline.cdvg.objective import TrainRows

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g)
    v = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g) if views else None
    return TrainRows(images, torch.arange(n) % k, k, v)


def slow_ntxent(zx, zv, tau):
    """SimCLR's NT-Xent written out: anchors x_1..x_B, v_1..v_B; positive of x_i is v_i; mean over 2B anchors."""
    u = loop_unit_rows(torch.cat([zx, zv]).double())
    n2, b = len(u), zx.shape[0]
    total = 0.0
    for a in range(n2):
        pos = a + b if a < b else a - b
        denom = sum(torch.exp(loop_dot(u[a], u[j]) / tau) for j in range(n2) if j != a)
        total = total - torch.log(torch.exp(loop_dot(u[a], u[pos]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
def test_the_cdvg_contrastive_term_is_ntxent_of_image_and_its_view(backbone):
    from pipeline.cdvg.model import make_model, to_input
    from pipeline.cdvg.objective import Objective

    cfg = MethodsConfig(mlp_hidden=[16], cnn_width=4, proj_dim=5, temperature=0.3, lam=0.5)
    rows = tiny_rows()
    model = make_model("cdvg", backbone, cfg, 8, 3, 10, 1)
    obj = Objective("cdvg", cfg, rows)
    pos = torch.tensor([7, 2, 5, 0])
    params = [p for p in model.parameters()]
    terms = obj(model, (pos,))
    got_grads = torch.autograd.grad(terms["contrastive"], params, allow_unused=True)
    # reference: the same forward (one pass over x and v), then the loop over the formula
    net = model.debiased
    h = net.features(torch.cat([to_input(rows.images[pos]), to_input(rows.views[pos])]))
    z = net.head(h)
    want = slow_ntxent(z[:4], z[4:], 0.3)
    assert terms["contrastive"].item() == pytest.approx(want.item(), rel=1e-5)
    want_grads = torch.autograd.grad(want, params, allow_unused=True)
    for g1, g2 in zip(got_grads, want_grads):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)
    assert any(g is not None and g.abs().sum() > 0 for g in got_grads)
    # the classifier is not in the contrastive term, the projection head is
    assert got_grads[[n for n, _ in model.named_parameters()].index("debiased.classifier.weight")] is None
    # loss = CE(x) + lam * contrastive (x's logits from the joint pass: BatchNorm saw x and v together);
    # swapping the views' rows changes the term (positives are paired by row)
    ce = F.cross_entropy(net.classifier(h[:4]), rows.labels[pos])
    assert terms["loss"].item() == pytest.approx(ce.item() + 0.5 * want.item(), rel=1e-5)
    swapped = Objective("cdvg", cfg, type(rows)(rows.images, rows.labels, 3, rows.views[torch.randperm(10)]))
    assert swapped(model, (pos,))["contrastive"].item() != pytest.approx(want.item(), rel=1e-3)


def test_view_ce_adds_the_cross_entropy_of_the_view():
    from pipeline.cdvg.model import make_model, to_input
    from pipeline.cdvg.objective import Objective

    cfg = MethodsConfig(mlp_hidden=[16], proj_dim=4, lam=0.0, view_ce=True)
    rows = tiny_rows()
    model = make_model("cdvg", "mlp", cfg, 8, 3, 10, 1)
    pos = torch.tensor([1, 3])
    net = model.debiased
    want = (F.cross_entropy(net(to_input(rows.images[pos])), rows.labels[pos])
            + F.cross_entropy(net(to_input(rows.views[pos])), rows.labels[pos]))
    assert Objective("cdvg", cfg, rows)(model, (pos,))["loss"].item() == pytest.approx(want.item(), rel=1e-6)


def test_lff_weights_follow_the_ema_and_the_class_maximum_by_hand():
    from pipeline.cdvg.objective import class_max, ema_update, lff_weights

    labels = torch.tensor([0, 0, 1, 1, 0])
    ema_b, ema_d, updated = torch.zeros(5), torch.zeros(5), torch.zeros(5)
    alpha = 0.7
    # step 1: rows 0, 2, 4 seen for the first time take their losses as is
    pos = torch.tensor([0, 2, 4])
    was = updated[pos].clone()
    ema_update(ema_b, pos, torch.tensor([2.0, 1.0, 0.5]), alpha, was)
    ema_update(ema_d, pos, torch.tensor([1.0, 3.0, 0.5]), alpha, was)
    updated[pos] = 1
    assert ema_b.tolist() == [2.0, 0.0, 1.0, 0.0, 0.5]
    # step 2: rows 0 (again) and 1 (new)
    pos = torch.tensor([0, 1])
    was = updated[pos].clone()
    ema_update(ema_b, pos, torch.tensor([1.0, 4.0]), alpha, was)
    ema_update(ema_d, pos, torch.tensor([2.0, 1.0]), alpha, was)
    updated[pos] = 1
    b0, d0 = 0.7 * 2.0 + 0.3 * 1.0, 0.7 * 1.0 + 0.3 * 2.0  # 1.7, 1.3
    torch.testing.assert_close(ema_b, torch.tensor([b0, 4.0, 1.0, 0.0, 0.5]))
    torch.testing.assert_close(ema_d, torch.tensor([d0, 1.0, 3.0, 0.0, 0.5]))
    # class maxima over ALL rows of the class: b: class 0 -> 4.0, class 1 -> 1.0; d: 1.3, 3.0
    torch.testing.assert_close(class_max(ema_b, labels, 3), torch.tensor([4.0, 1.0, 0.0]))
    w = lff_weights(ema_b, ema_d, torch.tensor([0, 1, 2, 4]), labels, 3)
    nb = torch.tensor([b0 / 4.0, 4.0 / 4.0, 1.0 / 1.0, 0.5 / 4.0])
    nd = torch.tensor([d0 / d0, 1.0 / d0, 3.0 / 3.0, 0.5 / d0])
    torch.testing.assert_close(w, nb / (nb + nd + 1e-8))
    # a row the biased net fails on (b large) and the debiased fits weighs more
    assert w[1] > 0.5 > w[0]


def test_the_lff_step_updates_its_buffers_and_trains_the_biased_net_with_gce():
    from pipeline.cdvg.model import LfFModel, make_model, to_input
    from pipeline.cdvg.objective import Objective
    from pipeline.losses.gce import generalized_cross_entropy

    cfg = MethodsConfig(mlp_hidden=[16], proj_dim=4, gce_q=0.7, ema=0.7)
    rows = tiny_rows(views=False)
    model = make_model("lff", "mlp", cfg, 8, 3, 10, 1, 2)
    assert isinstance(model, LfFModel)
    assert {"ema_b", "ema_d", "updated", "steps"} <= set(model.state_dict())
    assert not torch.equal(model.debiased.classifier.weight, model.biased.classifier.weight)
    pos = torch.tensor([4, 1, 8])
    x, y = to_input(rows.images[pos]), rows.labels[pos]
    with torch.no_grad():
        ce_b = F.cross_entropy(model.biased(x), y, reduction="none")
        ce_d = F.cross_entropy(model.debiased(x), y, reduction="none")
        gce = generalized_cross_entropy(model.biased(x), y, 0.7)
    terms = Objective("lff", cfg, rows)(model, (pos,))
    torch.testing.assert_close(model.ema_b[pos], ce_b)
    torch.testing.assert_close(model.ema_d[pos], ce_d)
    assert model.updated.tolist() == [1.0 if i in (1, 4, 8) else 0.0 for i in range(10)]
    assert terms["gce"].item() == pytest.approx(gce.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(terms["gce"].item() + terms["ce"].item(), rel=1e-6)
    assert 0 < terms["w_mean"].item() < 1


# ----------------------------------------------------------------------------- the stage end to end


def biased_split(n: int, rho: float | None, seed: int, split: str) -> ImageSet:
    """SIZE px: class c = a 3x3 dim spot in quadrant c (jittered); bias = the background colour, the class's own
    with probability rho (None: uniform)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    if rho is None:
        bias = rng.integers(0, 4, n)
    else:
        other = (labels + rng.integers(1, 4, n)) % 4
        bias = np.where(rng.random(n) < rho, labels, other)
    images = np.clip(TINTS[bias][:, None, None, :] * 0.6 + rng.integers(-20, 21, (n, SIZE, SIZE, 3)), 0, 255)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 2)
        y0, x0 = 6 * r + rng.integers(0, 3), 6 * col + rng.integers(0, 3)
        images[i, y0:y0 + 3, x0:x0 + 3] = 255
    return ImageSet(images.astype(np.uint8), labels.astype(np.int64), CLASSES, [f"{split}-{i}" for i in range(n)],
                    bias=bias.astype(np.int64), aligned=[bool(b == c) for b, c in zip(bias, labels)])


def write_sets(folder: Path, rho: float, n_train: int = 160) -> None:
    write_split(folder, "train", biased_split(n_train, rho, 0, "train"))
    write_split(folder, "valid", biased_split(48, rho, 1, "valid"))
    test = biased_split(80, None, 2, "test")
    aligned = np.asarray(test.aligned)
    write_split(folder, "test", test)
    write_split(folder, "test_conflicting", test.subset(np.flatnonzero(~aligned)))
    write_split(folder, "test_aligned", test.subset(np.flatnonzero(aligned)))


def write_views(folder: Path, n: int, seed: int = 5) -> None:
    """A views file of cdvg-views' keys: the training image with its background recoloured to another class's."""
    from pipeline.cdvg.data import read_arrays

    train = read_arrays(folder.parent.parent / "sets" / folder.name / "train.safetensors", ("images",))["images"]
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 4, (n,), generator=g, dtype=torch.int64)
    views = train[:n].clone()
    bg = views.int().sum(-1) < 3 * 255  # [n, S, S]: not the white spot
    tint = torch.from_numpy((TINTS * 0.6).astype(np.uint8))[target][:, None, None, :].expand_as(views)
    views[bg] = tint[bg]
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"views": views, "target": target}, str(folder / "views.safetensors"))


PARAMS = {
    "cdvg": {
        "data": {"source": "digits", "rhos": [0.95]},
        "train": {"mlp_hidden": [32, 32], "cnn_width": 4, "proj_dim": 8,
                  "train": {"epochs": 3, "batch_size": 32, "eval_batch_size": 64, "eval_every": 1, "lr": 3e-3,
                            "progress": False, "device": "cpu"}},
    },
}
RHO = "0.95"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cdvg")
    write_sets(root / "sets" / f"rho{RHO}", float(RHO))
    write_views(root / "views" / f"rho{RHO}", 160)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def stage(work: Path, method: str, out: str, params: str = "params.yaml", backbone: str = "mlp",
          sets: str = "sets", views: str = "views", rho: str = RHO, seed: int = 0) -> list[str]:
    return ["cdvg", "--method", method, "--backbone", backbone, "--rho", rho, "--seed", str(seed),
            "--params", str(work / params), "--sets", str(work / sets), "--views", str(work / views),
            "--out", str(work / out), "--timing", str(work / f"{out}-timing.json")]


@pytest.fixture(scope="module")
def reference(work) -> dict[str, Path]:
    runs = {}
    for method in METHODS:
        assert cli(stage(work, method, f"runs/{method}")) == 0
        runs[method] = work / "runs" / method
    return runs


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_writes_its_outputs(work, reference, method):
    out = reference[method]
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUT_FILES, ".pipeline-output"])
    assert not (work / "runs" / f"{method}.run").exists() and not (work / "runs" / f"{method}.tmp").exists()
    state = load_file(str(out / "model.safetensors"))
    doc = result(out)
    # the selected epoch's weights hold the steps up to it; result.json all of the run's (3 x ceil(160 / 32))
    assert int(state["steps"]) == 5 * doc["best_epoch"] and doc["steps"] == 15
    assert ("biased.classifier.weight" in state) == (method in ("lff", "cdvg_lff"))
    if method in ("lff", "cdvg_lff"):
        assert bool((state["updated"] == 1).all()) and bool((state["ema_b"] > 0).all())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and all("seconds" not in h for h in history)
    assert all(set(h["valid"]) == {"accuracy"} for h in history)
    assert doc["valid_accuracy"] == history[doc["best_epoch"] - 1]["valid"]["accuracy"]
    assert ("contrastive" in history[0]["train"]) == (method in ("cdvg", "cdvg_lff"))
    assert ("gce" in history[0]["train"]) == (method in ("lff", "cdvg_lff"))
    assert set(doc) == {"method", "backbone", "rho", "seed", "source", "n", "epochs", "steps", "best_epoch",
                        "valid_accuracy", "test", "keys_read", "scored_on", "fingerprint"}
    got = (doc["method"], doc["backbone"], doc["rho"], doc["seed"], doc["source"])
    assert got == (method, "mlp", 0.95, 0, "digits")
    n_conf = len(load_file(str(work / "sets" / f"rho{RHO}" / "test_conflicting.safetensors"))["labels"])
    assert doc["n"] == {"train": 160, "valid": 48, "test": 80, "test_conflicting": n_conf,
                        "test_aligned": 80 - n_conf}
    assert doc["epochs"] == 3 and doc["steps"] == 15 and doc["best_epoch"] in (1, 2, 3)
    assert doc["valid_accuracy"] == max(h["valid"]["accuracy"] for h in history)
    assert set(doc["test"]) == {"unbiased", "conflicting", "aligned"}
    assert all(0 <= a <= 1 for a in doc["test"].values())
    # unbiased accuracy is the size-weighted mean of its two parts
    t = doc["test"]
    assert t["unbiased"] == pytest.approx((n_conf * t["conflicting"] + (80 - n_conf) * t["aligned"]) / 80)
    timing = json.loads((work / "runs" / f"{method}-timing.json").read_text())
    assert {"load", "train", "test", "train_epochs"} <= set(timing)


def test_bias_labels_are_never_read(work, reference):
    for method in METHODS:
        keys = result(reference[method])["keys_read"]
        views = ["views.views"] if method in ("cdvg", "cdvg_lff") else []
        assert keys == ["train.images", "train.labels", "valid.images", "valid.labels", *views]
        assert not any("bias" in k or "target" in k for k in keys + result(reference[method])["scored_on"])


def test_shuffled_or_removed_bias_arrays_give_the_same_bytes(work, reference):
    """The training file with its bias array shuffled (lff, cdvg_lff) or replaced by zeros (cdvg) trains the very
    same model: the bias labels cannot reach training."""
    src = work / "sets" / f"rho{RHO}"
    for name, method, edit in (("shuffled", "lff", lambda b: b[torch.randperm(len(b))]),
                               ("zeros", "cdvg_lff", torch.zeros_like)):
        folder = work / f"sets-{name}" / f"rho{RHO}"
        folder.mkdir(parents=True)
        for f in src.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        train = load_file(str(src / "train.safetensors"))
        changed = edit(train["bias"])
        assert not torch.equal(changed, train["bias"])
        save_file({**train, "bias": changed}, str(folder / "train.safetensors"))
        assert cli(stage(work, method, f"runs/{name}", sets=f"sets-{name}")) == 0
        for f in OUT_FILES:
            assert (work / "runs" / name / f).read_bytes() == (reference[method] / f).read_bytes(), (name, f)


def test_same_params_and_seed_give_the_same_bytes_and_methods_share_initial_weights(work, reference):
    from pipeline.cdvg.data import read_training
    from pipeline.cdvg.run import build

    assert cli(stage(work, "cdvg_lff", "runs/again")) == 0
    for f in OUT_FILES:
        assert (work / "runs/again" / f).read_bytes() == (reference["cdvg_lff"] / f).read_bytes(), f
    cfg = MethodsConfig(mlp_hidden=[32, 32], cnn_width=4, proj_dim=8)
    data = read_training(work / "sets" / f"rho{RHO}")
    for backbone in ("mlp", "cnn"):
        first = {m: build(cfg, m, backbone, 0, data).debiased.state_dict() for m in METHODS}
        assert all(torch.equal(first["erm"][k], first[m][k]) for m in METHODS for k in first["erm"])
        other = build(cfg, "erm", backbone, 1, data).debiased.state_dict()
        assert not torch.equal(other["classifier.weight"], first["erm"]["classifier.weight"])
    # after training the methods differ
    models = {m: load_file(str(reference[m] / "model.safetensors")) for m in METHODS}
    key = "debiased.body.1.weight"
    assert len({models[m][key].numpy().tobytes() for m in METHODS}) == len(METHODS)


def test_the_cnn_backbone_trains(work):
    assert cli(stage(work, "cdvg", "runs/cnn", backbone="cnn")) == 0
    doc = result(work / "runs/cnn")
    assert doc["backbone"] == "cnn" and doc["steps"] == 15
    assert "debiased.body.convs.0.weight" in load_file(str(work / "runs/cnn/model.safetensors"))


def test_erm_on_a_strongly_biased_set_fails_the_conflicting_images(tmp_path):
    """The synthetic data really is biased: at rho 0.99 ERM's conflicting accuracy is below its aligned one."""
    write_sets(tmp_path / "sets" / "rho0.99", 0.99, n_train=240)
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    raw["cdvg"]["train"]["train"]["epochs"] = 4
    raw["cdvg"]["data"]["rhos"] = [0.99]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert cli(stage(tmp_path, "erm", "runs/erm", rho="0.99")) == 0
    t = result(tmp_path / "runs/erm")["test"]
    assert t["aligned"] > 0.9 and t["conflicting"] < t["aligned"] - 0.3, t


def slow_stage(argv: list[str]) -> None:
    """Subprocess entry: the stage's CLI with argv[0] seconds of sleep per training step (to be killed in time)."""
    from pipeline.cdvg import objective

    pause, original = float(argv[0]), objective.Objective.__call__

    def slow(self, model, batch):
        time.sleep(pause)
        return original(self, model, batch)

    objective.Objective.__call__ = slow
    sys.exit(cli(argv[1:]))


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(work, reference, capsys):
    """LfF's loss averages are buffers of the model: a resumed cdvg_lff run restores them."""
    partial = work / "runs/killed.run.partial"
    cmd = stage(work, "cdvg_lff", "runs/killed")
    done = kill_at_first_checkpoint("test_cdvg_methods", 0.2, cmd, partial)
    assert done == 1 and not (work / "runs/killed/model.safetensors").exists()
    assert cli(cmd) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    for f in OUT_FILES:
        assert (reference["cdvg_lff"] / f).read_bytes() == (work / "runs/killed" / f).read_bytes(), f
    assert not partial.exists() and not (work / "runs/killed.run").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["train"].update(lam=-1.0), "params: cdvg.train.lam: must be >= 0"),
    (lambda d: d["data"].update(rhos=[1.5]), "params: cdvg.data.rhos: 1.5: a bias-aligned ratio must be in (0, 1)"),
    (lambda d: d["data"].update(rhos=[0]), "params: cdvg.data.rhos: 0.0: a bias-aligned ratio must be in (0, 1)"),
    (lambda d: d["data"].update(source="cifar"), "params: cdvg.data.source:"),
])
def test_bad_params_are_one_line_errors(work, capsys, edit, message):
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    edit(raw["cdvg"])
    (work / "params-bad.yaml").write_text(yaml.safe_dump(raw))
    assert cli(stage(work, "cdvg", "runs/bad", "params-bad.yaml")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (work / "runs/bad").exists() and not (work / "runs/bad.run").exists()


def test_a_bad_method_or_missing_inputs_are_one_line(work, capsys, tmp_path):
    def one_line(cmd, *parts):
        assert cli(cmd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(p in err[0] for p in parts), err

    one_line(stage(work, "foo", "runs/bad"), "cdvg.train.methods", "'foo'")
    one_line(stage(work, "erm", "runs/bad", backbone="resnet"), "cdvg.train.backbones", "'resnet'")
    cmd = stage(work, "cdvg", "runs/bad")
    cmd[cmd.index("--views") + 1] = str(tmp_path / "nothing")
    one_line(cmd, f"rho{RHO}/views.safetensors: missing", "cdvg-views")
    # views of another training set (other N)
    write_views_n = tmp_path / "views" / f"rho{RHO}"
    write_views_n.mkdir(parents=True)
    save_file({"views": torch.zeros(7, SIZE, SIZE, 3, dtype=torch.uint8), "target": torch.zeros(7, dtype=torch.int64)},
              str(write_views_n / "views.safetensors"))
    cmd[cmd.index("--views") + 1] = str(tmp_path / "views")
    one_line(cmd, "views.safetensors: views of 7 training images, but the training set has 160", "dvc repro cdvg-views")
    # erm never reads views: a missing views folder is fine for it, a missing sets folder is not
    one_line(stage(work, "erm", "runs/bad", rho="0.9"), "cdvg.data.rhos", "--rho 0.9 is not one of [0.95]")
    one_line(stage(work, "erm", "runs/bad", sets="nothing"), f"rho{RHO}/train.safetensors: missing", "cdvg-data")
    assert not (work / "runs/bad").exists()
