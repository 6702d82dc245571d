"""Tests of pipeline.losses.m3co and pipeline.losses.softclip (M3CoL): M3CoLoss and SoftCLIPLoss against slow
loops over their written formulas (value and gradients of both inputs), the all-lambda-one equivalence with
ContrastiveLoss, untouched inputs (the reference code's in-place mixing), the mixup draws and soft targets,
hand-computed batches, symmetry, degenerate batches, bf16 autocast and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.losses import (
    ContrastiveLoss,
    M3CoLoss,
    Mix,
    SoftCLIPLoss,
    draw_mix,
    m3co_term,
    mix,
    mix_targets,
    soft_clip_term,
)
from conftest import assert_value_and_grads_match, loop_dot, loop_unit_rows, value_and_grads

TAU = 0.3

# Two hand-picked draws for B = 6: partners with fixed points (1 in MIX_A, 0 and 4 in MIX_B), shares in
# (0, 1), exactly 1 (not mixed) and a fixed point with a share < 1 (a sample mixed with itself).
PERM_A, LAM_A = [2, 1, 0, 4, 5, 3], [0.3, 0.8, 1.0, 0.55, 0.1, 1.0]
PERM_B, LAM_B = [0, 5, 3, 2, 4, 1], [0.25, 0.9, 0.6, 1.0, 0.4, 0.7]


def make_mix(perm, lam, dtype=torch.float64) -> Mix:
    return Mix(perm=torch.tensor(perm, dtype=torch.long), lam=torch.tensor(lam, dtype=dtype))


def _batch(seed, batch=6, dim=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, generator=g, dtype=dtype) * 1.5
    b = torch.randn(batch, dim, generator=g, dtype=dtype) * 0.8
    return a, b


# ----------------------------------------------------------------------------- loop references


def _log_sum_exp(values):
    return torch.log(sum(torch.exp(v) for v in values))


def ref_m3co_term(mixed_rows, fixed, targets, tau):
    """(L_fwd + L_bwd) / 2 with S_ij = u_i . v_j / tau (unit rows),
    L_fwd = -1/B sum_i sum_j T_ij / (sum_k T_ik) log softmax_j(S_i.),
    L_bwd = -1/B sum_j sum_i T_ij / (sum_k T_kj) log softmax_i(S_.j)."""
    n = len(mixed_rows)
    u = [row / loop_dot(row, row) ** 0.5 for row in mixed_rows]
    v = loop_unit_rows(fixed)
    S = [[loop_dot(u[i], v[j]) / tau for j in range(n)] for i in range(n)]
    forward = 0.0
    for i in range(n):
        log_z = _log_sum_exp([S[i][k] for k in range(n)])
        mass = sum(targets[i][k] for k in range(n))
        forward = forward - sum(targets[i][j] / mass * (S[i][j] - log_z) for j in range(n)) / n
    backward = 0.0
    for j in range(n):
        log_z = _log_sum_exp([S[k][j] for k in range(n)])
        mass = sum(targets[k][j] for k in range(n))
        backward = backward - sum(targets[i][j] / mass * (S[i][j] - log_z) for i in range(n)) / n
    return (forward + backward) / 2


def ref_targets(perm, lam):
    """T_ij = lam_i [j = i] + (1 - lam_i) [j = perm_i]."""
    n = len(perm)
    return [[lam[i] * (j == i) + (1 - lam[i]) * (j == perm[i]) for j in range(n)] for i in range(n)]


def ref_m3co(a, b, perm_a, lam_a, perm_b, lam_b, tau):
    """term(mix(a), clean b) + term(mix(b), clean a), mix(x)_i = lam_i x_i + (1 - lam_i) x_{perm_i}."""
    n = a.shape[0]
    mixed_a = [lam_a[i] * a[i] + (1 - lam_a[i]) * a[perm_a[i]] for i in range(n)]
    mixed_b = [lam_b[i] * b[i] + (1 - lam_b[i]) * b[perm_b[i]] for i in range(n)]
    return ref_m3co_term(mixed_a, b, ref_targets(perm_a, lam_a), tau) + ref_m3co_term(
        mixed_b, a, ref_targets(perm_b, lam_b), tau
    )


def ref_soft_clip_term(pred, target, tau):
    """(L_rows + L_cols) / 2 with S_ij = p_i . t_j / tau, W_ij = exp(t_i . t_j / tau) / sum_k exp(t_i . t_k / tau),
    L_rows = -1/B sum_i sum_j W_ij log softmax_j(S_i.), L_cols = -1/B sum_j sum_i W_ji log softmax_i(S_.j)."""
    n = pred.shape[0]
    p, t = loop_unit_rows(pred), loop_unit_rows(target)
    S = [[loop_dot(p[i], t[j]) / tau for j in range(n)] for i in range(n)]
    G = [[loop_dot(t[i], t[j]) / tau for j in range(n)] for i in range(n)]
    W = []
    for i in range(n):
        z = sum(torch.exp(G[i][k]) for k in range(n))
        W.append([torch.exp(G[i][j]) / z for j in range(n)])
    rows = 0.0
    for i in range(n):
        log_z = _log_sum_exp([S[i][k] for k in range(n)])
        rows = rows - sum(W[i][j] * (S[i][j] - log_z) for j in range(n)) / n
    cols = 0.0
    for j in range(n):
        log_z = _log_sum_exp([S[k][j] for k in range(n)])
        cols = cols - sum(W[j][i] * (S[i][j] - log_z) for i in range(n)) / n
    return (rows + cols) / 2

# ----------------------------------------------------------------------------- formula: M3Co


@pytest.mark.parametrize("seed", [0, 1])
def test_m3co_matches_loop_reference_value_and_gradients(seed):
    a, b = _batch(seed)
    loss_fn = M3CoLoss(temperature=TAU)
    got = value_and_grads(lambda x, y: loss_fn(x, y, make_mix(PERM_A, LAM_A), make_mix(PERM_B, LAM_B)), a, b)
    want = value_and_grads(lambda x, y: ref_m3co(x, y, PERM_A, LAM_A, PERM_B, LAM_B, TAU), a, b)
    assert_value_and_grads_match(got, want)


def test_m3co_matches_loop_reference_with_drawn_mixes():
    a, b = _batch(5, batch=7, dim=4)
    g = torch.Generator().manual_seed(11)
    mix_a, mix_b = draw_mix(7, 0.4, 0.7, generator=g), draw_mix(7, 0.4, 0.7, generator=g)
    assert (mix_a.lam < 1).any() and (mix_b.lam < 1).any()
    loss_fn = M3CoLoss(temperature=0.1)
    got = value_and_grads(lambda x, y: loss_fn(x, y, mix_a, mix_b), a, b)
    want = value_and_grads(
        lambda x, y: ref_m3co(
            x, y, mix_a.perm.tolist(), mix_a.lam.tolist(), mix_b.perm.tolist(), mix_b.lam.tolist(), 0.1
        ),
        a,
        b,
    )
    assert_value_and_grads_match(got, want)


def test_m3co_term_matches_loop_with_any_nonnegative_targets():
    """Targets whose rows AND columns do not sum to 1: both directions normalise their rows."""
    mixed, fixed = _batch(2, batch=5)
    targets = torch.rand(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.05
    targets_list = targets.tolist()
    got = value_and_grads(lambda x, y: m3co_term(x, y, targets, TAU), mixed, fixed)
    want = value_and_grads(
        lambda x, y: ref_m3co_term([x[i] for i in range(5)], y, targets_list, TAU), mixed, fixed
    )
    assert_value_and_grads_match(got, want)
    # Normalised in both directions: a uniform rescaling of the targets changes nothing.
    assert m3co_term(mixed, fixed, 3.0 * targets, TAU).item() == pytest.approx(got[0].item(), rel=1e-13)


def test_m3co_column_normalisation_is_what_the_loss_does():
    """The decision: the backward direction's target rows (columns of T) are normalised. The reference's
    unnormalised version gives another value on the same draw."""
    a, b = _batch(3)
    m = make_mix(PERM_A, LAM_A)
    targets = mix_targets(m)
    assert not torch.allclose(targets.sum(dim=0), torch.ones(6, dtype=torch.float64))
    logits = torch.nn.functional.normalize(mix(a, m), dim=1) @ torch.nn.functional.normalize(b, dim=1).T / TAU
    forward = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    unnormalised = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    normalised = -(targets.T / targets.T.sum(1, keepdim=True) * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    got = m3co_term(mix(a, m), b, targets, TAU)
    assert got.item() == pytest.approx(((forward + normalised) / 2).item(), rel=1e-13)
    assert abs(got.item() - ((forward + unnormalised) / 2).item()) > 1e-3


# ----------------------------------------------------------------------------- formula: SoftCLIP


@pytest.mark.parametrize("seed", [0, 1])
def test_softclip_matches_loop_reference_value_and_gradients(seed):
    a, b = _batch(seed, batch=5)
    loss_fn = SoftCLIPLoss(temperature=TAU)
    got = value_and_grads(loss_fn, a, b)
    want = value_and_grads(lambda x, y: ref_soft_clip_term(x, y, TAU) + ref_soft_clip_term(y, x, TAU), a, b)
    assert_value_and_grads_match(got, want)
    # one term alone (gradient into target through the logits AND the soft targets: not detached)
    got_term = value_and_grads(lambda x, y: soft_clip_term(x, y, TAU), a, b)
    want_term = value_and_grads(lambda x, y: ref_soft_clip_term(x, y, TAU), a, b)
    assert_value_and_grads_match(got_term, want_term)


def test_softclip_targets_are_not_detached():
    a, b = _batch(4, batch=5)
    b1 = b.clone().requires_grad_(True)
    b2 = b.clone().requires_grad_(True)
    (g_flowing,) = torch.autograd.grad(soft_clip_term(a, b1, TAU), b1)
    # what a detached-targets version would give: the soft targets as constants
    t = torch.nn.functional.normalize(b, dim=1)
    soft = torch.softmax(t @ t.T / TAU, dim=1)
    logits = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b2, dim=1).T / TAU
    detached = 0.5 * (
        -(soft * logits.log_softmax(1)).sum(1).mean() - (soft * logits.T.log_softmax(1)).sum(1).mean()
    )
    (g_detached,) = torch.autograd.grad(detached, b2)
    assert detached.item() == pytest.approx(soft_clip_term(a, b, TAU).item(), rel=1e-13)
    assert (g_flowing - g_detached).abs().max() > 1e-3


# ----------------------------------------------------------------------------- lambda = 1: InfoNCE


@pytest.mark.parametrize("how", ["fraction0", "explicit_ones"])
def test_all_lambdas_one_give_contrastive_loss_exactly(how):
    """With every lam = 1 each M3Co term is symmetric InfoNCE averaged over its two directions, and the two
    terms have the same value (one's logits are the other's transposed): M3Co = ContrastiveLoss, which SUMS
    the two directions. ContrastiveLoss detaches its second argument, so only the gradient w.r.t. the first
    is comparable, and it agrees too."""
    a, b = _batch(7, batch=8, dim=6)
    tau = 0.1
    if how == "fraction0":
        g = torch.Generator().manual_seed(0)
        mix_a, mix_b = draw_mix(8, 0.15, 0.0, generator=g), draw_mix(8, 0.15, 0.0, generator=g)
        assert (mix_a.perm != torch.arange(8)).any()
    else:
        ones = [1.0] * 8
        mix_a, mix_b = make_mix([3, 1, 0, 7, 2, 6, 5, 4], ones), make_mix([1, 0, 2, 4, 3, 7, 5, 6], ones)
    m3co = value_and_grads(lambda x, y: M3CoLoss(tau)(x, y, mix_a, mix_b), a, b)
    a1 = a.clone().requires_grad_(True)
    cl_value = ContrastiveLoss(temperature=tau)(a1, b)
    cl = (cl_value, torch.autograd.grad(cl_value, a1)[0])
    assert m3co[0].item() == pytest.approx(cl[0].item(), rel=1e-13, abs=1e-13)
    torch.testing.assert_close(m3co[1], cl[1], atol=1e-12, rtol=1e-11)
    # each term alone is half of it
    eye = torch.eye(8, dtype=torch.float64)
    assert m3co_term(a, b, eye, tau).item() == pytest.approx(cl[0].item() / 2, rel=1e-13)
    # the module's own draws with fraction 0 (global RNG) give the same
    assert M3CoLoss(tau, fraction=0.0)(a, b).item() == pytest.approx(cl[0].item(), rel=1e-13)


def test_identity_partners_with_any_shares_give_contrastive_loss():
    """perm = identity: every sample is 'mixed' with itself, so mix(x) = x and (shares ADDED) T = I whatever
    lam is. Overwriting instead of adding would give T_ii = 1 - lam_i."""
    a, b = _batch(8)
    ident = list(range(6))
    mix_a, mix_b = make_mix(ident, [0.2, 0.5, 0.9, 0.0, 0.35, 1.0]), make_mix(ident, [0.7, 0.1, 0.4, 0.6, 0.3, 0.8])
    torch.testing.assert_close(mix_targets(mix_a), torch.eye(6, dtype=torch.float64), atol=0, rtol=0)
    assert M3CoLoss(TAU)(a, b, mix_a, mix_b).item() == pytest.approx(ContrastiveLoss(TAU)(a, b).item(), rel=1e-13)


# ----------------------------------------------------------------------------- the inputs stay clean


@pytest.mark.parametrize("requires_grad", [False, True])
def test_inputs_unchanged_values_and_version(requires_grad):
    a, b = _batch(9)
    a.requires_grad_(requires_grad)
    b.requires_grad_(requires_grad)
    a_copy, b_copy = a.detach().clone(), b.detach().clone()
    versions = (a._version, b._version)
    mix_a, mix_b = make_mix(PERM_A, LAM_A), make_mix(PERM_B, LAM_B)
    mix_copies = [t.clone() for t in (mix_a.perm, mix_a.lam, mix_b.perm, mix_b.lam)]
    loss = M3CoLoss(TAU)(a, b, mix_a, mix_b) + SoftCLIPLoss(TAU)(a, b) + M3CoLoss(TAU, fraction=1.0)(a, b)
    if requires_grad:
        loss.backward()
    assert (a._version, b._version) == versions
    torch.testing.assert_close(a.detach(), a_copy, atol=0, rtol=0)
    torch.testing.assert_close(b.detach(), b_copy, atol=0, rtol=0)
    for t, copy in zip((mix_a.perm, mix_a.lam, mix_b.perm, mix_b.lam), mix_copies):
        torch.testing.assert_close(t, copy, atol=0, rtol=0)


def test_each_term_contrasts_with_the_clean_other_modality():
    """M3Co = term(mix(a), b) + term(mix(b), a) with the CLEAN a in the second term; the reference's bug
    (a mixed in place before the second term) gives another value."""
    a, b = _batch(10)
    mix_a, mix_b = make_mix(PERM_A, LAM_A), make_mix(PERM_B, LAM_B)
    got = M3CoLoss(TAU)(a, b, mix_a, mix_b)
    clean = m3co_term(mix(a, mix_a), b, mix_targets(mix_a), TAU) + m3co_term(
        mix(b, mix_b), a, mix_targets(mix_b), TAU
    )
    buggy = m3co_term(mix(a, mix_a), b, mix_targets(mix_a), TAU) + m3co_term(
        mix(b, mix_b), mix(a, mix_a), mix_targets(mix_b), TAU
    )
    assert got.item() == clean.item()
    assert abs(got.item() - buggy.item()) > 1e-3


# ----------------------------------------------------------------------------- mix and mix_targets


def test_mix_is_out_of_place_and_matches_the_formula():
    x = _batch(11)[0].requires_grad_(True)
    x_copy, version = x.detach().clone(), x._version
    m = make_mix(PERM_A, LAM_A)
    out = mix(x, m)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.data_ptr() != x.data_ptr()
    assert x._version == version
    torch.testing.assert_close(x.detach(), x_copy, atol=0, rtol=0)
    for i, (k, lam) in enumerate(zip(PERM_A, LAM_A)):
        torch.testing.assert_close(out[i], lam * x_copy[i] + (1 - lam) * x_copy[k], atol=1e-15, rtol=0)
    # not mixed (lam = 1): the row itself, exactly; the fixed point (perm_1 = 1): up to rounding
    for i in (2, 5):
        assert torch.equal(out[i].detach(), x_copy[i])
    torch.testing.assert_close(out[1].detach(), x_copy[1], atol=1e-15, rtol=0)
    # gradient flows through both the own row and the partner's: d sum(out) / dx_j = lam_j + sum_{perm_i=j}(1-lam_i)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, mix_targets(m).sum(dim=0)[:, None].expand_as(grad), atol=1e-15, rtol=0)


def test_mix_keeps_the_dtype_of_x():
    m = make_mix(PERM_A, LAM_A, dtype=torch.float32)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        assert mix(torch.randn(6, 3).to(dtype), m).dtype == dtype


def test_mix_targets_with_fixed_points():
    m = make_mix(PERM_A, LAM_A)
    targets = mix_targets(m)
    want = torch.tensor(ref_targets(PERM_A, LAM_A), dtype=torch.float64)
    assert targets.shape == (6, 6) and targets.dtype == torch.float64
    torch.testing.assert_close(targets, want, atol=1e-15, rtol=0)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6, dtype=torch.float64), atol=1e-15, rtol=0)
    # the fixed point (perm_1 = 1, lam_1 = 0.8): a one-hot row, not 1 - lam = 0.2
    assert targets[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    # columns: lam_j + (1 - lam_i) for the i with perm_i = j
    inverse = {k: i for i, k in enumerate(PERM_A)}
    for j in range(6):
        assert targets[:, j].sum().item() == pytest.approx(LAM_A[j] + 1 - LAM_A[inverse[j]], abs=1e-15)
    # a fresh tensor each call, nothing shared with the draw
    assert mix_targets(m).data_ptr() != targets.data_ptr()
    assert targets.data_ptr() != m.lam.data_ptr()


def test_mix_targets_of_drawn_mixes_rows_sum_to_one():
    g = torch.Generator().manual_seed(1)
    for batch in (1, 2, 3, 9, 40):
        for fraction in (0.0, 0.5, 1.0):
            m = draw_mix(batch, 0.15, fraction, generator=g)
            targets = mix_targets(m)
            torch.testing.assert_close(targets.sum(dim=1), torch.ones(batch, dtype=torch.float64), atol=1e-15, rtol=0)
            fixed = m.perm == torch.arange(batch)
            one_hot = torch.eye(batch, dtype=torch.float64)[fixed]
            torch.testing.assert_close(targets[fixed], one_hot, atol=0, rtol=0)


# ----------------------------------------------------------------------------- draw_mix


def test_draw_mix_shapes_and_types():
    m = draw_mix(10, 0.15, 0.5, generator=torch.Generator().manual_seed(0))
    assert m.perm.dtype == torch.long and m.lam.dtype == torch.float64
    assert m.perm.shape == m.lam.shape == (10,) and m.batch == 10
    assert sorted(m.perm.tolist()) == list(range(10))
    assert bool(((m.lam >= 0) & (m.lam <= 1)).all())
    assert draw_mix(3, 1.0, 0.5, device="cpu").perm.device.type == "cpu"


def test_draw_mix_fraction_zero_and_one():
    g = torch.Generator().manual_seed(2)
    none_mixed = draw_mix(500, 0.15, 0.0, generator=g)
    assert bool((none_mixed.lam == 1.0).all())
    # Beta(2, 2) puts no mass near 0 or 1, so every mixed sample has a share strictly inside (0, 1)
    all_mixed = draw_mix(500, 2.0, 1.0, generator=g)
    assert bool(((all_mixed.lam > 0) & (all_mixed.lam < 1)).all())


def test_draw_mix_lam_is_one_exactly_where_not_selected():
    """Same seed, same perm and shares: with fraction f, each sample's lam is either the fraction-1 draw's
    share (selected) or exactly 1 (not selected); about f * B are selected, and a larger f selects a
    superset (the same uniforms against a higher threshold)."""
    batch = 4000
    shares = draw_mix(batch, 2.0, 1.0, generator=torch.Generator().manual_seed(3))
    selected_sets = []
    for fraction in (0.25, 0.5, 0.75):
        m = draw_mix(batch, 2.0, fraction, generator=torch.Generator().manual_seed(3))
        assert torch.equal(m.perm, shares.perm)
        selected = m.lam != 1.0
        assert torch.equal(m.lam[selected], shares.lam[selected])
        assert bool((m.lam[~selected] == 1.0).all())
        assert abs(selected.float().mean().item() - fraction) < 0.05
        selected_sets.append(selected)
    for smaller, larger in zip(selected_sets, selected_sets[1:]):
        assert bool((larger | ~smaller).all())


def test_draw_mix_is_deterministic_with_a_seeded_generator_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    m1 = draw_mix(32, 0.15, 0.5, generator=torch.Generator().manual_seed(7))
    m2 = draw_mix(32, 0.15, 0.5, generator=torch.Generator().manual_seed(7))
    m3 = draw_mix(32, 0.15, 0.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(m1.perm, m2.perm) and torch.equal(m1.lam, m2.lam)
    assert not (torch.equal(m1.perm, m3.perm) and torch.equal(m1.lam, m3.lam))
    # without a generator: torch's global RNG
    torch.manual_seed(5)
    g1 = draw_mix(32, 0.15, 0.5)
    torch.manual_seed(5)
    g2 = draw_mix(32, 0.15, 0.5)
    assert torch.equal(g1.perm, g2.perm) and torch.equal(g1.lam, g2.lam)


def test_draw_mix_shares_follow_beta():
    """Beta(beta, beta): mean 1/2, variance 1 / (4 (2 beta + 1)); Beta(0.15, 0.15) is U-shaped."""
    lam = draw_mix(20000, 0.15, 1.0, generator=torch.Generator().manual_seed(4)).lam.double()
    assert lam.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lam.var().item() == pytest.approx(1 / (4 * 1.3), abs=0.02)
    assert ((lam < 0.1) | (lam > 0.9)).double().mean().item() > 0.5
    lam2 = draw_mix(20000, 2.0, 1.0, generator=torch.Generator().manual_seed(4)).lam.double()
    assert lam2.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lam2.var().item() == pytest.approx(1 / (4 * 5), abs=0.01)


def test_m3co_module_draws_mix_a_then_mix_b_from_the_global_rng():
    a, b = _batch(12, batch=16, dtype=torch.float32)
    loss_fn = M3CoLoss()
    torch.manual_seed(21)
    got = loss_fn(a, b)
    torch.manual_seed(21)
    mix_a = draw_mix(16, 0.15, 0.5)
    mix_b = draw_mix(16, 0.15, 0.5)
    assert got.item() == loss_fn(a, b, mix_a, mix_b).item()
    assert got.item() != loss_fn(a, b, mix_b, mix_a).item()


# ----------------------------------------------------------------------------- closed forms


def test_m3co_batch_of_two_by_hand():
    """a = b = I_2, mix_a: partners swapped, lam = (1/2, 1); mix_b: no mixing.
    mix(a) = [(1/2, 1/2), (0, 1)] -> unit rows [(1, 1)/sqrt2, (0, 1)]; T_a = [[1/2, 1/2], [0, 1]].
    Forward rows: log 2 and log(1 + e^{-1/tau}). Backward rows (columns of T_a normalised: (1, 0) and
    (1/3, 2/3)) with c = 1 / (sqrt2 tau): log(1 + e^{-c}) and lse(c, 1/tau) - c/3 - 2/(3 tau).
    Term b: plain InfoNCE on I / tau, every row log(1 + e^{-1/tau})."""
    tau = 0.5
    eye = torch.eye(2, dtype=torch.float64)
    mix_a, mix_b = make_mix([1, 0], [0.5, 1.0]), make_mix([1, 0], [1.0, 1.0])
    c, inv = 1 / (math.sqrt(2) * tau), 1 / tau
    lse = math.log(math.exp(c) + math.exp(inv))
    forward = (math.log(2) + math.log(1 + math.exp(-inv))) / 2
    backward = (math.log(1 + math.exp(-c)) + lse - c / 3 - 2 * inv / 3) / 2
    term_a = (forward + backward) / 2
    term_b = math.log(1 + math.exp(-inv))
    got = M3CoLoss(tau)(eye, eye, mix_a, mix_b)
    assert got.item() == pytest.approx(term_a + term_b, rel=1e-13)
    assert m3co_term(mix(eye, mix_a), eye, mix_targets(mix_a), tau).item() == pytest.approx(term_a, rel=1e-13)


def test_softclip_batch_of_two_by_hand():
    """pred = [(1, 0), (1, 1)], target = I_2, tau: W = softmax(I / tau) = [[p, q], [q, p]] with
    p = 1 / (1 + e^{-1/tau}); S = [[1, 0], [c, c]] / tau-ish with c = 1 / (sqrt2 tau).
    Rows: H(p) and log 2. Columns: lse(1/tau, c) - p/tau - q c and lse(0, c) - p c."""
    tau = 0.25
    pred = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    target = torch.eye(2, dtype=torch.float64)
    inv, c = 1 / tau, 1 / (math.sqrt(2) * tau)
    p = 1 / (1 + math.exp(-inv))
    q = 1 - p
    entropy = -p * math.log(p) - q * math.log(q)
    rows = (entropy + math.log(2)) / 2
    cols = (math.log(math.exp(inv) + math.exp(c)) - p * inv - q * c + math.log(1 + math.exp(c)) - p * c) / 2
    assert soft_clip_term(pred, target, tau).item() == pytest.approx((rows + cols) / 2, rel=1e-13)


def test_softclip_with_identical_inputs_is_twice_the_mean_row_entropy():
    """a == b: the logits are the soft targets' own logits, so each cross-entropy is the entropy of W's row
    (its minimum) and SoftCLIP(a, a) = 2 * mean_i H(W_i). For orthonormal rows, W_ii = e^{1/tau} / (e^{1/tau}
    + B - 1) and the other entries 1 / (e^{1/tau} + B - 1)."""
    tau, batch = 0.5, 4
    eye = torch.eye(batch, dtype=torch.float64)
    z = math.exp(1 / tau) + batch - 1
    p, q = math.exp(1 / tau) / z, 1 / z
    entropy = -p * math.log(p) - (batch - 1) * q * math.log(q)
    assert SoftCLIPLoss(tau)(eye, eye).item() == pytest.approx(2 * entropy, rel=1e-13)
    a = _batch(13)[0]
    t = torch.nn.functional.normalize(a, dim=1)
    w = torch.softmax(t @ t.T / TAU, dim=1)
    mean_entropy = -(w * w.log()).sum(dim=1).mean()
    assert SoftCLIPLoss(TAU)(a, a).item() == pytest.approx(2 * mean_entropy.item(), rel=1e-12)
    # any other pred against the same targets costs more (cross-entropy >= entropy)
    b = _batch(14)[0]
    assert soft_clip_term(b, a, TAU).item() > mean_entropy.item()


def test_degenerate_batches():
    one_a, one_b = torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    for fn in (lambda x, y: M3CoLoss()(x, y), lambda x, y: SoftCLIPLoss()(x, y)):
        value, grad_a, grad_b = value_and_grads(fn, one_a, one_b)
        assert value.item() == 0.0
        assert torch.isfinite(grad_a).all() and torch.isfinite(grad_b).all()
        empty = torch.zeros(0, 4, requires_grad=True)
        out = fn(empty, torch.zeros(0, 4))
        assert out.item() == 0.0
        out.backward()


# ----------------------------------------------------------------------------- symmetry and invariance


def test_m3co_symmetric_in_the_modalities():
    a, b = _batch(15)
    mix_a, mix_b = make_mix(PERM_A, LAM_A), make_mix(PERM_B, LAM_B)
    loss_fn = M3CoLoss(TAU)
    assert loss_fn(a, b, mix_a, mix_b).item() == loss_fn(b, a, mix_b, mix_a).item()
    assert loss_fn(a, b, mix_a, mix_b).item() != loss_fn(a, b, mix_b, mix_a).item()


def test_softclip_symmetric_in_its_arguments():
    a, b = _batch(16)
    assert SoftCLIPLoss(TAU)(a, b).item() == SoftCLIPLoss(TAU)(b, a).item()
    assert soft_clip_term(a, b, TAU).item() != soft_clip_term(b, a, TAU).item()


def test_invariant_to_reordering_the_batch():
    """Rows reordered by s (x'_i = x_{s_i}) with the draws conjugated (perm' = s^-1 o perm o s, lam' = lam o s)
    describe the same pairs and mixtures: the same loss."""
    a, b = _batch(17)
    s = torch.tensor([4, 0, 5, 2, 1, 3])
    s_inv = torch.argsort(s)

    def conjugate(m):
        return Mix(perm=s_inv[m.perm[s]], lam=m.lam[s])

    mix_a, mix_b = make_mix(PERM_A, LAM_A), make_mix(PERM_B, LAM_B)
    want = M3CoLoss(TAU)(a, b, mix_a, mix_b).item()
    assert M3CoLoss(TAU)(a[s], b[s], conjugate(mix_a), conjugate(mix_b)).item() == pytest.approx(want, rel=1e-13)
    assert SoftCLIPLoss(TAU)(a[s], b[s]).item() == pytest.approx(SoftCLIPLoss(TAU)(a, b).item(), rel=1e-13)


# ----------------------------------------------------------------------------- precision


def test_float32_inside_bf16_autocast():
    a, b = _batch(18, batch=16, dim=32, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    mix_a, mix_b = draw_mix(16, 0.15, 0.5, generator=g), draw_mix(16, 0.15, 0.5, generator=g)
    m3co, softclip = M3CoLoss(), SoftCLIPLoss()
    want_m3co, want_soft = m3co(a, b, mix_a, mix_b), softclip(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_m3co, got_soft = m3co(a, b, mix_a, mix_b), softclip(a, b)
        term = m3co_term(mix(a, mix_a), b, mix_targets(mix_a), 0.1)
        soft_term = soft_clip_term(a, b, 0.125)
        from_bf16_m3co = m3co(a.bfloat16(), b.bfloat16(), mix_a, mix_b)
        from_bf16_soft = softclip(a.bfloat16(), b.bfloat16())
    for value in (want_m3co, want_soft, got_m3co, got_soft, term, soft_term, from_bf16_m3co, from_bf16_soft):
        assert value.dtype == torch.float32
    assert got_m3co.item() == pytest.approx(want_m3co.item(), abs=1e-5)
    assert got_soft.item() == pytest.approx(want_soft.item(), abs=1e-5)
    # bf16 inputs: exactly the float32 loss of the rounded inputs, and close to the float32 loss
    a16, b16 = a.bfloat16().float(), b.bfloat16().float()
    assert from_bf16_m3co.item() == pytest.approx(m3co(a16, b16, mix_a, mix_b).item(), abs=1e-5)
    assert from_bf16_soft.item() == pytest.approx(softclip(a16, b16).item(), abs=1e-5)
    assert from_bf16_m3co.item() == pytest.approx(want_m3co.item(), rel=2e-2)
    assert from_bf16_soft.item() == pytest.approx(want_soft.item(), rel=2e-2)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise():
    for tau in (0, 0.0, -0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="temperature"):
            M3CoLoss(temperature=tau)
        with pytest.raises(ValueError, match="temperature"):
            SoftCLIPLoss(temperature=tau)
    for beta in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beta"):
            M3CoLoss(beta=beta)
    for fraction in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            M3CoLoss(fraction=fraction)

    a, b = torch.randn(4, 3), torch.randn(4, 3)
    for fn in (M3CoLoss(), SoftCLIPLoss()):
        with pytest.raises(ValueError, match="same shape"):
            fn(a, torch.randn(5, 3))
        with pytest.raises(ValueError, match="same shape"):
            fn(a, torch.randn(4, 2))
        with pytest.raises(ValueError, match=r"\[B, D\]"):
            fn(a[0], b[0])
        with pytest.raises(ValueError, match=r"\[B, D\]"):
            fn(a[None], b[None])
        with pytest.raises(ValueError, match="floating-point"):
            fn(a.long(), b)
    with pytest.raises(ValueError, match="temperature"):
        soft_clip_term(a, b, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        soft_clip_term(a, torch.randn(3, 3), 0.1)

    # draws of the wrong size or kind
    loss_fn = M3CoLoss()
    five = make_mix([1, 0, 2, 4, 3], [0.5] * 5, dtype=torch.float32)
    four = make_mix([1, 0, 2, 3], [0.5] * 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="mix_a.perm must be a 1-D tensor of length 4"):
        loss_fn(a, b, five, four)
    with pytest.raises(ValueError, match="mix_b.perm must be a 1-D tensor of length 4"):
        loss_fn(a, b, four, five)
    with pytest.raises(ValueError, match="length 4"):
        mix(a, five)
    with pytest.raises(ValueError, match="must be a Mix"):
        loss_fn(a, b, (four.perm, four.lam), four)
    with pytest.raises(ValueError, match="must be a Mix"):
        mix_targets((four.perm, four.lam))

    # malformed draws are refused when built
    with pytest.raises(ValueError, match="permutation"):
        make_mix([0, 0, 1, 2], [0.5] * 4)
    with pytest.raises(ValueError, match="permutation"):
        make_mix([0, 1, 2, 4], [0.5] * 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_mix([0, 1, 2, 3], [0.5, 1.2, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_mix([0, 1, 2, 3], [0.5, float("nan"), 0.5, 0.5])
    with pytest.raises(ValueError, match="Mix.lam must be a 1-D tensor of length 4"):
        make_mix([0, 1, 2, 3], [0.5] * 3)
    with pytest.raises(ValueError, match="integer"):
        Mix(perm=torch.tensor([0.0, 1.0]), lam=torch.ones(2))
    with pytest.raises(ValueError, match="floating-point"):
        Mix(perm=torch.tensor([0, 1]), lam=torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D"):
        Mix(perm=torch.tensor([[0, 1]]), lam=torch.ones(2))

    # draw_mix
    for batch in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch"):
            draw_mix(batch, 0.15, 0.5)
    for beta in (0, -0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="beta"):
            draw_mix(4, beta, 0.5)
    for fraction in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            draw_mix(4, 0.15, fraction)

    # m3co_term
    with pytest.raises(ValueError, match=r"targets must have shape \[B, B\]"):
        m3co_term(a, b, torch.ones(4, 3), 0.1)
    with pytest.raises(ValueError, match="floating-point"):
        m3co_term(a, b, torch.eye(4, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        m3co_term(a, b, torch.eye(4), -1.0)
    with pytest.raises(ValueError, match="same shape"):
        m3co_term(a, torch.randn(4, 5), torch.eye(4), 0.1)
