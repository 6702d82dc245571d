"""Tests of pipeline.losses.ntxent and pipeline.losses.genview (SimCLR's NT-Xent, GenView): NT-Xent and its
per-pair weighting against a slow loop over the written formula (value and gradients), closed forms (one pair,
identical and orthogonal embeddings), symmetry; the quality weights against a slow loop, mean 1, no gradient,
permutation equivariance, gamma 0; GenViewLoss; the noise bins at their edges; the PCA foreground ratio on a
constructed token set; bf16 autocast and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.losses import (
    GenViewLoss,
    NTXentLoss,
    foreground_ratio,
    noise_bin,
    ntxent_pair_losses,
    pooled,
    quality_weights,
    soft_foreground,
)
from conftest import assert_value_and_grads_match, loop_dot, loop_unit_rows, value_and_grads

TAU = 0.3


def _pairs(seed, n=6, dim=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=g, dtype=dtype) * 1.5
    z2 = z1 * 0.5 + torch.randn(n, dim, generator=g, dtype=dtype)
    return z1, z2


def _views(seed, n=6, tokens=(7, 9), chans=4, dtype=torch.float64):
    """Two views' tokens [N, T_a, C], [N, T_b, C] and soft foreground maps [N, T] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    ta = torch.randn(n, tokens[0], chans, generator=g, dtype=dtype)
    tb = torch.randn(n, tokens[1], chans, generator=g, dtype=dtype)
    fa = soft_foreground(torch.randn(n, tokens[0], generator=g, dtype=dtype))
    fb = soft_foreground(torch.randn(n, tokens[1], generator=g, dtype=dtype))
    return ta, tb, fa, fb


# ----------------------------------------------------------------------------- loop references


def ref_anchor_terms(z1, z2, tau):
    """l_a = -log(exp(u_a . u_pos(a) / tau) / sum_{b != a} exp(u_a . u_b / tau)) over the 2N views, u = unit
    rows of [z1; z2], pos(a) = a + N (first view) or a - N (second view)."""
    n = z1.shape[0]
    u = loop_unit_rows(torch.cat([z1, z2]))
    terms = []
    for a in range(2 * n):
        pos = (a + n) % (2 * n)
        denominator = sum(torch.exp(loop_dot(u[a], u[b]) / tau) for b in range(2 * n) if b != a)
        terms.append(-torch.log(torch.exp(loop_dot(u[a], u[pos]) / tau) / denominator))
    return terms


def ref_ntxent(z1, z2, tau, weights=None):
    """(1 / 2N) sum_a w_{a mod N} l_a."""
    n = z1.shape[0]
    terms = ref_anchor_terms(z1, z2, tau)
    w = [1.0] * n if weights is None else [float(x) for x in weights]
    return sum(w[a % n] * terms[a] for a in range(2 * n)) / (2 * n)


def ref_quality_weights(ta, tb, fa, fb, gamma):
    """w_i = N exp(gamma d_i) / sum_j exp(gamma d_j), d = cos(pool fg a, pool fg b) - cos(pool bg a, pool bg b),
    pool(x, m) = sum_t m_t x_t / sum_t m_t, bg = 1 - fg."""

    def pool(x, m):
        mass = sum(float(m[t]) for t in range(x.shape[0]))
        return sum(float(m[t]) / mass * x[t] for t in range(x.shape[0]))

    def cos(u, v):
        return loop_dot(u, v) / (loop_dot(u, u) ** 0.5 * loop_dot(v, v) ** 0.5)

    n = ta.shape[0]
    d = []
    for i in range(n):
        s_f = cos(pool(ta[i], fa[i]), pool(tb[i], fb[i]))
        s_b = cos(pool(ta[i], 1 - fa[i]), pool(tb[i], 1 - fb[i]))
        d.append(float(s_f - s_b))
    z = sum(math.exp(gamma * x) for x in d)
    return [n * math.exp(gamma * x) / z for x in d]

# ----------------------------------------------------------------------------- NT-Xent: formula


