"""Tests of pipeline.losses: each loss against a slow loop-based evaluation of its written formula,
pytorch-metric-learning's SupConLoss, hand-computed cases, degenerate batches and bad settings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import MultimodalInfoNCELoss, RehearsalContrastiveLoss, SequenceKDLoss
from conftest import loop_dot, loop_unit_rows

SEEDS = [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- loop references




def ref_contrastive(student, teacher, labels, anchors, variant, tau, include_self):
    """The docstring's formula, one anchor / positive / negative at a time."""
    s = loop_unit_rows(student)
    t = loop_unit_rows(teacher) if teacher is not None else None
    u = s if variant == "supcon" else t  # positive bank
    v = t if variant == "ntpt" else s  # negative bank
    y = labels.tolist()
    losses = []
    for i in range(len(y)):
        if not anchors[i]:
            continue
        pos = [p for p in range(len(y)) if y[p] == y[i] and (include_self or p != i)]
        neg = [n for n in range(len(y)) if y[n] != y[i]]
        if not pos:
            continue
        denominator = sum(torch.exp(loop_dot(s[i], u[p]) / tau) for p in pos) + sum(
            torch.exp(loop_dot(s[i], v[n]) / tau) for n in neg
        )
        losses.append(-sum(torch.log(torch.exp(loop_dot(s[i], u[p]) / tau) / denominator) for p in pos) / len(pos))
    if not losses:
        return student.sum() * 0.0
    return sum(losses) / len(losses)


def ref_mm(audio, text, tau, symmetric, mask=None, ids=None):
    keep = [i for i in range(audio.shape[0]) if mask is None or bool(mask[i])]
    a = [r for i, r in enumerate(loop_unit_rows(audio)) if i in keep]
    x = [r for i, r in enumerate(loop_unit_rows(text)) if i in keep]
    n = len(keep)
    tid = [ids[i].item() for i in keep] if ids is not None else list(range(n))
    S = [[loop_dot(a[i], x[j]) / tau for j in range(n)] for i in range(n)]
    Y = [[(tid[i] == tid[j]) / sum(tid[k] == tid[i] for k in range(n)) for j in range(n)] for i in range(n)]
    a2t = 0.0
    for i in range(n):
        row = sum(torch.exp(S[i][k]) for k in range(n))
        a2t = a2t - sum(Y[i][j] * torch.log(torch.exp(S[i][j]) / row) for j in range(n)) / n
    if not symmetric:
        return a2t
    t2a = 0.0
    for j in range(n):
        col = sum(torch.exp(S[k][j]) for k in range(n))
        t2a = t2a - sum(Y[i][j] * torch.log(torch.exp(S[i][j]) / col) for i in range(n)) / n
    return 0.5 * (a2t + t2a)


def _random_batch(seed, batch=12, dim=8, n_classes=4):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 3.0
    teacher = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 0.5
    labels = torch.randint(0, n_classes, (batch,), generator=g)
    labels[-1] = 9  # a singleton class: as anchor it has no student-side positive
    anchors = torch.rand(batch, generator=g) < 0.5
    anchors[0] = anchors[-1] = True
    return student, teacher, labels, anchors


# ----------------------------------------------------------------------------- contrastive: formula


CASES = [("nspt", True), ("nspt", False), ("supcon", False), ("ntpt", True), ("ntpt", False)]


@pytest.mark.parametrize("variant,include_self", CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_contrastive_matches_loop_reference_value_and_gradient(variant, include_self, seed):
    student, teacher, labels, anchors = _random_batch(seed)
    tau = 0.2
    loss_fn = RehearsalContrastiveLoss(variant, tau, include_self_positive=include_self)

    s1 = student.clone().requires_grad_(True)
    got = loss_fn(s1, teacher, labels, anchors)
    (g_got,) = torch.autograd.grad(got, s1)

    s2 = student.clone().requires_grad_(True)
    want = ref_contrastive(s2, teacher, labels, anchors, variant, tau, include_self)
    (g_want,) = torch.autograd.grad(want, s2)

    assert got.item() > 0
    assert got.item() == pytest.approx(want.item(), abs=1e-6, rel=1e-6)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)
    assert g_got.abs().sum() > 0


def test_variants_differ_and_default_self_positive():
    student, teacher, labels, anchors = _random_batch(7)
    values = {v: RehearsalContrastiveLoss(v, 0.2)(student, teacher, labels, anchors).item() for v in ("nspt", "ntpt")}
    values["supcon"] = RehearsalContrastiveLoss("supcon", 0.2)(student, None, labels, anchors).item()
    assert len({round(v, 6) for v in values.values()}) == 3
    assert RehearsalContrastiveLoss("nspt").include_self_positive is True
    assert RehearsalContrastiveLoss("ntpt").include_self_positive is True
    assert RehearsalContrastiveLoss("supcon").include_self_positive is False


