"""One GenView SSL run (``genview@<variant>-<seed>``): train the encoder on the unlabelled training rows with
the variant's views and loss, then evaluate it frozen (linear probes selected on valid, k-NN).

Inputs: the prepare-vision corpus ``<vision>/<genview.data.source>`` (train, valid, test) and the views file
``<views>/views.safetensors`` of ``genview-views``. Every variant reads the views file's ``index`` (the training
rows that have views: the first ``genview.data.n_train`` of the training split, and the rows SSL trains on);
``fixed`` reads ``fixed``, ``adaptive`` ``adaptive``, ``genview`` ``adaptive``, ``tokens_real``,
``tokens_adaptive``, ``fg_real`` and ``fg_adaptive``.

SSL sees pixels only: its training dataset is the row positions (:meth:`TrainImages.dataset`) and the step
reads the pixels and views of those rows; labels and bias are read after training, by the probes. Training
goes through the plain trainer into ``<out>.run`` (a killed run resumes after its last finished epoch with
the same bytes; selection keeps the last weights); then ``--out`` is written all at once::

    <out>/model.safetensors   the SSLNet state_dict (encoder.convs.*, encoder.head.* = the projection head,
                              steps)
    <out>/history.jsonl       per epoch: train (loss; genview: w_std, w_min, w_max of the quality weights,
                              means over the epoch's batches), valid (loss: NT-Xent of fixed SimCLR views of
                              the valid images; steps), lr
    <out>/result.json         {variant, seed, source, n: {ssl_train, probe_train, valid, test}, epochs, steps,
                               probe: {shape: {valid, test, lr, weight_decay, grid}, colour: {...}},
                               knn: {shape, colour, k, temperature}, fingerprint}

Accuracies are fractions in [0, 1]. The probes train on the features of the WHOLE training split (SSL may use
only its first ``n_train`` rows), selected by valid accuracy; the k-NN bank is the whole training split too,
queried by the test split. Same params and seed, same bytes on the CPU; wall times go to the ``--timing``
file outside.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pipeline.core.checkpoint import json_digest
from pipeline.core.params import require
from pipeline.core.runtime import Clock, write_timing
from pipeline.core.trainer import Trainer, derive_seed, publish
from pipeline.data.vision.imageset import read_corpus
from pipeline.errors import DataError, one_line
from pipeline.genview.model import SSLNet
from pipeline.genview.objective import Objective, TrainImages, ValidLoss
from pipeline.genview.params import VARIANTS
from pipeline.genview.probe import encode, knn_accuracy, linear_probe

OWNER = "genview"
VIEWS_FILE = "views.safetensors"

#: the views file's arrays each variant reads (besides ``index``)
NEEDS = {"simclr": (), "fixed": ("fixed",), "adaptive": ("adaptive",),
         "genview": ("adaptive", "tokens_real", "tokens_adaptive", "fg_real", "fg_adaptive")}


def read_views(folder: Path, variant: str, n_expected: int) -> dict[str, torch.Tensor]:
    """The views file's arrays the variant needs, checked against the training rows (one DataError line)."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / VIEWS_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; run the genview-views stage (dvc repro genview-views)")
    want = ("index", *NEEDS[variant])
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            absent = [k for k in want if k not in keys]
            if absent:
                raise DataError(f"{path}: no {absent[0]!r} array (variant {variant} reads it); re-run genview-views")
            views = {k: f.get_tensor(k) for k in want}
    except (OSError, SafetensorError) as exc:
        raise DataError(f"{path}: unreadable ({one_line(exc)}); re-run genview-views") from None
    index = views["index"]
    if index.dtype != torch.int64 or index.dim() != 1 or not torch.equal(index, torch.arange(len(index))):
        raise DataError(f"{path}: index must be int64 0..N-1 (the first training rows)")
    if len(index) != n_expected:
        raise DataError(f"{path}: views of {len(index)} training images, but genview.data.n_train asks for "
                        f"{n_expected}; re-run genview-views")
    n = len(index)
    for k in ("fixed", "adaptive"):
        if k in views:
            v = views[k]
            if v.dtype != torch.uint8 or v.dim() != 4 or v.shape[0] != n or v.shape[3] != 3:
                raise DataError(f"{path}: {k} must be uint8 [{n}, S, S, 3], got {v.dtype} {tuple(v.shape)}")
    if variant == "genview":
        t, fg = views["tokens_real"], views["fg_real"]
        if t.dim() != 4 or t.shape[0] != n or not t.is_floating_point():
            raise DataError(f"{path}: tokens_real must be float [{n}, k, h, w], got {t.dtype} {tuple(t.shape)}")
        for k, shape in (("tokens_adaptive", tuple(t.shape)), ("fg_real", (n, *t.shape[2:])),
                         ("fg_adaptive", (n, *t.shape[2:]))):
            if tuple(views[k].shape) != shape or not views[k].is_floating_point():
                raise DataError(f"{path}: {k} must be float {list(shape)}, got {views[k].dtype} {tuple(views[k].shape)}")
        for k in ("fg_real", "fg_adaptive"):
            v = views[k].float()
            views[k] = v
            if not bool(((v >= 0) & (v <= 1)).all()):
                raise DataError(f"{path}: {k} must hold soft foreground values in [0, 1]")
        for k in ("tokens_real", "tokens_adaptive"):
            views[k] = views[k].float()
            if not bool(torch.isfinite(views[k]).all()):
                raise DataError(f"{path}: {k} holds non-finite values")
    return views


