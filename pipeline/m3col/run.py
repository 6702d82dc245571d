"""One M3CoL run, from a task's data to the stage's output folder.

Training goes through the plain trainer into ``<out>.run`` (a killed run resumes after its last finished
epoch; selection by the VALID accuracy of the inference head); then the selected model is scored on the test
split once, and the folder is written all at once::

    <out>/model.safetensors    the selected model (state_dict)
    <out>/state.json           the trainer's state: fingerprint, best epoch and its valid metrics
    <out>/history.jsonl        per epoch: train loss terms, valid accuracy, lr, the contrastive phase
    <out>/scores.safetensors   test.logits float32 [N, C], test.labels int64 [N]
    <out>/result.json          task, variant, seed, classes, sizes, epochs, best and switch epochs, valid and
                               test metrics, per-class and per-condition test accuracy, the analytic ceilings

Same params and seed, same bytes on the CPU; wall times go to the ``--timing`` file outside.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from pipeline.core.atomic import atomic_dir
from pipeline.core.checkpoint import json_digest
from pipeline.core.runtime import Clock, write_timing
from pipeline.core.trainer import DeviceLoader, Trainer, derive_seed
from pipeline.m3col.model import FusionModel
from pipeline.m3col.objective import Objective, Scorer, accuracy_report, phase, predict, switch_epoch
from pipeline.m3col.params import FUSION_VARIANTS

OWNER = "m3col"


def stage_arguments(parser, task: str) -> None:
    parser.add_argument("--variant", required=True, help="a modality (unimodal), concat, aux, clip, m3co or m3col")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data", default="data/m3col", help="prepare-m3col's folder (default: data/m3col)")
    parser.add_argument("--out", default=None, help=f"default: models/m3col/{task}/<variant>/s<seed>")
    parser.add_argument("--timing", default=None, help="where the wall times go (outside --out)")


def build_model(variant: str, data, encoders, heads, seed: int) -> FusionModel:
    """The variant's model from ``encoders()`` (modality -> module) and its heads; torch is seeded first, so the
    initial weights depend on the seed alone."""
    torch.manual_seed(derive_seed(seed, "init"))
    return FusionModel(variant, data.modalities, encoders(), len(data.classes), heads.dim, heads.hidden, heads.dropout)


def fit(model: FusionModel, data, task_cfg, loss_cfg, *, variant: str, seed: int, out: Path, key: str,
        scorer: Scorer | None = None):
    """Train and select on VALID; returns (trainer result, device, scorer). The model ends with the selected
    weights."""
    objective = Objective(variant, loss_cfg, task_cfg.train.epochs)
    used_loss = asdict(loss_cfg) if variant in ("clip", "m3co", "m3col") else None  # the others never read it
    fingerprint = json_digest({"task": data.name, "variant": variant, "cfg": asdict(task_cfg), "loss": used_loss,
                               "data": data.digest})
    scorer = scorer or Scorer()
    trainer = Trainer(task_cfg.train, model, objective, scorer, out=run_folder(out), fingerprint=fingerprint,
                      seed=seed, key=key, label=f"m3col-{data.name}-{variant}-s{seed}", on_epoch=objective.set_epoch)
    result = trainer.fit(data.splits["train"], data.splits["valid"])
    return result, trainer.device, scorer, fingerprint


def run_folder(out: Path) -> Path:
    return out.with_name(out.name + ".run")


def write_output(out: Path, data, variant: str, seed: int, result, logits, labels, task_cfg, loss_cfg,
                 fingerprint: str) -> dict:
    """Write the stage's folder (the module docstring) and remove the trainer's; returns result.json's dict."""
    epochs = task_cfg.train.epochs
    metrics, per_class, conditions = accuracy_report(logits, labels, len(data.classes), data.conditions)
    doc = {"task": data.name, "variant": variant, "kind": "fusion" if variant in FUSION_VARIANTS else "unimodal",
           "modalities": list(data.modalities), "seed": seed, "source": data.source, "classes": data.classes,
           "n": {s: len(d) for s, d in data.splits.items()}, "epochs": epochs, "best_epoch": result.best_epoch,
           "switch_epoch": switch_epoch(variant, loss_cfg, epochs),
           "contrastive": {"clip": "infonce", "m3co": "m3co", "m3col": "m3co>softclip"}.get(variant, "none"),
           "valid": result.best, "test": metrics, "per_class": per_class, "conditions": conditions,
           "ceiling": data.ceiling, "fingerprint": fingerprint}
    src = run_folder(out)
    with atomic_dir(out, owner=OWNER) as work:
        for name in ("model.safetensors", "state.json"):
            shutil.copyfile(src / name, work / name)
        rows = [{**{k: v for k, v in row.items() if k != "seconds"}, "phase": phase(variant, row["epoch"], loss_cfg, epochs)}
                for row in result.history]
        (work / "history.jsonl").write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        save_file({"test.logits": logits.float().contiguous(), "test.labels": labels.long().contiguous()},
                  str(work / "scores.safetensors"))
        (work / "result.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(src, ignore_errors=True)
    return doc


def execute(*, data, variant: str, seed: int, encoders, task_cfg, loss_cfg, out: Path, timing: str | None,
            key: str, clock: Clock) -> dict:
    """Build (``encoders()``: modality -> encoder module), train, score the test split once, write the output;
    prints one line, returns result.json's dict."""
    from pipeline.core.params import require

    require(variant in (*data.modalities, *FUSION_VARIANTS), f"{key}.variants",
            f"{variant!r}: one of {', '.join((*data.modalities, *FUSION_VARIANTS))}")
    clock.mark("load")
    model = build_model(variant, data, encoders, task_cfg.heads, seed)
    result, device, _, fingerprint = fit(model, data, task_cfg, loss_cfg, variant=variant, seed=seed, out=out,
                                         key=f"{key}.train")
    clock.mark("train")
    test = DeviceLoader(DataLoader(data.splits["test"], batch_size=task_cfg.train.eval_batch_size), device)
    logits, labels = predict(model, test)
    doc = write_output(out, data, variant, seed, result, logits, labels, task_cfg, loss_cfg, fingerprint)
    clock.mark("evaluate")
    write_timing(timing, clock.marks)
    print(f"m3col-{data.name} {variant} s{seed}: test accuracy {100 * doc['test']['accuracy']:.1f} "
          f"(valid {100 * result.best['accuracy']:.1f} at epoch {result.best_epoch}) [{sum(clock.marks.values()):.0f} s]")
    return doc