def test_supcon_ignores_teacher_and_only_anchors_count():
    student, teacher, labels, anchors = _random_batch(3)
    loss_fn = RehearsalContrastiveLoss("supcon", 0.1)
    a = loss_fn(student, None, labels, anchors)
    b = loss_fn(student, torch.randn_like(teacher), labels, anchors)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)
    # the anchor mask selects whose L_i is averaged: the complementary set gives another value
    assert loss_fn(student, None, labels, ~anchors).item() != pytest.approx(a.item(), abs=1e-6)


# ----------------------------------------------------------------------------- contrastive: PML


@pytest.mark.parametrize("seed", SEEDS)
def test_supcon_matches_pytorch_metric_learning(seed):
    """PML's SupConLoss = our supcon with every sample an anchor, student only.

    Conventions checked in PML 2.x: cosine similarity (normalises inside), positives = same label
    excluding the diagonal, denominator = positives + negatives, per-anchor mean over positives, then
    AvgNonZeroReducer (mean over anchors with a non-zero loss, i.e. anchors with >= 1 positive). They
    coincide whenever the batch has >= 2 classes (the singleton class 9 in this batch has no positive
    and is dropped by both). They differ on a single-class batch: PML returns 0 there (it needs a
    negative), ours keeps the positives-only denominator (tested in test_single_class_closed_form).
    """
    from pytorch_metric_learning import losses as pml_losses

    student, _, labels, _ = _random_batch(seed)
    tau = 0.1
    s1 = student.clone().requires_grad_(True)
    got = RehearsalContrastiveLoss("supcon", tau)(s1, None, labels)
    (g_got,) = torch.autograd.grad(got, s1)
    s2 = student.clone().requires_grad_(True)
    want = pml_losses.SupConLoss(temperature=tau)(s2, labels)
    (g_want,) = torch.autograd.grad(want, s2)
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- contrastive: by hand

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_supcon_two_samples_same_label_is_zero():
    # each anchor's only other sample is its positive: log(e^z / e^z) = 0, whatever the embeddings
    loss = RehearsalContrastiveLoss("supcon", 0.1)(_t([E1, [0.6, 0.8]]), None, torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_supcon_three_samples_orthogonal_negative():
    # anchors 0, 1 (identical, label 0): positive logit 1/tau, negative (orthogonal) logit 0;
    # anchor 2 has no positive and is left out of the mean
    tau = 0.5
    loss = RehearsalContrastiveLoss("supcon", tau)(_t([E1, E1, E2]), None, torch.tensor([0, 0, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1 / tau)), rel=1e-12)


def test_nspt_self_positive_against_student_negative():
    tau = 0.5
    s, t, y = _t([E1, E2]), _t([E1, [-1.0, 0.0]]), torch.tensor([0, 1])
    anchors = torch.tensor([True, False])
    loss = RehearsalContrastiveLoss("nspt", tau)(s, t, y, anchors)
    # positive t_0 = e1 (logit 2), negative s_1 = e2 (logit 0); t_1 is never used by nspt
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1 / tau)), rel=1e-12)
    # without the self positive, anchor 0 has no positive: defined zero
    no_self = RehearsalContrastiveLoss("nspt", tau, include_self_positive=False)(s, t, y, anchors)
    assert no_self.item() == 0.0


def test_ntpt_uses_teacher_negatives():
    tau = 0.5
    s, t, y = _t([E1, E1]), _t([E2, E1]), torch.tensor([0, 1])
    loss = RehearsalContrastiveLoss("ntpt", tau)(s, t, y, torch.tensor([True, False]))
    # positive t_0 (orthogonal: logit 0), negative t_1 = e1 (logit 2)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(1 / tau)), rel=1e-12)
    # the same inputs under nspt: negative is s_1 = e1 too, so the value is the same ...
    assert RehearsalContrastiveLoss("nspt", tau)(s, t, y, torch.tensor([True, False])).item() == pytest.approx(
        loss.item()
    )
    # ... but it changes under nspt when s_1 moves and not under ntpt
    s_moved = _t([E1, E2])
    assert RehearsalContrastiveLoss("ntpt", tau)(s_moved, t, y, torch.tensor([True, False])).item() == pytest.approx(
        loss.item()
    )
    assert RehearsalContrastiveLoss("nspt", tau)(s_moved, t, y, torch.tensor([True, False])).item() == pytest.approx(
        math.log(2.0)
    )


