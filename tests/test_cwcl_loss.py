"""Tests of pipeline.losses.cwcl: CWCLLoss and ContrastiveLoss against a slow loop over their written
formulas (value and gradients), the identity-weights equivalence, a hand-computed batch of two, the weights'
properties, degenerate batches, the detached frozen side, the logit scale, bf16 autocast and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

import pipeline.losses.cwcl as cwcl_module
from pipeline.losses import ContrastiveLoss, CWCLLoss, cwcl_weights
from conftest import loop_dot, loop_unit_rows

LOSSES = {"cwcl": CWCLLoss, "cl": ContrastiveLoss}


# ----------------------------------------------------------------------------- loop reference




def ref_loss(trainable, frozen, scale, weighted, normalize):
    """L = -1/N sum_i (1/sum_j w_ij) sum_j w_ij log softmax_j(S_ij) - 1/N sum_j log softmax_i(S_ij)|_{i=j},
    S_ij = scale * p_i . q_j (unit rows when normalize), w_ij = (1 + cos(q_i, q_j)) / 2 or [i = j]."""
    n = trainable.shape[0]
    p = loop_unit_rows(trainable) if normalize else [trainable[i] for i in range(n)]
    q = loop_unit_rows(frozen) if normalize else [frozen[i] for i in range(n)]
    q_unit = loop_unit_rows(frozen)
    S = [[scale * loop_dot(p[i], q[j]) for j in range(n)] for i in range(n)]
    W = [[(1 + loop_dot(q_unit[i], q_unit[j])) / 2 if weighted else float(i == j) for j in range(n)] for i in range(n)]
    rows = 0.0
    for i in range(n):
        log_row = torch.log(sum(torch.exp(S[i][k]) for k in range(n)))
        rows = rows - sum(W[i][j] * (S[i][j] - log_row) for j in range(n)) / sum(W[i]) / n
    columns = 0.0
    for j in range(n):
        log_column = torch.log(sum(torch.exp(S[k][j]) for k in range(n)))
        columns = columns - (S[j][j] - log_column) / n
    return rows + columns


def _batch(seed, batch=5, dim=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    trainable = torch.randn(batch, dim, generator=g, dtype=dtype) * 2.0
    frozen = torch.randn(batch, dim, generator=g, dtype=dtype) * 0.7
    return trainable, frozen


# ----------------------------------------------------------------------------- formula


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_value_and_gradients(name, normalize, seed):
    trainable, frozen = _batch(seed)
    loss_fn = LOSSES[name](temperature=0.5, normalize=normalize)

    p1 = trainable.clone().requires_grad_(True)
    s1 = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    got = loss_fn(p1, frozen, s1)
    g_p_got, g_s_got = torch.autograd.grad(got, (p1, s1))

    p2 = trainable.clone().requires_grad_(True)
    s2 = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    want = ref_loss(p2, frozen, s2, weighted=name == "cwcl", normalize=normalize)
    g_p_want, g_s_want = torch.autograd.grad(want, (p2, s2))

    assert got.dim() == 0 and got.dtype == torch.float64
    assert got.item() == pytest.approx(want.item(), abs=1e-10, rel=1e-10)
    torch.testing.assert_close(g_p_got, g_p_want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(g_s_got, g_s_want, atol=1e-10, rtol=1e-10)
    assert g_p_got.abs().sum() > 0 and g_s_got.abs() > 0


def test_identity_weights_give_contrastive_exactly(monkeypatch):
    trainable, frozen = _batch(3, batch=6)
    cwcl, cl = CWCLLoss(0.1), ContrastiveLoss(0.1)
    assert cwcl(trainable, frozen).item() != pytest.approx(cl(trainable, frozen).item(), rel=1e-6)

    monkeypatch.setattr(cwcl_module, "cwcl_weights", lambda q: torch.eye(q.shape[0], dtype=q.dtype))
    p1, p2 = trainable.clone().requires_grad_(True), trainable.clone().requires_grad_(True)
    a, b = cwcl(p1, frozen), cl(p2, frozen)
    assert a.item() == b.item()
    a.backward()
    b.backward()
    assert torch.equal(p1.grad, p2.grad)


def test_two_samples_closed_form():
    # p = (e1, e2); q = (e1, (e1 + e2)/sqrt 2); tau = 0.5, so s = 2 and c = cos(q_0, q_1) = 1/sqrt 2:
    # S = s * [[1, c], [0, c]], w_01 = w_10 = (1 + c)/2
    tau, c = 0.5, 1 / math.sqrt(2)
    s, w = 1 / tau, (1 + c) / 2
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    q = torch.tensor([[1.0, 0.0], [c, c]], dtype=torch.float64)
    lse_row0, lse_row1 = math.log(math.exp(s) + math.exp(s * c)), math.log(1 + math.exp(s * c))
    lse_col0, lse_col1 = math.log(math.exp(s) + 1), s * c + math.log(2)
    frozen_to_trainable = 0.5 * ((lse_col0 - s) + (lse_col1 - s * c))
    cwcl_rows = 0.5 * (
        ((lse_row0 - s) + w * (lse_row0 - s * c)) / (1 + w) + (w * lse_row1 + (lse_row1 - s * c)) / (1 + w)
    )
    cl_rows = 0.5 * ((lse_row0 - s) + (lse_row1 - s * c))
    assert CWCLLoss(tau)(p, q).item() == pytest.approx(cwcl_rows + frozen_to_trainable, rel=1e-12)
    assert ContrastiveLoss(tau)(p, q).item() == pytest.approx(cl_rows + frozen_to_trainable, rel=1e-12)
    assert CWCLLoss(tau)(p, q).item() == pytest.approx(1.20061796, rel=1e-8)  # the number, written out
    assert ContrastiveLoss(tau)(p, q).item() == pytest.approx(0.74012225, rel=1e-8)


def test_permuting_the_batch_changes_nothing():
    trainable, frozen = _batch(4, batch=8)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    for cls in (CWCLLoss, ContrastiveLoss):
        f = cls(0.2)
        assert f(trainable[perm], frozen[perm]).item() == pytest.approx(f(trainable, frozen).item(), rel=1e-12)
        # permuting one side only breaks the pairs
        assert f(trainable[perm], frozen).item() != pytest.approx(f(trainable, frozen).item(), rel=1e-6)


# ----------------------------------------------------------------------------- weights


def test_weights_properties():
    e1, e2 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(3, 3, generator=g, dtype=torch.float64)
    q = torch.cat([torch.tensor([e1, [-2.0, 0.0, 0.0], [3.0, 0.0, 0.0], e2], dtype=torch.float64), rand])
    w = cwcl_weights(q)
    assert w.shape == (7, 7) and w.dtype == torch.float64
    assert (w >= 0).all() and (w <= 1).all()
    assert (torch.diagonal(w) == 1).all()
    torch.testing.assert_close(w, w.T)
    assert w[0, 1].item() == pytest.approx(0.0, abs=1e-12)  # antipodal
    assert w[1, 2].item() == pytest.approx(0.0, abs=1e-12)
    assert w[0, 2].item() == pytest.approx(1.0, abs=1e-12)  # equal direction, other norm
    assert w[0, 3].item() == pytest.approx(0.5, abs=1e-12)  # orthogonal
    cos = torch.nn.functional.cosine_similarity(rand[0], rand[1], dim=0)
    assert w[4, 5].item() == pytest.approx((1 + cos.item()) / 2, rel=1e-12)


def test_weights_stay_in_range_with_rounding():
    # float32, large and uneven norms, exact duplicates and negated rows: the clamp and the set diagonal hold
    g = torch.Generator().manual_seed(1)
    q = torch.randn(40, 33, generator=g) * torch.logspace(-3, 3, 40)[:, None]
    q = torch.cat([q, q[:5], -q[5:10]])
    w = cwcl_weights(q)
    assert w.dtype == torch.float32
    assert (w >= 0).all() and (w <= 1).all()
    assert (torch.diagonal(w) == 1).all()


# ----------------------------------------------------------------------------- degenerate batches


def _finite_with_grads(loss, *leaves):
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_batch_of_one_is_zero(name):
    p, scale = torch.randn(1, 4, requires_grad=True), torch.tensor(14.0, requires_grad=True)
    loss = LOSSES[name](0.07)(p, torch.randn(1, 4), scale)
    assert loss.item() == 0.0
    _finite_with_grads(loss, p, scale)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_duplicate_zero_and_empty_frozen_rows_are_finite(name):
    f = LOSSES[name](0.05)
    frozen = torch.randn(5, 6)
    frozen[3] = frozen[1]  # two utterances of one transcript: the same frozen text embedding
    assert cwcl_weights(frozen)[1, 3].item() == pytest.approx(1.0, abs=1e-6)
    for q in (frozen, frozen[:1].expand(5, 6), torch.zeros(5, 6)):  # duplicates, all equal, all zero
        p = torch.randn(5, 6, requires_grad=True)
        _finite_with_grads(f(p, q), p)
    p = torch.randn(0, 6, requires_grad=True)
    loss = f(p, torch.randn(0, 6))
    assert loss.item() == 0.0
    _finite_with_grads(loss, p)


# ----------------------------------------------------------------------------- gradients: frozen side, scale


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_frozen_side_gets_no_gradient(name):
    trainable, frozen = _batch(5, dtype=torch.float32)
    p, q = trainable.requires_grad_(True), frozen.requires_grad_(True)
    LOSSES[name](0.1)(p, q).backward()
    assert q.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_learnable_scale_gets_a_gradient_and_none_is_one_over_tau(name):
    trainable, frozen = _batch(6, dtype=torch.float32)
    tau = 0.07
    f = LOSSES[name](tau)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / tau)))
    f(trainable, frozen, log_scale.exp()).backward()
    assert log_scale.grad is not None and torch.isfinite(log_scale.grad) and log_scale.grad.abs() > 0
    assert f(trainable, frozen).item() == pytest.approx(f(trainable, frozen, torch.tensor(1 / tau)).item(), rel=1e-6)
    assert f(trainable, frozen).item() != pytest.approx(f(trainable, frozen, torch.tensor(2.0)).item(), rel=1e-3)
    p64, q64 = trainable.double(), frozen.double()
    assert f(p64, q64).item() == pytest.approx(
        f(p64, q64, torch.tensor(1 / tau, dtype=torch.float64)).item(), rel=1e-12
    )


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_inside_bf16_autocast(name):
    trainable, frozen = _batch(7, batch=16, dim=32, dtype=torch.float32)
    f = LOSSES[name](0.07)
    scale = torch.tensor(1 / 0.05)
    want = f(trainable, frozen, scale)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = f(trainable, frozen, scale)
        weights = cwcl_weights(frozen)
        from_bf16 = f(trainable.bfloat16(), frozen.bfloat16(), scale.bfloat16())
    assert want.dtype == got.dtype == weights.dtype == from_bf16.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    torch.testing.assert_close(weights, cwcl_weights(frozen), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_inputs_raise(name):
    cls = LOSSES[name]
    for tau in (0, 0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            cls(tau)
    f = cls()
    p, q = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        f(p, torch.randn(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        f(p, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        f(p[None], q[None])
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        f(p[0], q[0])
    with pytest.raises(ValueError, match="floating-point"):
        f(p.long(), q)
    with pytest.raises(ValueError, match="floating-point"):
        f(p, q.int())
    for scale in (torch.tensor(0.0), torch.tensor(-1.0), torch.tensor(float("nan")), torch.tensor(float("inf"))):
        with pytest.raises(ValueError, match="> 0"):
            f(p, q, scale)
    for scale in (torch.ones(2), torch.ones(1), 14.0):
        with pytest.raises(ValueError, match="0-d"):
            f(p, q, scale)
    with pytest.raises(ValueError, match="floating-point"):
        f(p, q, torch.tensor(3))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        cwcl_weights(q[None])