@pytest.mark.parametrize("seed", [0, 1])
def test_ntxent_matches_loop_reference_value_and_gradients(seed):
    z1, z2 = _pairs(seed)
    loss_fn = NTXentLoss(temperature=TAU)
    assert_value_and_grads_match(value_and_grads(loss_fn, z1, z2), value_and_grads(lambda a, b: ref_ntxent(a, b, TAU), z1, z2))


def test_weighted_ntxent_matches_loop_reference_value_and_gradients():
    z1, z2 = _pairs(2, n=5, dim=3)
    weights = torch.tensor([0.2, 1.7, 0.0, 1.1, 2.0], dtype=torch.float64)
    loss_fn = NTXentLoss(temperature=0.15)
    got = value_and_grads(lambda a, b: loss_fn(a, b, weights=weights), z1, z2)
    want = value_and_grads(lambda a, b: ref_ntxent(a, b, 0.15, weights.tolist()), z1, z2)
    assert_value_and_grads_match(got, want)


def test_pair_losses_are_the_mean_of_the_two_anchor_terms():
    z1, z2 = _pairs(3)
    terms = ref_anchor_terms(z1, z2, TAU)
    got = ntxent_pair_losses(z1, z2, TAU)
    assert got.shape == (6,) and got.dtype == torch.float64
    want = torch.stack([(terms[i] + terms[i + 6]) / 2 for i in range(6)])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert NTXentLoss(TAU)(z1, z2).item() == pytest.approx(got.mean().item(), abs=1e-14)


def test_weights_multiply_each_pairs_terms():
    z1, z2 = _pairs(4)
    pair = ntxent_pair_losses(z1, z2, TAU)
    loss_fn = NTXentLoss(TAU)
    assert torch.equal(loss_fn(z1, z2, weights=torch.ones(6, dtype=torch.float64)), loss_fn(z1, z2))
    for i in range(6):  # a one-hot weight picks pair i's loss, divided by N
        onehot = torch.zeros(6, dtype=torch.float64)
        onehot[i] = 1.0
        assert loss_fn(z1, z2, weights=onehot).item() == pytest.approx(pair[i].item() / 6, rel=1e-13)
    w = torch.rand(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    assert loss_fn(z1, z2, weights=w).item() == pytest.approx((w * pair).mean().item(), rel=1e-13)
    assert loss_fn(z1, z2, weights=w.float()).dtype == torch.float64  # weights follow the loss's dtype


def test_symmetric_in_the_two_views_and_scale_invariant():
    z1, z2 = _pairs(5)
    loss_fn = NTXentLoss(TAU)
    assert loss_fn(z1, z2).item() == pytest.approx(loss_fn(z2, z1).item(), abs=1e-14)
    torch.testing.assert_close(ntxent_pair_losses(z1, z2, TAU), ntxent_pair_losses(z2, z1, TAU))
    assert loss_fn(3.0 * z1, 0.1 * z2).item() == pytest.approx(loss_fn(z1, z2).item(), abs=1e-13)


# ----------------------------------------------------------------------------- NT-Xent: closed forms


def test_one_pair_gives_exactly_zero():
    z1, z2 = _pairs(6, n=1)
    for tau in (0.01, 0.2, 5.0):
        value, grad_a, grad_b = value_and_grads(NTXentLoss(tau), z1, z2)
        assert value.item() == 0.0  # each anchor's denominator holds its positive only
        assert grad_a.abs().max() < 1e-12 and grad_b.abs().max() < 1e-12
    assert ntxent_pair_losses(z1.float(), z2.float(), 0.05).tolist() == [0.0]


@pytest.mark.parametrize("n", [2, 4])
def test_identical_embeddings_give_log_2n_minus_1(n):
    z = torch.tensor([[0.6, -0.8, 0.0]], dtype=torch.float64).repeat(n, 1)
    for tau in (0.1, 1.0):
        assert NTXentLoss(tau)(z, 2 * z).item() == pytest.approx(math.log(2 * n - 1), abs=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_orthogonal_embeddings(n):
    tau = 0.25
    eye = torch.eye(2 * n, dtype=torch.float64)
    # positives identical, every negative orthogonal: l = log(1 + (2N - 2) exp(-1 / tau))
    same = NTXentLoss(tau)(eye[:n], eye[:n])
    assert same.item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), abs=1e-12)
    # all 2N views orthogonal (positives too): every logit is 0, l = log(2N - 1)
    apart = NTXentLoss(tau)(eye[:n], eye[n:])
    assert apart.item() == pytest.approx(math.log(2 * n - 1), abs=1e-12)