def train_images(corpus: dict, views: dict) -> TrainImages:
    """The SSL training rows: pixels and views only (no labels, no bias)."""
    n = len(views["index"])
    real = torch.from_numpy(np.ascontiguousarray(corpus["train"].images[:n]))
    return TrainImages(real=real, **{k: v for k, v in views.items() if k != "index"})


def digest(data: TrainImages, valid: torch.Tensor) -> str:
    """The content of everything training reads (the rows' pixels, the variant's views, the valid pixels)."""
    h = hashlib.sha256()
    for name in ("real", "fixed", "adaptive", "tokens_real", "tokens_adaptive", "fg_real", "fg_adaptive"):
        value = getattr(data, name)
        if value is not None:
            h.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
            h.update(value.contiguous().numpy().tobytes())
    h.update(valid.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(params, variant: str, data_digest: str) -> str:
    ssl = {k: v for k, v in asdict(params.ssl).items() if k not in ("variants", "train")}  # the trainer adds train
    return json_digest({"variant": variant, "ssl": ssl, "source": params.data.source, "data": data_digest})


def build(params, seed: int) -> SSLNet:
    """The network with its initial weights from the seed alone (the same for every variant of a seed)."""
    torch.manual_seed(derive_seed(seed, "genview-init"))
    return SSLNet(params.ssl.width, params.ssl.proj_dim, params.ssl.encoder)


def fit(params, variant: str, seed: int, data: TrainImages, valid_images: torch.Tensor, run: Path,
        fp: str, label: str):
    model = build(params, seed)
    objective = Objective(variant, params.ssl, data)
    trainer = Trainer(params.ssl.train, model, objective, ValidLoss(valid_images, params.ssl), out=run,
                      fingerprint=fp, seed=seed, key="genview.ssl.train", label=label, after_step=model.count_step)
    valid = TensorDataset(torch.arange(valid_images.shape[0], dtype=torch.int64))
    result = trainer.fit(data.dataset(), valid)
    return model, result, trainer


def attributes(split) -> dict[str, np.ndarray]:
    """The probed attributes of a split: shape = the class, colour = the bias attribute (when the corpus has one)."""
    out = {"shape": split.labels}
    if split.bias is not None:
        out["colour"] = split.bias
    return out


def evaluate(model, params, corpus: dict, seed: int, device, clock: Clock) -> tuple[dict, dict]:
    """(probe results, k-NN results) of the frozen encoder (the module docstring)."""
    p = params.probe
    feats = {s: encode(model, torch.from_numpy(np.ascontiguousarray(corpus[s].images)), p.batch_size, device)
             for s in ("train", "valid", "test")}
    labels = {s: {a: torch.as_tensor(v, dtype=torch.int64) for a, v in attributes(corpus[s]).items()}
              for s in feats}
    clock.mark("features")
    probes, knn = {}, {"k": p.knn_k, "temperature": p.knn_temperature}
    for attr in labels["train"]:
        if not all(attr in labels[s] for s in labels):
            continue
        n_classes = int(max(int(labels[s][attr].max()) for s in labels if len(labels[s][attr]))) + 1
        if attr == "shape":
            n_classes = max(n_classes, len(corpus["train"].class_names))
        probes[attr] = linear_probe((feats["train"], labels["train"][attr]), (feats["valid"], labels["valid"][attr]),
                                    (feats["test"], labels["test"][attr]), n_classes, p.lrs, p.weight_decays,
                                    p.epochs, p.batch_size, seed=derive_seed(seed, "probe", attr))
        clock.mark(f"probe_{attr}")
        knn[attr] = knn_accuracy(feats["train"], labels["train"][attr], feats["test"], labels["test"][attr], n_classes,
                                 p.knn_k, p.knn_temperature)
        clock.mark(f"knn_{attr}")
    return probes, knn


def write_output(out: Path, run: Path, doc: dict, history: list) -> None:
    with publish(run, out, OWNER, history) as work:
        (work / "result.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def execute(params, *, variant: str, seed: int, vision: Path, views: Path, out: Path, timing: str | None) -> dict:
    """The whole run; prints one line, returns result.json's dict."""
    clock = Clock()
    require(variant in VARIANTS, "genview.ssl.variants", f"--variant {variant!r}: one of {', '.join(VARIANTS)}")
    corpus = read_corpus(vision, params.data.source, "genview.data.source")
    n = params.data.rows(len(corpus["train"]))
    view_arrays = read_views(views, variant, n)
    data = train_images(corpus, view_arrays)
    valid_images = torch.from_numpy(np.ascontiguousarray(corpus["valid"].images))
    fp = fingerprint(params, variant, digest(data, valid_images))
    clock.mark("load")
    run = out.with_name(out.name + ".run")
    model, result, trainer = fit(params, variant, seed, data, valid_images, run, fp, f"genview-{variant}-s{seed}")
    clock.mark("train")
    train_seconds = sum(row.get("seconds", 0.0) for row in result.history)
    probes, knn = evaluate(model, params, corpus, seed, trainer.device, clock)
    steps = int(model.steps)
    doc = {"variant": variant, "seed": seed, "source": params.data.source,
           "n": {"ssl_train": len(data), "probe_train": len(corpus["train"]), "valid": len(corpus["valid"]),
                 "test": len(corpus["test"])},
           "epochs": params.ssl.train.epochs, "steps": steps, "probe": probes, "knn": knn, "fingerprint": fp}
    write_output(out, run, doc, result.history)
    clock.mark("write")
    write_timing(timing, {**clock.marks, "train_epochs": train_seconds})
    shape = probes.get("shape", {})
    print(f"genview {variant} s{seed}: {steps} steps; linear probe shape {100 * shape.get('test', float('nan')):.1f} "
          f"(valid {100 * shape.get('valid', float('nan')):.1f})"
          + (f", colour {100 * probes['colour']['test']:.1f}" if "colour" in probes else "")
          + f"; k-NN shape {100 * knn.get('shape', float('nan')):.1f}"
          + (f", colour {100 * knn['colour']:.1f}" if "colour" in knn else "")
          + f" [{sum(clock.marks.values()):.0f} s]")
    return doc
