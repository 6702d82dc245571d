"""One CWCL run, from a built model and datasets to the stage's output folder.

Training goes through the plain trainer into ``<out>.run`` (its ``.partial`` sibling makes a killed run
resume after its last finished epoch); then the selected model is scored on the test sets and the output
is written all at once::

    <out>/model.safetensors   the selected trainable side (and its logit scale)
    <out>/state.json          the trainer's state: fingerprint, best epoch and its valid metrics
    <out>/history.jsonl       per epoch: train loss terms, valid metrics, lr (no wall-clock times)
    <out>/zeroshot.safetensors  per test set <name>: <name>.scores float32 [N, C] (cosine to each class
                              description, or the supervised logits), <name>.labels int64 [N], <name>.emb
                              float16 [N, D] (unit rows, for maps), and <name>.protos float16 [C, D] when the
                              class prototypes come from the trained side (the image task's caption encoder)
    <out>/zeroshot.json       task, loss, seed, temperature, held-out classes, and per test set its class
                              names, held-out ids, metrics (:mod:`pipeline.cwcl.zeroshot`) and per-class accuracy

The same params and seed give the same bytes on the CPU; timings go to the ``--timing`` file outside.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from pipeline.core import runtime
from pipeline.core.runtime import write_timing
from pipeline.core.atomic import atomic_dir
from pipeline.core.checkpoint import json_digest
from pipeline.core.trainer import DeviceLoader, Trainer, TrainerConfig, derive_seed
from pipeline.cwcl.align import ScoreSet, contrastive_step, make_loss, supervised_step
from pipeline.cwcl.zeroshot import per_class_accuracy, zero_shot_metrics

OWNER = "cwcl"


def stage_arguments(parser, task: str) -> None:
    """The options both CWCL stages take (each adds its own input folder)."""
    parser.add_argument("--loss", required=True, choices=["cl", "cwcl", "supervised"])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--embeddings", default="data/embeddings", help="the embed stage's folder")
    parser.add_argument("--out", default=None, help=f"default: models/cwcl/{task}/<loss>/s<seed>")
    parser.add_argument("--timing", default=None, help="where the wall times go (outside --out)")


def seed_init(seed: int) -> None:
    """Seed torch before the model is built: its initial weights depend on the seed alone."""
    torch.manual_seed(derive_seed(seed, "init"))


def train(model, loss: str, tau: float, cfg: TrainerConfig, train_set, valid_set, evaluate, *, out: Path,
          fingerprint: str, seed: int, key: str, param_groups=None):
    """Fit ``model`` (an :class:`~pipeline.cwcl.align.Aligned`) with ``loss`` (cl, cwcl or supervised);
    returns the trainer's result and device. The model holds the selected weights afterwards."""
    step = supervised_step if loss == "supervised" else contrastive_step(make_loss(loss, tau))
    trainer = Trainer(cfg, model, step, evaluate, out=run_folder(out), fingerprint=fingerprint, seed=seed,
                      key=key, label=f"{out.parent.parent.name}-{loss}-s{seed}",
                      param_groups=param_groups)
    return trainer.fit(train_set, valid_set), trainer.device


def run_folder(out: Path) -> Path:
    return out.with_name(out.name + ".run")


def loader(dataset, batch_size: int, device: torch.device) -> DeviceLoader:
    """In-order batches on ``device`` (for scoring the test sets)."""
    return DeviceLoader(DataLoader(dataset, batch_size=batch_size, shuffle=False), device)


@torch.no_grad()
def score(fn, model, device: torch.device) -> ScoreSet:
    """``fn(model)`` in eval mode, under the device's autocast."""
    model.eval()
    with runtime.autocast(device):
        return fn(model)


def summarise(sets: dict[str, ScoreSet]) -> dict:
    """Per test set: class names, held-out ids, metrics and per-class accuracy."""
    return {name: {"classes": s.classes, "unseen": s.unseen, "n": int(s.labels.shape[0]),
                   "metrics": zero_shot_metrics(s.scores, s.labels, s.unseen),
                   "per_class": per_class_accuracy(s.scores, s.labels, s.unseen)} for name, s in sets.items()}


def write_output(out: Path, result, sets: dict[str, ScoreSet], meta: dict) -> dict:
    """Write the stage's folder (see the module docstring) and remove the trainer's folder; returns the summary."""
    summary = summarise(sets)
    src = run_folder(out)
    with atomic_dir(out, owner=OWNER) as work:
        for name in ("model.safetensors", "state.json"):
            shutil.copyfile(src / name, work / name)
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
        (work / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
        tensors = {}
        for name, s in sets.items():
            tensors[f"{name}.scores"] = s.scores.float().contiguous()
            tensors[f"{name}.labels"] = s.labels.long().contiguous()
            tensors[f"{name}.emb"] = s.emb.half().contiguous()
            if s.protos is not None:
                tensors[f"{name}.protos"] = s.protos.half().contiguous()
        save_file(tensors, str(work / "zeroshot.safetensors"))
        doc = {**meta, "best_epoch": result.best_epoch, "valid": result.best, "sets": summary}
        (work / "zeroshot.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(src, ignore_errors=True)
    return summary


def headline(label: str, summary: dict, seconds: float) -> str:
    parts = []
    for name, s in summary.items():
        m = s["metrics"]
        bits = [f"{k} {100 * m[k]:.1f}" for k in ("unseen", "seen", "harmonic") if k in m]
        parts.append(f"{name}: " + ", ".join(bits) + f" (chance {100 * m.get('chance_unseen', m['chance_all']):.1f})")
    return f"{label}: " + "; ".join(parts) + f" [{seconds:.0f} s]"


def execute(*, task: str, loss: str, seed: int, heldout_seed: int, task_cfg, learn: bool, data, model, tau: float,
            valid_scores, test_sets: dict, inputs: dict, out: Path, timing: str | None, clock: runtime.Clock,
            param_groups=None) -> dict:
    """Train, score the test sets and write the output of one stage run; returns the per-set summary.

    ``valid_scores(model, loader) -> ScoreSet`` drives the trainer's selection (metric
    ``<task>.train.select_metric`` of :func:`zero_shot_metrics`); ``test_sets``: name -> ``fn(model, device)
    -> ScoreSet``; ``inputs``: digests of the data read (with the task's params, the run's identity);
    ``param_groups``: the trainer's optimiser groups (default one group).
    """

    def evaluate(m, loader):
        s = valid_scores(m, loader)
        return zero_shot_metrics(s.scores, s.labels, s.unseen)

    fingerprint = json_digest({"task": asdict(task_cfg), "loss": loss, "tau": tau, "learn": learn,
                               "heldout": data.heldout, "inputs": inputs})
    result, device = train(model, loss, tau, task_cfg.train, data.train, data.valid, evaluate, out=out,
                           fingerprint=fingerprint, seed=seed, key=f"cwcl.{task}.train", param_groups=param_groups)
    clock.mark("train")
    sets = {name: score(lambda m, fn=fn: fn(m, device), model, device) for name, fn in test_sets.items()}
    meta = {"task": task, "loss": loss, "seed": seed, "heldout_seed": heldout_seed, "heldout": data.heldout,
            "tau": tau, "learn_temperature": learn, "final_tau": float(1.0 / model.scale()),
            "n_train": len(data.train), "fingerprint": fingerprint}
    summary = write_output(out, result, sets, meta)
    clock.mark("evaluate")
    write_timing(timing, clock.marks)
    print(headline(f"cwcl-{task} {loss} s{seed}", summary, sum(clock.marks.values())))
    return summary
