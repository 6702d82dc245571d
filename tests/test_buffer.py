"""The rehearsal buffer's herding (pipeline.continual.buffer): iCaRL's greedy running-mean selection on the
model's pooled encoder states, through Avalanche's ParametricBuffer, checked against a hand-computed case
and a slow loop over the iCaRL rule (Rebuffi et al. 2017, Algorithm 4)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.continual.buffer import EncoderHerding, buffer_state, make_storage_policy
from pipeline.continual.data import as_avalanche
from pipeline.data.prepared import SLUDataset

T_MAX = 6


class PoolingProbe(nn.Module):
    """A stand-in for SLUModel.encode: the encoder states are the input frames, and the padded steps hold
    garbage, so a herding that pooled over padding would pick other samples. Records its mode when called."""

    def __init__(self):
        super().__init__()
        self.modes: list[bool] = []

    def encode(self, feats: torch.Tensor, lens: torch.Tensor):
        self.modes.append(self.training)
        pad = torch.arange(feats.shape[1])[None, :] >= lens[:, None]  # [B, T] True at padded steps
        return feats.masked_fill(pad[..., None], 1000.0), lens, pad


def dataset(points: torch.Tensor, labels: list[int] | None = None) -> SLUDataset:
    """Sample i: ``1 + i % T_MAX`` frames all equal to ``points[i]`` (so its pooled state is exactly that)."""
    lengths = [1 + i % T_MAX for i in range(len(points))]
    frames = torch.cat([p.expand(n, -1) for p, n in zip(points, lengths)])
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    labels = labels if labels is not None else [0] * len(points)
    return SLUDataset(frames, offsets, labels, torch.zeros(len(points), 4, dtype=torch.long), T_MAX)


def agent(eval_mb_size: int = 3):
    return SimpleNamespace(eval_mb_size=eval_mb_size, device=torch.device("cpu"))


def icarl_herding(points: list[list[float]], m: int) -> list[int]:
    """iCaRL: p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k || over the samples not yet chosen."""
    n, d = len(points), len(points[0])
    mu = [sum(p[c] for p in points) / n for c in range(d)]
    chosen: list[int] = []
    total = [0.0] * d
    for k in range(1, m + 1):
        best, best_dist = None, None
        for j in range(n):
            if j in chosen:
                continue
            dist = sum((mu[c] - (total[c] + points[j][c]) / k) ** 2 for c in range(d))
            if best_dist is None or dist < best_dist:
                best, best_dist = j, dist
        chosen.append(best)
        total = [total[c] + points[best][c] for c in range(d)]
    return chosen


def test_herding_on_a_line_follows_the_running_mean_not_the_distance_to_the_mean():
    # values 10, 2, 0, 3, 1 (mean 3.2). Greedy running mean: 3 (mean 3), 2 (2.5), 1 (2), then 10 brings the
    # mean of four to 4 (0.8 from 3.2) where 0 would give 1.5 (1.7 away), and 0 last. Sorting by the distance
    # to the mean would put 0 (3.2 away) before 10 (6.8 away).
    values = [10.0, 2.0, 0.0, 3.0, 1.0]
    points = torch.tensor([[v, 0.0] for v in values])
    model = PoolingProbe().train()
    order = EncoderHerding(model).make_sorted_indices(agent(), as_avalanche(dataset(points)))
    assert order == [3, 1, 4, 0, 2]
    assert icarl_herding([[v] for v in values], 5) == order
    assert model.modes and not any(model.modes)  # pooled in eval mode ...
    assert model.training  # ... and the mode restored


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_matches_the_icarl_rule_on_random_points(seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(17, 3, generator=g)
    order = EncoderHerding(PoolingProbe()).make_sorted_indices(agent(), as_avalanche(dataset(points)))
    assert order == icarl_herding(points.double().tolist(), len(points))


def test_herding_buffer_keeps_each_class_s_first_herded_samples_in_order():
    """make_storage_policy("herding"): per class, the buffer holds the first capacity/classes samples of that
    class's herding order (training-split indices, in that order); a new class shrinks each old class to a
    prefix of that order (iCaRL's ReduceExemplarSet), not to a new herding of the kept samples around their
    own mean."""
    g = torch.Generator().manual_seed(3)
    points = torch.randn(24, 2, generator=g)
    labels = [i % 3 for i in range(24)]  # classes 0 and 1 in the first task, 2 in the second
    train = as_avalanche(dataset(points, labels))
    first = [i for i in range(24) if labels[i] < 2]
    policy = make_storage_policy("herding", 8, PoolingProbe())
    policy.post_adapt(agent(), SimpleNamespace(dataset=train.subset(first)))

    def herded(indices: list[int], m: int) -> list[int]:
        return [indices[j] for j in icarl_herding([points[i].double().tolist() for i in indices], m)]

    state = buffer_state(policy)
    kept = {}
    for c in (0, 1):
        kept[c] = herded([i for i in first if labels[i] == c], 4)
        assert state[f"c{c}.index"].tolist() == kept[c]

    second = [i for i in range(24) if labels[i] == 2]
    policy.post_adapt(agent(), SimpleNamespace(dataset=train.subset(second)))
    state = buffer_state(policy)
    lengths = dict(zip(sorted(policy.seen_groups), policy.get_group_lengths(3)))  # 8 over 3 classes: 3, 3, 2
    assert state["c2.index"].tolist() == herded(second, lengths[2])
    for c in (0, 1):
        assert state[f"c{c}.index"].tolist() == kept[c][: lengths[c]]
    assert set(herded(kept[0], lengths[0])) != set(kept[0][: lengths[0]])  # herding the kept ones again differs