def test_single_class_closed_form():
    # nspt, two samples of one class, anchor 0: positives t_0 = t_1 = e1, both logits 1/tau, no negative
    loss = RehearsalContrastiveLoss("nspt", 0.1)(_t([E1, E2]), _t([E1, E1]), torch.tensor([3, 3]), torch.tensor([True, False]))
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-12)


def test_tiny_temperature_does_not_overflow_float32():
    tau = 1e-3  # logits of +-1000: exp() alone would overflow float32
    s = torch.tensor([E1, E1], requires_grad=True)
    t = torch.tensor([E2, E1])
    y = torch.tensor([0, 1])
    loss = RehearsalContrastiveLoss("ntpt", tau)(s, t, y, torch.tensor([True, False]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1000.0, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    # tau = 0.05 on random unit vectors: float32 agrees with float64
    student, teacher, labels, anchors = _random_batch(11)
    f = RehearsalContrastiveLoss("nspt", 0.05)
    assert f(student.float(), teacher.float(), labels, anchors).item() == pytest.approx(
        f(student, teacher, labels, anchors).item(), rel=1e-5
    )


def test_normalised_inside_and_teacher_gets_no_gradient():
    student, teacher, labels, anchors = _random_batch(5)
    scale = torch.rand(student.shape[0], 1, dtype=torch.float64) * 10 + 0.1
    for variant in ("nspt", "ntpt"):
        f = RehearsalContrastiveLoss(variant, 0.1)
        assert f(student * scale, teacher / scale, labels, anchors).item() == pytest.approx(
            f(student, teacher, labels, anchors).item(), rel=1e-10
        )
        t = teacher.clone().requires_grad_(True)
        s = student.clone().requires_grad_(True)
        f(s, t, labels, anchors).backward()
        assert t.grad is None and s.grad is not None


# ----------------------------------------------------------------------------- contrastive: degenerate


def _check_defined(loss, student):
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.requires_grad
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("variant", ["nspt", "supcon", "ntpt"])
def test_degenerate_batches_are_defined(variant):
    f = RehearsalContrastiveLoss(variant, 0.05)
    # no anchors
    s = torch.randn(6, 4, requires_grad=True)
    loss = f(s, torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]), torch.zeros(6, dtype=torch.bool))
    assert loss.item() == 0.0
    _check_defined(loss, s)
    assert s.grad.abs().sum() == 0
    # batch of one
    s = torch.randn(1, 4, requires_grad=True)
    loss = f(s, torch.randn(1, 4), torch.tensor([5]), torch.tensor([True]))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    _check_defined(loss, s)
    # one class (no negatives anywhere)
    s = torch.randn(5, 4, requires_grad=True)
    loss = f(s, torch.randn(5, 4), torch.full((5,), 2), torch.ones(5, dtype=torch.bool))
    _check_defined(loss, s)
    assert loss.item() > 0  # >= log of the number of positives when they are not all equal
    # empty batch
    s = torch.randn(0, 4, requires_grad=True)
    loss = f(s, torch.randn(0, 4), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    _check_defined(loss, s)


def test_anchors_without_positives_give_zero():
    s = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 2])
    anchors = torch.tensor([True, True, False, False])  # classes 0 and 1 are singletons
    for f in (RehearsalContrastiveLoss("supcon"), RehearsalContrastiveLoss("nspt", include_self_positive=False)):
        s.grad = None
        loss = f(s, torch.randn(4, 3), y, anchors)
        assert loss.item() == 0.0
        _check_defined(loss, s)


# ----------------------------------------------------------------------------- contrastive: bad settings


def test_contrastive_bad_settings_raise():
    with pytest.raises(ValueError, match="variant"):
        RehearsalContrastiveLoss("simclr")
    for tau in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            RehearsalContrastiveLoss("nspt", tau)
    with pytest.raises(ValueError, match="include_self_positive"):
        RehearsalContrastiveLoss("supcon", include_self_positive=True)
    f = RehearsalContrastiveLoss("nspt")
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        f(s[0], t[0], y)
    with pytest.raises(ValueError, match="same shape"):
        f(s, torch.randn(4, 5), y)
    with pytest.raises(ValueError, match="teacher"):
        f(s, None, y)
    with pytest.raises(ValueError, match="integer"):
        f(s, t, y.float())
    with pytest.raises(ValueError, match="length 4"):
        f(s, t, y[:3])
    with pytest.raises(ValueError, match="bool"):
        f(s, t, y, torch.tensor([1, 0, 1, 0]))


