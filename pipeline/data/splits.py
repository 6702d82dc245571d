"""Class-incremental task split: a class order cut into tasks, written as a small JSON manifest."""

from __future__ import annotations

import random

from pipeline.config import PRESETS, SplitConfig
from pipeline.data.schema import FSC_INTENTS, FSC_PAPER_ORDER
from pipeline.errors import ParamsError


def class_order(cfg: SplitConfig, classes: list[str]) -> list[int]:
    """The order in which classes arrive, as indices into ``classes``."""
    n = len(classes)
    if cfg.class_order == "sorted":
        return list(range(n))
    if cfg.class_order == "random":
        order = list(range(n))
        random.Random(cfg.order_seed).shuffle(order)
        return order
    if cfg.class_order == "paper":
        if tuple(classes) != FSC_INTENTS:
            raise ParamsError(
                "params: split.class_order: 'paper' is the fixed FSC order and needs the 31 FSC intents; "
                "use 'sorted', 'random' or a list for this corpus"
            )
        return list(FSC_PAPER_ORDER)
    order = list(cfg.class_order)
    if sorted(order) != list(range(n)):
        raise ParamsError(
            f"params: split.class_order: must be a permutation of 0..{n - 1} ({n} classes in this corpus), "
            f"got {len(order)} entries"
        )
    return order


def task_sizes(cfg: SplitConfig, n_classes: int, family: str) -> list[int]:
    """Number of classes in each task."""
    if cfg.preset is not None:
        p = PRESETS[cfg.preset]
        if p["family"] != family or p["n_classes"] != n_classes:
            raise ParamsError(
                f"params: split.preset: {cfg.preset!r} is for {p['family']} with {p['n_classes']} classes, "
                f"but the corpus is {family} with {n_classes} classes"
            )
        first, step = p["initial_increment"], p["increment"]
    elif cfg.n_tasks is not None:
        if cfg.n_tasks > n_classes:
            raise ParamsError(
                f"params: split.n_tasks: must be at most the number of classes ({n_classes}), got {cfg.n_tasks}"
            )
        step = n_classes // cfg.n_tasks
        first = n_classes - step * (cfg.n_tasks - 1)
    else:
        first, step = cfg.initial_increment, cfg.increment
    if first > n_classes or (n_classes - first) % step:
        raise ParamsError(
            f"params: split.increment: {n_classes} classes cannot be cut into a first task of {first} "
            f"and further tasks of {step}"
        )
    return [first] + [step] * ((n_classes - first) // step)


def family_of(source: str) -> str:
    """The corpus family of a ``data.source``: the synthetic corpus has the FSC intents."""
    return "slurp" if source == "slurp" else "fsc"


def check_split_for_source(cfg: SplitConfig, source: str) -> None:
    """Check what ``data.source`` alone decides (called by :func:`pipeline.config.load_prepare`).

    FSC family: the classes are the 31 intents, so the whole split is built once (any error is the
    one prepare would raise later). SLURP: the preset must be a SLURP preset and the order cannot
    be ``paper``; the class count is known only once the corpus is read.
    """
    family = family_of(source)
    if cfg.preset is not None and PRESETS[cfg.preset]["family"] != family:
        fitting = [name for name, p in PRESETS.items() if p["family"] == family]
        raise ParamsError(
            f"params: split.preset: {cfg.preset!r} is for {PRESETS[cfg.preset]['family']} corpora but data.source "
            f"is {source!r}; use one of {', '.join(fitting)} or null"
        )
    if family == "fsc":
        make_tasks(cfg, list(FSC_INTENTS), family)
    elif cfg.class_order == "paper":
        class_order(cfg, [])  # raises: 'paper' needs the FSC intents


def make_tasks(cfg: SplitConfig, classes: list[str], family: str) -> list[list[int]]:
    """Class indices of each task, in arrival order."""
    order = class_order(cfg, classes)
    tasks, start = [], 0
    for size in task_sizes(cfg, len(classes), family):
        tasks.append(order[start : start + size])
        start += size
    return tasks
