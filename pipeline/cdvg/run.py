"""One debiasing run (``cdvg@<method>-<backbone>-<rho>-<seed>``): train on one ratio's biased training set,
select by valid accuracy, then score the selected debiased net on the unbiased test set and its
bias-conflicting and bias-aligned parts.

Inputs: the sets folder ``<sets>/rho<R>`` of ``cdvg-data`` (train and valid: images and class labels only,
:func:`pipeline.cdvg.data.read_training`) and, for ``cdvg`` and ``cdvg_lff``, the ``views`` array of
``<views>/rho<R>/views.safetensors`` (``cdvg-views``; row i = the bias-transformed view of training image i).
The bias labels are never read; the test files are read after training (``scored_on``).

Training goes through the plain trainer into ``<out>.run`` (a killed run resumes after its last finished epoch
with the same bytes); then ``--out`` is written all at once::

    <out>/model.safetensors   the Model / LfFModel state_dict (debiased.*; lff: biased.*, ema_b, ema_d,
                              updated; steps) of the selected epoch (its ``steps``: the steps up to it)
    <out>/history.jsonl       per epoch: train (loss, ce; contrastive; gce, w_mean), valid (accuracy), lr
    <out>/result.json         {method, backbone, rho, seed, source, n: {train, valid, test, test_conflicting,
                               test_aligned}, epochs, steps (all the run's), best_epoch, valid_accuracy,
                               test: {unbiased, conflicting, aligned}, keys_read, scored_on, fingerprint}

Accuracies are fractions in [0, 1] (null for an empty test part). Same params and seed, same bytes on the CPU;
wall times go to the ``--timing`` file outside.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from pipeline.cdvg.data import TEST_SPLITS, TRAINING_KEYS, TrainingData, read_arrays, read_test, read_training
from pipeline.cdvg.model import Model, debiased_of, make_model
from pipeline.cdvg.objective import VIEW_METHODS, Objective, TrainRows, ValidAccuracy, accuracy
from pipeline.cdvg.params import BACKBONES, METHODS, rho_tag
from pipeline.core.checkpoint import json_digest, read_tensors, tensor_digest
from pipeline.core.params import require
from pipeline.core.runtime import Clock, write_timing
from pipeline.core.trainer import Trainer, derive_seed, publish
from pipeline.errors import DataError

OWNER = "cdvg"
VIEWS_FILE = "views.safetensors"
KEY = "cdvg.train"
#: result.json's names of the test splits
TEST_NAMES = {"test": "unbiased", "test_conflicting": "conflicting", "test_aligned": "aligned"}


def read_views(folder: Path, data: TrainingData) -> torch.Tensor:
    """The ``views`` array of the ratio's views file (only that key), checked against the training images."""
    path = Path(folder) / VIEWS_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; run the cdvg-views stage (dvc repro cdvg-views)")
    views = read_arrays(path, ("views",), stage="cdvg-views")["views"]
    n, shape = len(data.train_labels), tuple(data.train_images.shape)
    if views.dtype != torch.uint8 or tuple(views.shape[1:]) != shape[1:]:
        raise DataError(f"{path}: views must be uint8 {list(shape)} like the training images, got {views.dtype} "
                        f"{list(views.shape)}; run dvc repro cdvg-views")
    if views.shape[0] != n:
        raise DataError(f"{path}: views of {views.shape[0]} training images, but the training set has {n}; "
                        "run dvc repro cdvg-views")
    return views


def fingerprint(cfg, method: str, backbone: str, rho: float, data_digest: str) -> str:
    # which methods / backbones exist does not change one run; the trainer adds its own config (train)
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("methods", "backbones", "train")}
    return json_digest({"method": method, "backbone": backbone, "rho": rho, "cdvg": settings, "data": data_digest})


def build(cfg, method: str, backbone: str, seed: int, data: TrainingData) -> Model:
    """The method's model: the debiased net's initial weights depend on (seed, backbone) alone, so every method
    of a seed starts from the same weights; LfF's biased net has its own derived seed."""
    return make_model(method, backbone, cfg, data.train_images.shape[1], data.n_classes, len(data.train_labels),
                      derive_seed(seed, "cdvg-init", backbone), derive_seed(seed, "cdvg-init-biased", backbone))