def test_small_temperature_is_finite():
    z1, z2 = _pairs(7)
    value = NTXentLoss(1e-4)(z1.float(), z2.float())
    assert torch.isfinite(value) and value.item() > 0


def test_empty_batch_is_a_defined_zero():
    z1 = torch.zeros(0, 4, requires_grad=True)
    z2 = torch.zeros(0, 4, requires_grad=True)
    value = NTXentLoss()(z1, z2)
    assert value.item() == 0.0
    value.backward()
    assert ntxent_pair_losses(z1, z2).shape == (0,)
    assert GenViewLoss()(z1, z2, torch.zeros(0, 3, 2), torch.zeros(0, 3, 2), torch.zeros(0, 3), torch.zeros(0, 3)) == 0


# ----------------------------------------------------------------------------- quality weights


@pytest.mark.parametrize("gamma", [1.0, 3.5])
def test_quality_weights_match_loop_reference(gamma):
    ta, tb, fa, fb = _views(10)
    got = quality_weights(ta, tb, fa, fb, gamma=gamma)
    assert got.shape == (6,) and got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(ref_quality_weights(ta, tb, fa, fb, gamma), dtype=torch.float64))
    assert got.mean().item() == pytest.approx(1.0, abs=1e-14)
    assert len(set(got.tolist())) == 6  # not all ones: the test batch has different qualities


def test_quality_weights_have_mean_one_and_no_gradient():
    ta, tb, fa, fb = (x.float().requires_grad_(True) for x in _views(11, n=9))
    w = quality_weights(ta, tb, fa, fb)
    assert not w.requires_grad and w.grad_fn is None and w.dtype == torch.float32
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert bool((w > 0).all())


def test_quality_weights_are_permutation_equivariant():
    ta, tb, fa, fb = _views(12, n=7)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    w = quality_weights(ta, tb, fa, fb, gamma=2.0)
    w_perm = quality_weights(ta[perm], tb[perm], fa[perm], fb[perm], gamma=2.0)
    torch.testing.assert_close(w_perm, w[perm], atol=1e-14, rtol=1e-14)


def test_gamma_zero_gives_all_ones():
    ta, tb, fa, fb = _views(13, n=5)
    torch.testing.assert_close(quality_weights(ta, tb, fa, fb, gamma=0), torch.ones(5, dtype=torch.float64))


def test_pairs_agreeing_on_the_foreground_weigh_more():
    """Pair 0: same object, different backgrounds (good); pair 1: different objects, same background (bad)."""
    obj, bg, other_obj, other_bg = torch.eye(4, dtype=torch.float64)
    f = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64).repeat(2, 1)  # 2 fg, 4 bg tokens

    def image(o, b):
        return torch.stack([o, o, b, b, b, b])

    ta = torch.stack([image(obj, bg), image(obj, bg)])
    tb = torch.stack([image(obj, other_bg), image(other_obj, bg)])
    w = quality_weights(ta, tb, f, f)
    assert w[0].item() == pytest.approx(2 * math.exp(1) / (math.exp(1) + math.exp(-1)))
    assert w[1].item() == pytest.approx(2 * math.exp(-1) / (math.exp(1) + math.exp(-1)))