# ----------------------------------------------------------------------------- MM


def _mm_batch(seed, batch=10, dim=6):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    text = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 2
    ids = torch.tensor([0, 1, 2, 1, 3, 4, 0, 5, 1, 6])
    mask = torch.rand(batch, generator=g) < 0.7
    mask[:3] = True
    return audio, text, ids, mask


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("use_ids", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_mm_matches_loop_reference(seed, use_mask, use_ids, symmetric):
    audio, text, ids, mask = _mm_batch(seed)
    mask = mask if use_mask else None
    ids = ids if use_ids else None
    tau = 0.3
    a1 = audio.clone().requires_grad_(True)
    got = MultimodalInfoNCELoss(tau, symmetric)(a1, text, mask, ids)
    (g_got,) = torch.autograd.grad(got, a1)
    a2 = audio.clone().requires_grad_(True)
    want = ref_mm(a2, text, tau, symmetric, mask, ids)
    (g_want,) = torch.autograd.grad(want, a2)
    assert got.item() == pytest.approx(want.item(), abs=1e-6, rel=1e-6)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)


def test_mm_symmetry():
    audio, text, _, _ = _mm_batch(1)
    sym = MultimodalInfoNCELoss(0.2, symmetric=True)
    one_way = MultimodalInfoNCELoss(0.2, symmetric=False)
    assert sym(audio, text).item() == pytest.approx(sym(text, audio).item(), rel=1e-12)
    a2t, t2a = one_way(audio, text).item(), one_way(text, audio).item()
    assert a2t != pytest.approx(t2a, rel=1e-6)
    assert sym(audio, text).item() == pytest.approx(0.5 * (a2t + t2a), rel=1e-12)


def test_mm_aligned_batch_low_temperature_is_near_zero():
    emb = torch.eye(6, 8, dtype=torch.float64)  # 6 orthonormal rows
    loss = MultimodalInfoNCELoss(0.01)(emb * 3, emb)
    assert 0 <= loss.item() < 1e-6
    # and a misaligned (shifted) batch is large
    assert MultimodalInfoNCELoss(0.01)(emb, emb.roll(1, dims=0)).item() > 50


def test_mm_dedupe_makes_same_text_pairs_interchangeable():
    audio, text, ids, _ = _mm_batch(2)
    # samples 1 and 3 share text id 1: swapping their text rows only permutes positives among themselves
    swapped = text.clone()
    swapped[[1, 3]] = text[[3, 1]]
    f = MultimodalInfoNCELoss(0.2)
    assert f(audio, swapped, dedupe_by=ids).item() == pytest.approx(f(audio, text, dedupe_by=ids).item(), rel=1e-12)
    assert f(audio, swapped).item() != pytest.approx(f(audio, text).item(), rel=1e-6)
    # distinct ids: the same as plain InfoNCE
    assert f(audio, text, dedupe_by=torch.arange(10) * 7).item() == pytest.approx(f(audio, text).item(), rel=1e-12)


def test_mm_mask_equals_subset_and_masked_rows_get_no_gradient():
    audio, text, ids, mask = _mm_batch(4)
    f = MultimodalInfoNCELoss(0.1)
    a = audio.clone().requires_grad_(True)
    loss = f(a, text, sample_mask=mask, dedupe_by=ids)
    assert loss.item() == pytest.approx(f(audio[mask], text[mask], dedupe_by=ids[mask]).item(), rel=1e-12)
    loss.backward()
    assert a.grad[~mask].abs().sum() == 0 and a.grad[mask].abs().sum() > 0


def test_mm_fewer_than_two_samples_is_defined_zero():
    f = MultimodalInfoNCELoss(0.1)
    for mask in (torch.tensor([False, True, False]), torch.zeros(3, dtype=torch.bool)):
        a = torch.randn(3, 4, requires_grad=True)
        loss = f(a, torch.randn(3, 4), sample_mask=mask)
        assert loss.item() == 0.0
        _check_defined(loss, a)


