"""Sharing the first task between strategies whose first-task training is the same computation.

On task 0 there is no previous task: the buffer is empty while the task trains, there is no teacher, no
Fisher and no stored transcript, so replay, S-KD, LwF, EWC, the rehearsal contrastive term and joint
training all reduce to plain fine-tuning there. Only the audio-text term (``mm``, on current samples)
changes the first task. Strategies that agree on what matters there start from the same init weights and
RNG state, so they train bit-identical first-task models (checked by the tests): stage ``first@<seed>``
trains each distinct first task once and every ``train@<strategy>-<seed>-task0`` adopts the state at the
end of its last epoch, then runs only its own end-of-task work (buffer selection, S-KD targets, Fisher)
and its evaluation. The adoption goes through the same fingerprinted resume path as a restart after a kill,
so a state trained with other params, data or init weights is never adopted.

Layout of ``models/cil/first/s<seed>`` (the stage's output)::

    <strategy>/model.safetensors, optimizer.pt, rng.pt   the state after the first task's last epoch
    <strategy>/state.json                                  fingerprint, epochs done, loss history
    timing.json                                            training seconds per strategy (for the report)

The per-strategy folders hold no timings, so a re-run with an unchanged first task rewrites them byte for
byte and DVC re-runs none of the strategies' stages that depend on them.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

from pipeline.config import Recipe
from pipeline.core import checkpoint as ckpt

# Recipe fields that change nothing before the end of task 0 (see the module docstring). Every other field
# keeps its value in the first-task recipe, so a field added later is assumed to matter until it is listed
# here (tests/test_first_task.py checks every field is classified).
NO_EFFECT_ON_FIRST_TASK = frozenset({
    "joint",  # task 0's seen classes are task 0's classes
    "replay", "buffer_size", "buffer_selection", "buffer_batch_size",  # the buffer is filled after the task
    "contrastive", "lambda_contrastive", "tau",  # rehearsal samples only
    "skd", "lambda_skd",  # rehearsal samples and a teacher only
    "lwf", "lwf_alpha", "lwf_temperature",  # past classes and a teacher only
    "ewc", "ewc_lambda",  # the Fisher is computed after the task
    "epochs",  # later tasks only
})
MM_FIELDS = ("lambda_mm", "tau_mm", "mm_target", "mm_loss")  # matter only when mm is on


def first_task_recipe(recipe: Recipe) -> Recipe:
    """The recipe with every setting that cannot change task 0's training reset to its default.

    Two strategies with equal first-task recipes (and the same params, seed and init) train the same
    first-task model.
    """
    defaults = Recipe()
    reset = set(NO_EFFECT_ON_FIRST_TASK) | (set() if recipe.mm else set(MM_FIELDS))
    return replace(recipe, **{name: getattr(defaults, name) for name in reset})


def first_task_groups(recipes: dict[str, Recipe], strategies: list[str]) -> list[tuple[Recipe, list[str]]]:
    """``strategies`` grouped by first-task recipe, in order of first appearance."""
    groups: dict[str, tuple[Recipe, list[str]]] = {}
    for name in strategies:
        reduced = first_task_recipe(recipes[name])
        key = ckpt.json_digest(asdict(reduced))
        groups.setdefault(key, (reduced, []))[1].append(name)
    return list(groups.values())


def describe(recipe: Recipe) -> str:
    """Short text of what a first-task recipe adds to plain fine-tuning."""
    defaults = Recipe()
    changed = [f"{f.name}={getattr(recipe, f.name)}" for f in fields(Recipe) if getattr(recipe, f.name) != getattr(defaults, f.name)]
    return ", ".join(changed) or "plain fine-tuning"


def write_shared(partial: Path, dest: Path) -> None:
    """Write a finished first task's end-of-epoch state (a ``.partial`` folder) to ``dest`` without timings."""
    meta = ckpt.read_meta(partial)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in meta["history"]]
    shared = {"fingerprint": meta["fingerprint"], "epochs_done": meta["epochs_done"], "history": history, "seconds": 0.0}
    ckpt.write_folder(dest, {"model": ckpt.read_tensors(partial, "model")},
                      {"optimizer": ckpt.read_pickled(partial, "optimizer"), "rng": ckpt.read_pickled(partial, "rng")},
                      shared)
