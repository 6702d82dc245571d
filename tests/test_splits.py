"""Class-incremental splits: preset task sizes, partitions, class orders, n_tasks spreading."""

from __future__ import annotations

import pytest

from pipeline.config import PRESETS, SplitConfig
from pipeline.data.schema import FSC_INTENTS, FSC_PAPER_ORDER
from pipeline.data.slurp import SLURP_SCENARIOS
from pipeline.data.splits import class_order, make_tasks, task_sizes
from pipeline.errors import ParamsError

FSC = list(FSC_INTENTS)
SLURP = sorted(SLURP_SCENARIOS)


def split(**kw) -> SplitConfig:
    cfg = SplitConfig(**{"preset": None, **kw})
    cfg.validate("split")
    return cfg


# The published task sizes (Cappellazzo et al. for FSC; the COCONUT paper's SLURP settings).
PUBLISHED = {
    "fsc-3": [11, 10, 10],
    "fsc-6": [6, 5, 5, 5, 5, 5],
    "fsc-10": [4] + [3] * 9,
    "slurp-3": [6, 6, 6],
    "slurp-6": [3] * 6,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_give_published_task_sizes_and_partition(name):
    assert set(PUBLISHED) == set(PRESETS)
    family = PRESETS[name]["family"]
    classes = FSC if family == "fsc" else SLURP
    order = "paper" if family == "fsc" else "sorted"
    cfg = SplitConfig(preset=name, class_order=order)
    assert task_sizes(cfg, len(classes), family) == PUBLISHED[name]
    tasks = make_tasks(cfg, classes, family)
    assert [len(t) for t in tasks] == PUBLISHED[name]
    flat = [c for t in tasks for c in t]
    assert len(flat) == len(set(flat)) == len(classes)  # disjoint
    assert set(flat) == set(range(len(classes)))  # union = all classes


def test_paper_order_is_used_verbatim():
    assert sorted(FSC_PAPER_ORDER) == list(range(31))
    tasks = make_tasks(SplitConfig(preset="fsc-6", class_order="paper"), FSC, "fsc")
    assert [c for t in tasks for c in t] == list(FSC_PAPER_ORDER)
    assert tasks[0] == [19, 27, 30, 28, 15, 4] and tasks[-1] == [18, 24, 26, 0, 13]
    three = make_tasks(SplitConfig(preset="fsc-3", class_order="paper"), FSC, "fsc")
    assert three[1] == list(FSC_PAPER_ORDER[11:21])


def test_paper_order_needs_the_fsc_intents():
    with pytest.raises(ParamsError, match=r"^params: split\.class_order: 'paper' is the fixed FSC order"):
        class_order(SplitConfig(class_order="paper"), SLURP)
    with pytest.raises(ParamsError, match="class_order"):
        class_order(SplitConfig(class_order="paper"), FSC[::-1])  # same names, other order: other indices


def test_sorted_and_explicit_orders():
    assert make_tasks(split(n_tasks=3, class_order="sorted"), SLURP, "slurp") == [
        list(range(6)), list(range(6, 12)), list(range(12, 18))
    ]  # fmt: skip
    explicit = [17 - i for i in range(18)]
    assert make_tasks(split(initial_increment=8, increment=5, class_order=explicit), SLURP, "slurp") == [
        explicit[:8], explicit[8:13], explicit[13:]
    ]  # fmt: skip
    for bad in ([0] * 18, list(range(17)), list(range(1, 19))):
        with pytest.raises(ParamsError, match=r"split\.class_order: must be a permutation of 0\.\.17"):
            class_order(split(n_tasks=3, class_order=bad), SLURP)


def test_random_order_depends_on_order_seed_only():
    a = class_order(split(n_tasks=3, class_order="random", order_seed=1), FSC)
    b = class_order(split(n_tasks=6, class_order="random", order_seed=1), FSC)
    c = class_order(SplitConfig(preset="fsc-10", class_order="random", order_seed=1), FSC)
    assert a == b == c  # the split sizes do not change the order
    assert sorted(a) == list(range(31)) and a != list(range(31))
    others = {tuple(class_order(split(n_tasks=3, class_order="random", order_seed=s), FSC)) for s in range(2, 12)}
    assert tuple(a) not in others and len(others) == 10  # each seed its own permutation
    tasks = make_tasks(split(n_tasks=3, class_order="random", order_seed=1), FSC, "fsc")
    assert [c for t in tasks for c in t] == a


@pytest.mark.parametrize("n_classes", [18, 31])
def test_n_tasks_spreads_evenly_with_the_remainder_first(n_classes):
    for n in range(1, n_classes + 1):
        sizes = task_sizes(split(n_tasks=n), n_classes, "fsc")
        step, rest = divmod(n_classes, n)
        assert sizes == [step + rest] + [step] * (n - 1), (n, sizes)
    assert task_sizes(split(n_tasks=4), 31, "fsc") == [10, 7, 7, 7]
    assert task_sizes(split(n_tasks=1), 31, "fsc") == [31]
    with pytest.raises(ParamsError, match=rf"split\.n_tasks: must be at most the number of classes \({n_classes}\)"):
        task_sizes(split(n_tasks=n_classes + 1), n_classes, "fsc")


def test_explicit_increments():
    assert task_sizes(split(initial_increment=16, increment=5), 31, "fsc") == [16, 5, 5, 5]
    assert task_sizes(split(initial_increment=31, increment=7), 31, "fsc") == [31]
    with pytest.raises(ParamsError, match=r"split\.increment: 31 classes cannot be cut into a first task of 10 and further tasks of 6"):
        task_sizes(split(initial_increment=10, increment=6), 31, "fsc")


def test_preset_must_fit_the_corpus():
    with pytest.raises(ParamsError, match=r"split\.preset: 'slurp-3' is for slurp with 18 classes, but the corpus is slurp with 17"):
        task_sizes(SplitConfig(preset="slurp-3"), 17, "slurp")
    with pytest.raises(ParamsError, match=r"split\.preset: 'fsc-3' is for fsc"):
        task_sizes(SplitConfig(preset="fsc-3"), 18, "slurp")