def test_mm_bad_settings_raise():
    for tau in (0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            MultimodalInfoNCELoss(tau)
    f = MultimodalInfoNCELoss()
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        f(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        f(a[None], a[None])
    with pytest.raises(ValueError, match="integer"):
        f(a, a, dedupe_by=torch.rand(4))
    with pytest.raises(ValueError, match="bool"):
        f(a, a, sample_mask=torch.ones(4))


# ----------------------------------------------------------------------------- Seq-KD


@pytest.mark.parametrize("pad", [0, -100])
def test_seq_kd_equals_cross_entropy_on_masked_subset(pad):
    g = torch.Generator().manual_seed(0)
    B, L, V = 5, 7, 11
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, V, (B, L), generator=g)
    targets[0, 4:] = pad
    targets[2, 1:] = pad
    mask = torch.tensor([True, False, True, True, False])
    got = SequenceKDLoss(pad)(logits, targets, mask)
    want = F.cross_entropy(logits[mask].reshape(-1, V), targets[mask].reshape(-1), ignore_index=pad)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    (g_got,) = torch.autograd.grad(got, logits)
    (g_want,) = torch.autograd.grad(want, logits)
    torch.testing.assert_close(g_got, g_want)
    assert g_got[~mask].abs().sum() == 0
    # no mask = every sample
    full = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=pad)
    assert SequenceKDLoss(pad)(logits, targets).item() == pytest.approx(full.item(), rel=1e-12)


def test_seq_kd_uniform_logits_is_log_vocab():
    logits = torch.zeros(2, 3, 13)
    targets = torch.tensor([[4, 5, 0], [7, 0, 0]])
    assert SequenceKDLoss(0)(logits, targets).item() == pytest.approx(math.log(13), rel=1e-6)


def test_seq_kd_no_sample_or_all_padding_is_defined_zero():
    f = SequenceKDLoss(0)
    logits = torch.randn(3, 4, 6, requires_grad=True)
    targets = torch.randint(1, 6, (3, 4))
    loss = f(logits, targets, torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    _check_defined(loss, logits)
    assert f(logits, torch.zeros(3, 4, dtype=torch.long)).item() == 0.0


def test_seq_kd_bad_settings_raise():
    with pytest.raises(ValueError, match="pad_index"):
        SequenceKDLoss(0.0)
    f = SequenceKDLoss(0)
    logits, targets = torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[B, L, V\]"):
        f(logits[0], targets)
    with pytest.raises(ValueError, match="match logits"):
        f(logits, targets[:, :2])
    with pytest.raises(ValueError, match="integer"):
        f(logits, targets.float())
    with pytest.raises(ValueError, match="outside"):
        f(logits, targets * 5)
    with pytest.raises(ValueError, match="bool"):
        f(logits, targets, torch.tensor([1, 0]))


# ----------------------------------------------------------------------------- precision under bf16 autocast


def _lwf_kl():
    from pipeline.continual.regularizers import softened_kl

    return lambda s, t: softened_kl(s, t, 2.0)


def _precision_cases():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    labels = torch.randint(0, 6, (32,), generator=g)
    rehearsal = torch.arange(32) % 3 == 0
    logits, targets = torch.randn(8, 7, 30, generator=g) * 5, torch.randint(3, 30, (8, 7), generator=g)
    intent_s, intent_t = torch.randn(16, 6, generator=g) * 3, torch.randn(16, 6, generator=g) * 3
    return {
        "nspt": (RehearsalContrastiveLoss("nspt", 0.1), (student, teacher, labels, rehearsal)),
        "supcon": (RehearsalContrastiveLoss("supcon", 0.1), (student, None, labels, rehearsal)),
        "ntpt": (RehearsalContrastiveLoss("ntpt", 0.1), (student, teacher, labels, rehearsal)),
        "mm": (MultimodalInfoNCELoss(0.1), (student, teacher, ~rehearsal, labels)),
        "skd": (SequenceKDLoss(0), (logits, targets)),
        "lwf": (_lwf_kl(), (intent_s, intent_t)),
    }


@pytest.mark.parametrize("name", ["nspt", "supcon", "ntpt", "mm", "skd", "lwf"])
@pytest.mark.parametrize("inputs", ["float32", "bfloat16"])
def test_losses_compute_in_float32_inside_bf16_autocast(name, inputs):
    """On CUDA the forward runs in bf16 autocast; a loss called there (CPU autocast here: same rule) must give
    its float32 value as a float32 tensor, for float32 inputs and for bf16 ones (then: of their float32 copy,
    also outside autocast)."""
    loss, args = _precision_cases()[name]
    if inputs == "bfloat16":
        args = tuple(a.bfloat16() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
    want = loss(*(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(*args)
    assert want.dtype == torch.float32 and got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    plain = loss(*args)  # bf16 inputs outside autocast: upcast too
    assert plain.dtype == torch.float32 and plain.item() == pytest.approx(want.item(), rel=1e-6)


def test_float64_inputs_stay_float64_inside_autocast():
    student, teacher, labels, anchors = _random_batch(0)
    f = RehearsalContrastiveLoss("nspt", 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = f(student, teacher, labels, anchors)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(f(student, teacher, labels, anchors).item(), rel=1e-12)