def test_soft_foreground_min_max_and_constant_rows():
    proj = torch.tensor([[2.0, -1.0, 0.5], [3.0, 3.0, 3.0], [0.0, 4.0, 1.0]])
    f = soft_foreground(proj)
    torch.testing.assert_close(f, torch.tensor([[1.0, 0.0, 0.5], [0.5, 0.5, 0.5], [0.0, 1.0, 0.25]]))
    assert soft_foreground(proj.double()).dtype == torch.float64
    assert torch.equal(soft_foreground(proj + 7.0), f)  # shift-invariant (foreground_ratio shifts by its threshold)


def test_pooled_normalises_the_maps():
    g = torch.Generator().manual_seed(14)
    x = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    m = torch.rand(3, 5, generator=g, dtype=torch.float64)
    m[2] = 0.0
    got = pooled(x, m)
    want = torch.stack([(m[i, :, None] * x[i]).sum(0) / m[i].sum() for i in range(2)])
    torch.testing.assert_close(got[:2], want)
    assert torch.equal(got[2], torch.zeros(2, dtype=torch.float64))  # no mass: the zero vector
    torch.testing.assert_close(pooled(x, 5 * m), got)


def test_genview_loss_is_ntxent_weighted_by_detached_quality():
    z1, z2 = _pairs(15)
    ta, tb, fa, fb = _views(15)
    loss_fn = GenViewLoss(temperature=TAU, gamma=1.0)
    w = quality_weights(ta, tb, fa, fb, gamma=1.0)
    got = value_and_grads(lambda a, b: loss_fn(a, b, ta, tb, fa, fb), z1, z2)
    want = value_and_grads(lambda a, b: ref_ntxent(a, b, TAU, w.tolist()), z1, z2)
    assert_value_and_grads_match(got, want)
    # tokens and maps that require grad receive none: the weights are constants
    ta_g, fa_g = ta.clone().requires_grad_(True), fa.clone().requires_grad_(True)
    z1_g = z1.clone().requires_grad_(True)
    loss_fn(z1_g, z2, ta_g, tb, fa_g, fb).backward()
    assert ta_g.grad is None and fa_g.grad is None and z1_g.grad is not None
    # gamma 0: plain NT-Xent
    plain = GenViewLoss(temperature=TAU, gamma=0.0)(z1, z2, ta, tb, fa, fb)
    assert plain.item() == pytest.approx(NTXentLoss(TAU)(z1, z2).item(), abs=1e-13)


# ----------------------------------------------------------------------------- noise bins


def test_noise_bin_at_the_edges():
    cases = {0.0: 0, 0.1: 0, 0.2: 0, 0.2000001: 100, 0.4: 100, 0.41: 200, 0.6: 200, 0.8: 300, 0.800001: 400, 1.0: 400}
    for ratio, level in cases.items():
        assert noise_bin(ratio) == level, ratio
        assert noise_bin(np.float32(ratio)) == level, ratio
        assert noise_bin(torch.tensor(ratio)).item() == level, ratio
        assert noise_bin(torch.tensor(ratio, dtype=torch.float64)).item() == level, ratio
    assert noise_bin(0) == 0 and noise_bin(1) == 400 and isinstance(noise_bin(0.5), int)


def test_noise_bin_is_vectorised():
    ratios = [[0.0, 0.2, 0.2000001], [0.8, 1.0, 0.5]]
    want = [[0, 0, 100], [300, 400, 200]]
    t = noise_bin(torch.tensor(ratios))
    assert t.shape == (2, 3) and t.dtype == torch.int64 and t.tolist() == want
    a = noise_bin(np.array(ratios))
    assert isinstance(a, np.ndarray) and a.shape == (2, 3) and a.tolist() == want
    assert noise_bin(ratios).tolist() == want
    assert noise_bin(torch.zeros(0)).shape == (0,)
    strengths = noise_bin(torch.tensor([0.1, 0.5, 0.9]), edges=(0.5,), levels=(0.0, 0.25))
    assert strengths.dtype == torch.float64 and strengths.tolist() == [0.0, 0.0, 0.25]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ratio=-0.01), "ratio"),
        (dict(ratio=1.0001), "ratio"),
        (dict(ratio=float("nan")), "ratio"),
        (dict(ratio=torch.tensor([0.5, 2.0])), "ratio"),
        (dict(ratio=True), "ratio"),
        (dict(ratio="0.3"), "ratio"),
        (dict(ratio=0.5, edges=(0.4, 0.2, 0.6, 0.8)), "increasing"),
        (dict(ratio=0.5, edges=(0.2, 0.2, 0.6, 0.8)), "increasing"),
        (dict(ratio=0.5, levels=(0, 100, 200, 300)), "one more"),
        (dict(ratio=0.5, edges=(0.5,), levels=(0, 1, 2)), "one more"),
        (dict(ratio=0.5, levels=(0, 100, float("inf"), 300, 400)), "levels"),
    ],
)
def test_noise_bin_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        noise_bin(**kwargs)