def fit(cfg, method: str, backbone: str, seed: int, data: TrainingData, views, run: Path, fp: str, label: str):
    model = build(cfg, method, backbone, seed, data)
    rows = TrainRows(data.train_images, data.train_labels, data.n_classes, views)
    trainer = Trainer(cfg.train, model, Objective(method, cfg, rows), ValidAccuracy(), out=run, fingerprint=fp,
                      seed=seed, key=f"{KEY}.train", label=label,
                      after_step=model.count_step)
    result = trainer.fit(rows.dataset(), TensorDataset(data.valid_images, data.valid_labels))
    return model, result, trainer


def score(model, test: dict, batch_size: int, device) -> dict:
    """The selected debiased net's accuracy on each test part (None when a part is empty)."""
    net = debiased_of(model)
    out = {}
    for split, name in TEST_NAMES.items():
        acc = accuracy(net, test[split]["images"], test[split]["labels"], batch_size, device)
        out[name] = None if acc != acc else acc  # NaN (empty part) -> null
    return out


def write_output(out: Path, run: Path, doc: dict, history: list) -> None:
    with publish(run, out, OWNER, history) as work:
        (work / "result.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def execute(cfg, *, method: str, backbone: str, rho: float, seed: int, source: str, sets: Path, views: Path,
            out: Path, timing: str | None) -> dict:
    """The whole run (``cfg``: the ``cdvg.train`` section); prints one line, returns result.json's dict."""
    clock = Clock()
    require(method in METHODS, f"{KEY}.methods", f"--method {method!r}: one of {', '.join(METHODS)}")
    require(backbone in BACKBONES, f"{KEY}.backbones", f"--backbone {backbone!r}: one of {', '.join(BACKBONES)}")
    require(0.0 < rho < 1.0, "cdvg.data.rhos", f"--rho {rho}: a bias-aligned ratio in (0, 1)")
    folder = Path(sets) / rho_tag(rho)
    data = read_training(folder)
    keys_read = list(data.keys_read)
    view_arrays = None
    if method in VIEW_METHODS:
        view_arrays = read_views(Path(views) / rho_tag(rho), data)
        keys_read.append("views.views")
    inputs = [data.train_images, data.train_labels, data.valid_images, data.valid_labels]
    fp = fingerprint(cfg, method, backbone, rho, tensor_digest(*inputs, *([view_arrays] if view_arrays is not None else [])))
    clock.mark("load")
    run = out.with_name(out.name + ".run")
    model, result, trainer = fit(cfg, method, backbone, seed, data, view_arrays, run, fp,
                                 f"cdvg-{method}-{backbone}-{rho_tag(rho)}-s{seed}")
    clock.mark("train")
    train_seconds = sum(row.get("seconds", 0.0) for row in result.history)
    steps = int(read_tensors(run, "last")["steps"])  # all the run's steps (the selected weights hold fewer)
    test = read_test(folder)  # after training: the trainer never saw it
    accs = score(model, test, cfg.train.eval_batch_size, trainer.device)
    clock.mark("test")
    doc = {"method": method, "backbone": backbone, "rho": rho, "seed": seed, "source": source,
           "n": {"train": len(data.train_labels), "valid": len(data.valid_labels),
                 **{s: len(test[s]["labels"]) for s in TEST_SPLITS}},
           "epochs": cfg.train.epochs, "steps": steps, "best_epoch": result.best_epoch,
           "valid_accuracy": result.best.get("accuracy"), "test": accs, "keys_read": keys_read,
           "scored_on": [f"{s}.{k}" for s in TEST_SPLITS for k in TRAINING_KEYS], "fingerprint": fp}
    write_output(out, run, doc, result.history)
    clock.mark("write")
    write_timing(timing, {**clock.marks, "train_epochs": train_seconds})
    fmt = lambda a: "n/a" if a is None else f"{100 * a:.1f}"  # noqa: E731
    print(f"cdvg {method} {backbone} {rho_tag(rho)} s{seed}: {doc['steps']} steps, best epoch {result.best_epoch} "
          f"(valid {fmt(doc['valid_accuracy'])}); test unbiased {fmt(accs['unbiased'])}, conflicting "
          f"{fmt(accs['conflicting'])}, aligned {fmt(accs['aligned'])} [{sum(clock.marks.values()):.0f} s]")
    return doc