# ----------------------------------------------------------------------------- foreground ratio (PCA)

OBJECT_SHARES = {0: 0.65, 3: 0.95, 4: 0.75, 6: 0.85}  # half of 8 images; 320 of 800 tokens = 40 %


def _scene(object_shares, batch=8, length=100, chans=16, seed=0):
    """Background tokens ~ N(0, 0.3^2) around a common centre; an image with an object has round(share * T)
    tokens at random positions shifted by a fixed object direction (norm 4). Returns tokens and the true mask."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(chans, generator=g)
    direction = torch.randn(chans, generator=g)
    direction = 4 * direction / direction.norm()
    tokens = centre + 0.3 * torch.randn(batch, length, chans, generator=g)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for image, share in object_shares.items():
        where = torch.randperm(length, generator=g)[: round(share * length)]
        mask[image, where] = True
    tokens[mask] += direction
    return tokens, mask


def test_foreground_ratio_recovers_the_objects():
    tokens, mask = _scene(OBJECT_SHARES)
    ratio, proj = foreground_ratio(tokens, share=0.4)
    assert ratio.shape == (8,) and proj.shape == (8, 100) and ratio.dtype == proj.dtype == torch.float32
    want = torch.tensor([OBJECT_SHARES.get(i, 0.0) for i in range(8)])
    torch.testing.assert_close(ratio, want)  # the objects are exactly 40 % of the tokens: exact recovery
    assert torch.equal(proj > 0, mask)
    assert ratio.mean().item() == pytest.approx(0.4)
    # deterministic, and the same whatever the sign the data arrive with, and whatever the token order
    again, proj_again = foreground_ratio(tokens.clone(), share=0.4)
    assert torch.equal(again, ratio) and torch.equal(proj_again, proj)
    assert torch.equal(foreground_ratio(-tokens)[0], ratio)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    assert torch.equal(foreground_ratio(tokens[:, order])[0], ratio)
    f = soft_foreground(proj)
    for image in OBJECT_SHARES:  # within an image with an object, every object token is more foreground
        assert f[image][mask[image]].min() > f[image][~mask[image]].max()


def test_foreground_ratio_orders_images_when_objects_are_fewer_than_the_share():
    shares = {1: 0.1, 2: 0.3, 5: 0.5, 7: 0.7}  # 160 of 800 object tokens; the threshold takes 320
    tokens, mask = _scene(shares, seed=3)
    ratio, proj = foreground_ratio(tokens, share=0.4)
    assert ratio.mean().item() == pytest.approx(0.4, abs=1 / 800)
    assert bool((proj > 0)[mask].all())  # every object token is foreground
    objects = ratio[[1, 2, 5, 7]]
    assert bool((objects[1:] > objects[:-1]).all())  # ordered as the true shares
    assert bool((objects >= torch.tensor([0.1, 0.3, 0.5, 0.7])).all())
    # the 160 extra foreground tokens are background noise spread over all images: the objects of 30 % and
    # more still rank above every image without an object
    assert ratio[[2, 5, 7]].min() > ratio[[0, 3, 4, 6]].max()


def test_foreground_ratio_errors_and_precision():
    tokens, _ = _scene(OBJECT_SHARES)
    for share in (0, 1, 1.5, -0.1, True, "0.4"):
        with pytest.raises(ValueError, match="share"):
            foreground_ratio(tokens, share=share)
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        foreground_ratio(tokens[0])
    with pytest.raises(ValueError, match="at least 2"):
        foreground_ratio(tokens[:1, :1])
    bad = tokens.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        foreground_ratio(bad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ratio, proj = foreground_ratio(tokens.bfloat16())
    assert ratio.dtype == proj.dtype == torch.float32
    assert foreground_ratio(tokens.double())[0].dtype == torch.float64


# ----------------------------------------------------------------------------- precision and bad inputs


def test_float32_inside_bf16_autocast():
    z1, z2 = (x.float() for x in _pairs(20, n=16, dim=32))
    ta, tb, fa, fb = (x.float() for x in _views(20, n=16, chans=8))
    ntx, gen = NTXentLoss(), GenViewLoss()
    want_ntx, want_gen, want_w = ntx(z1, z2), gen(z1, z2, ta, tb, fa, fb), quality_weights(ta, tb, fa, fb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_ntx, got_gen = ntx(z1, z2), gen(z1, z2, ta, tb, fa, fb)
        got_pairs, got_w = ntxent_pair_losses(z1, z2), quality_weights(ta, tb, fa, fb)
        from_bf16 = ntx(z1.bfloat16(), z2.bfloat16(), weights=want_w.bfloat16())
        from_bf16_gen = gen(z1.bfloat16(), z2.bfloat16(), ta.bfloat16(), tb.bfloat16(), fa.bfloat16(), fb.bfloat16())
    for value in (want_ntx, want_gen, got_ntx, got_gen, got_pairs, got_w, from_bf16, from_bf16_gen):
        assert value.dtype == torch.float32
    assert got_ntx.item() == pytest.approx(want_ntx.item(), abs=1e-5)
    assert got_gen.item() == pytest.approx(want_gen.item(), abs=1e-5)
    torch.testing.assert_close(got_w, want_w)
    assert from_bf16.item() == pytest.approx(want_gen.item(), rel=2e-2)
    assert from_bf16_gen.item() == pytest.approx(want_gen.item(), rel=2e-2)


def test_bad_inputs():
    z1, z2 = _pairs(21)
    ta, tb, fa, fb = _views(21)
    loss_fn = NTXentLoss()
    for tau in (0, -1.0, float("inf"), "0.2"):
        with pytest.raises(ValueError, match="temperature"):
            NTXentLoss(tau)
        with pytest.raises(ValueError, match="temperature"):
            GenViewLoss(temperature=tau)
    for gamma in (-0.5, float("nan"), None):
        with pytest.raises(ValueError, match="gamma"):
            GenViewLoss(gamma=gamma)
        with pytest.raises(ValueError, match="gamma"):
            quality_weights(ta, tb, fa, fb, gamma=gamma)
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(z1, z2[:5])
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        loss_fn(z1[None], z2[None])
    with pytest.raises(ValueError, match="floating-point"):
        loss_fn(z1.long(), z2.long())
    weight_cases = [
        (torch.ones(5, dtype=torch.float64), "length 6"),
        (torch.ones(6, dtype=torch.long), "floating-point"),
        (torch.ones(6, dtype=torch.float64, requires_grad=True), "require grad"),
        (torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0, 1.0]), ">= 0"),
        (torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0, 1.0]), "finite"),
    ]
    for weights, match in weight_cases:
        with pytest.raises(ValueError, match=match):
            loss_fn(z1, z2, weights=weights)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quality_weights(ta, tb, fa * 2, fb)
    with pytest.raises(ValueError, match="fg_b must have shape"):
        quality_weights(ta, tb, fa, fa)
    with pytest.raises(ValueError, match="same batch size"):
        quality_weights(ta, tb[:5], fa, fb[:5])
    with pytest.raises(ValueError, match="one per pair"):
        GenViewLoss()(z1[:5], z2[:5], ta, tb, fa, fb)
    with pytest.raises(ValueError, match="proj"):
        soft_foreground(torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        soft_foreground(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match=">= 0"):
        pooled(ta, -fa)
