"""M3Co: the multimodal mixup contrastive loss of M3CoL, with its mixup draws.

References:
    - M3CoL: R. Kumar, R. Singhal, P. Kulkarni, D. Mehta, K. Jadhav, "Harnessing Shared Relations via
      Multimodal Mixup Contrastive Learning for Multimodal Classification" (M3CoL), TMLR 2025,
      arXiv:2409.17777.
    - mixup: H. Zhang, M. Cisse, Y. N. Dauphin, D. Lopez-Paz, "mixup: Beyond Empirical Risk Minimization",
      ICLR 2018 (the Beta(beta, beta) mixing coefficients).

For a part of the batch, M3Co mixes one modality's embedding of sample ``i`` with that of a random partner
``k_i``, ``x~_i = lam_i x_i + (1 - lam_i) x_{k_i}``, and asks the mixed embedding to find, among the OTHER
modality's clean embeddings, sample ``i`` with probability ``lam_i`` and its partner with ``1 - lam_i``: the
mixed sample shares a relation with two samples of the other modality at once, in known proportions. Each
modality is mixed with its own, independent draw and contrasted with the other's clean embeddings.

The pieces: :class:`Mix` (one draw: the partners and the shares), :func:`draw_mix`, :func:`mix` (applies a
draw, out of place), :func:`mix_targets` (the soft targets of a draw), :func:`m3co_term` (one modality's term,
both directions) and :class:`M3CoLoss` (both modalities, summed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_embeddings, check_same_shape, check_temperature
from pipeline.losses._precision import float32_loss


@dataclass(frozen=True, eq=False)
class Mix:
    """One mixup draw for a batch of ``B`` samples.

    Attributes:
        perm: int64 ``[B]``, a permutation of ``0..B-1``: sample i's partner is ``perm[i]``. Fixed points
            (``perm[i] == i``) are allowed: such a sample is "mixed" with itself, i.e. left as it is.
        lam: float ``[B]`` in [0, 1]: sample i's own share; exactly 1.0 for the samples not mixed.

    ``eq=False``: two draws compare by identity (a generated ``==`` over tensors would be ambiguous). The
    values are checked when a draw is built (on CUDA tensors that is one device synchronisation).

    Raises:
        ValueError: ``perm`` not a 1-D integer tensor holding a permutation of ``0..B-1``; ``lam`` not a
            floating-point tensor of the same length and device with values in [0, 1].
    """

    perm: torch.Tensor
    lam: torch.Tensor

    def __post_init__(self) -> None:
        perm, lam = self.perm, self.lam
        if not isinstance(perm, torch.Tensor) or perm.dim() != 1:
            shape = tuple(perm.shape) if isinstance(perm, torch.Tensor) else type(perm).__name__
            raise ValueError(f"Mix.perm must be a 1-D tensor [B] (each sample's partner), got {shape}")
        if perm.is_floating_point() or perm.is_complex() or perm.dtype == torch.bool:
            raise ValueError(f"Mix.perm must be an integer tensor (e.g. torch.long), got dtype {perm.dtype}")
        if not isinstance(lam, torch.Tensor) or lam.dim() != 1 or lam.shape[0] != perm.shape[0]:
            shape = tuple(lam.shape) if isinstance(lam, torch.Tensor) else type(lam).__name__
            raise ValueError(f"Mix.lam must be a 1-D tensor of length {perm.shape[0]} (as Mix.perm), got {shape}")
        if not lam.is_floating_point():
            raise ValueError(f"Mix.lam must be a floating-point tensor, got dtype {lam.dtype}")
        if lam.device != perm.device:
            raise ValueError(f"Mix.perm ({perm.device}) and Mix.lam ({lam.device}) must be on the same device")
        batch = perm.shape[0]
        is_perm = torch.equal(torch.sort(perm).values, torch.arange(batch, dtype=perm.dtype, device=perm.device))
        if not is_perm:
            raise ValueError(
                f"Mix.perm must be a permutation of 0..{batch - 1} (e.g. torch.randperm({batch})), "
                f"got {perm.tolist() if batch <= 16 else 'a tensor with repeated or out-of-range entries'}"
            )
        if not bool(((lam >= 0) & (lam <= 1)).all()):  # also False for NaN
            raise ValueError("Mix.lam must hold shares in [0, 1] (1.0 for samples not mixed)")

    @property
    def batch(self) -> int:
        """``B``, the number of samples the draw is for."""
        return int(self.perm.shape[0])


def _check_mix(name: str, m: Mix, batch: int) -> None:
    """``m`` must be a :class:`Mix` for ``batch`` samples (its values are checked when it is built)."""
    if not isinstance(m, Mix):
        raise ValueError(f"{name} must be a Mix (see draw_mix), got {type(m).__name__}")
    if m.batch != batch:
        raise ValueError(
            f"{name}.perm must be a 1-D tensor of length {batch} (one per sample), got {tuple(m.perm.shape)}"
        )


def _check_mix_params(beta: float, fraction: float) -> tuple[float, float]:
    """``beta`` must be a finite number > 0 and ``fraction`` a number in [0, 1]; returns them as floats."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (0 < beta < math.inf):
        raise ValueError(f"beta must be a finite number > 0 (the Beta(beta, beta) concentration), got {beta!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (0 <= fraction <= 1):
        raise ValueError(f"fraction must be a number in [0, 1] (the share of samples mixed), got {fraction!r}")
    return float(beta), float(fraction)


def draw_mix(
    batch: int,
    beta: float,
    fraction: float,
    *,
    device=None,
    generator: Optional[torch.Generator] = None,
) -> Mix:
    """Draw a :class:`Mix` for ``batch`` samples: random partners, Beta shares for a random subset.

    ``perm = randperm(batch)`` (fixed points allowed); ``lam_i ~ Beta(beta, beta)`` independently per sample;
    a Bernoulli(``fraction``) mask picks the samples that are mixed, the others get ``lam_i = 1`` exactly.
    ``fraction = 0`` mixes none (every ``lam`` is 1), ``fraction = 1`` all of them.

    The three draws come, in this order (perm, lam, mask), from ``generator`` when given (on its device; a
    seeded generator gives the same draw every time), else from torch's global RNG on the CPU. The shares are
    drawn and kept in float64: Beta(0.15, 0.15) puts much mass next to 0 and 1 (about 4% of the draws would
    round to exactly 1.0 in float32), and :func:`mix` / :func:`m3co_term` cast them to the dtype they compute
    in, so the mixture and its targets use the same shares. Both tensors are then moved to ``device``
    (default: where they were drawn).

    Args:
        batch: ``B >= 1``.
        beta: the Beta distribution's two (equal) concentrations, > 0 (M3CoL: 0.15; small values give
            shares close to 0 or 1).
        fraction: the probability that a sample is mixed, in [0, 1] (M3CoL: 0.5).

    Returns:
        A :class:`Mix` with ``perm`` int64 ``[B]`` and ``lam`` float64 ``[B]``.

    Raises:
        ValueError: ``batch < 1``, ``beta <= 0`` (or not finite), ``fraction`` outside [0, 1].
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    beta, fraction = _check_mix_params(beta, fraction)

    where = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(batch, generator=generator, device=where)
    concentration = torch.full((batch, 2), float(beta), dtype=torch.float64, device=where)
    # Beta(beta, beta) as the first coordinate of a Dirichlet(beta, beta): what torch.distributions.Beta does,
    # but this kernel takes a generator.
    shares = torch._sample_dirichlet(concentration, generator=generator)[:, 0].clamp(0.0, 1.0)
    mixed = torch.rand(batch, generator=generator, device=where, dtype=torch.float64) < fraction
    lam = torch.where(mixed, shares, torch.ones_like(shares))
    if device is not None:
        perm, lam = perm.to(device), lam.to(device)
    return Mix(perm=perm, lam=lam)


def mix(x: torch.Tensor, m: Mix) -> torch.Tensor:
    """Apply a draw, out of place: ``lam[:, None] * x + (1 - lam)[:, None] * x[perm]``.

    ``x`` is never modified (a new tensor is returned; gradients flow to ``x`` through both terms). ``lam``
    is cast to ``x``'s dtype and both tensors of ``m`` are moved to ``x``'s device, so the result has the
    dtype and device of ``x``. Rows with ``lam = 1`` come back exactly unchanged (``1 * x + 0 * x``), those
    of a fixed point up to rounding (``lam * x + (1 - lam) * x``).

    Shapes:
        x ``[B, D]`` float, ``m`` a :class:`Mix` for B samples -> ``[B, D]``.

    Raises:
        ValueError: ``x`` not a floating-point 2-D tensor; ``m`` not a Mix for ``B`` samples.
    """
    check_embeddings("x", x)
    _check_mix("m", m, x.shape[0])
    lam = m.lam.to(device=x.device, dtype=x.dtype)[:, None]
    return lam * x + (1.0 - lam) * x[m.perm.to(x.device)]


def mix_targets(m: Mix) -> torch.Tensor:
    """The soft targets of a draw, ``[B, B]``: row i has ``lam_i`` at column i and ``1 - lam_i`` at column
    ``perm_i``, ADDED, so a fixed point (``perm_i == i``) gets a one-hot row, and every row sums to 1.

    Built by accumulating ``index_put_`` on a fresh zeros tensor (dtype and device of ``m.lam``). Decision:
    the two shares are added, not assigned; writing ``1 - lam_i`` over the diagonal (as the reference code
    does) would leave a fixed point's row summing to ``1 - lam_i`` instead of 1.
    Column j sums to ``lam_j + (1 - lam_i)`` for the i with ``perm_i = j``: not 1 in general.
    """
    if not isinstance(m, Mix):
        raise ValueError(f"m must be a Mix (see draw_mix), got {type(m).__name__}")
    lam, perm = m.lam, m.perm.to(m.lam.device)
    rows = torch.arange(m.batch, device=lam.device)
    targets = torch.zeros(m.batch, m.batch, dtype=lam.dtype, device=lam.device)
    targets.index_put_((rows, rows), lam, accumulate=True)
    targets.index_put_((rows, perm), 1.0 - lam, accumulate=True)
    return targets


def _soft_cross_entropy_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_j t_ij log softmax_j(logits_i)``, each target row divided by its sum first.
    A row whose targets sum to 0 contributes 0 (it still counts in the mean)."""
    mass = targets.sum(dim=1, keepdim=True)
    targets = targets / mass.clamp_min(torch.finfo(targets.dtype).tiny)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@float32_loss
def m3co_term(mixed: torch.Tensor, fixed: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""One modality's M3Co term: mixed embeddings of one modality against clean ones of the other.

    With ``u_i`` the L2-normalised rows of ``mixed``, ``v_j`` those of ``fixed`` and
    ``S_ij = u_i . v_j / tau``:

    .. math::

        L_{\to} = -\frac{1}{B} \sum_i \sum_j \frac{T_{ij}}{\sum_k T_{ik}} \log \operatorname{softmax}_j(S_{ij}),
        \qquad
        L_{\leftarrow} = -\frac{1}{B} \sum_j \sum_i \frac{T_{ij}}{\sum_k T_{kj}} \log \operatorname{softmax}_i(S_{ij})

    and the term is ``(L_-> + L_<-) / 2``: the soft cross-entropy of the rows of ``S`` against the rows of
    ``T`` (mixed sample -> which clean samples it contains), and of the rows of ``S^T`` against the rows of
    ``T^T`` (clean sample -> which mixed samples contain it), each averaged over its B rows.

    Decision (documented: the reference code does otherwise): every target row is normalised to sum 1 in
    both directions. The rows of :func:`mix_targets` already sum to 1, but the rows of ``T^T`` (its columns)
    sum to ``lam_j + (1 - lam_i)`` for the i with ``perm_i = j``, anything in [0, 2]. The reference leaves
    them unnormalised, which weighs a clean sample by how much of it the mixed batch happens to hold and
    makes the backward direction not a cross-entropy (with every ``lam = 1`` both versions agree). A row
    with no target mass at all (only possible when some ``lam`` is exactly 0) contributes 0.

    Gradients flow to both ``mixed`` and ``fixed``; ``targets`` are data (no gradient is expected).
    Computes in float32 also inside bf16 autocast (float64 stays float64).

    Shapes:
        mixed ``[B, D]`` float; fixed ``[B, D]`` float; targets ``[B, B]`` float (non-negative) -> scalar.

    Raises:
        ValueError: temperature <= 0 or not finite; ``mixed`` / ``fixed`` not floating-point 2-D tensors of
            the same shape; ``targets`` not a floating-point ``[B, B]`` tensor.
    """
    temperature = check_temperature(temperature)
    check_embeddings("mixed", mixed)
    check_embeddings("fixed", fixed)
    check_same_shape("mixed", mixed, "fixed", fixed)
    batch = mixed.shape[0]
    if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != (batch, batch):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must have shape [B, B] = {(batch, batch)} (see mix_targets), got {shape}")
    if not targets.is_floating_point():
        raise ValueError(f"targets must be a floating-point tensor, got dtype {targets.dtype}")

    dtype = torch.promote_types(mixed.dtype, fixed.dtype)
    u = F.normalize(mixed.to(dtype), dim=1)
    v = F.normalize(fixed.to(dtype), dim=1)
    logits = (u @ v.T) / temperature  # [B, B]: row = mixed i, column = clean j
    targets = targets.to(device=logits.device, dtype=dtype)
    return 0.5 * (_soft_cross_entropy_rows(logits, targets) + _soft_cross_entropy_rows(logits.T, targets.T))


class M3CoLoss(nn.Module):
    r"""The M3Co loss of M3CoL (Kumar, Singhal et al., TMLR 2025): mixup contrast across two modalities.

    ``a`` and ``b`` are the clean embeddings of the two modalities, row i of both from the same sample. ``a``
    is mixed with its draw ``mix_a`` (partners ``k``, shares ``lam``) and contrasted with the clean ``b``;
    ``b`` is mixed with its own, separate draw ``mix_b`` and contrasted with the clean ``a``:

    .. math::

        L = \operatorname{term}(\operatorname{mix}(a; k, \lambda), b, T(k, \lambda))
          + \operatorname{term}(\operatorname{mix}(b; k', \lambda'), a, T(k', \lambda'))

    with :func:`mix`, :func:`mix_targets` ``T`` (``lam_i`` on i, ``1 - lam_i`` on ``k_i``) and
    :func:`m3co_term` (both directions averaged, every target row normalised). With every ``lam = 1`` each
    term is symmetric InfoNCE averaged over its two directions, and ``L`` is the summed symmetric InfoNCE
    (:class:`pipeline.losses.ContrastiveLoss` at the same temperature, up to its detached frozen side).

    Decisions (documented):
        * Neither input is modified: the mixing is out of place, so the "clean" side of each term is the
          caller's unmixed tensor. (The reference code mixes in place, so its second term contrasts against
          an already mixed first modality: the bug this module does not repeat; the tests pin it.)
        * Summed over the two modalities (each term is already the mean of its two directions).
        * The mixing acts on the ``[B, D]`` rows given (embedding-level mixup, in the space the contrast is
          computed in); both sides receive gradients, nothing is detached.
        * Draws not given are taken from torch's global RNG with :func:`draw_mix`, ``mix_a`` first, then
          ``mix_b``; pass draws (e.g. from a seeded generator) for reproducible or shared mixing.

    Degenerate batches: a batch of 1 gives exactly 0 (a single column, ``log softmax = 0``); an empty batch
    the defined zero ``0 * (a.sum() + b.sum())`` without drawing anything.

    Args:
        temperature: tau > 0 (M3CoL: 0.1).
        beta: the Beta(beta, beta) concentration of the shares (M3CoL: 0.15).
        fraction: the probability a sample is mixed (M3CoL: 0.5).

    Shapes:
        a ``[B, D]`` float; b ``[B, D]`` float (same shape); mix_a, mix_b ``None`` or a :class:`Mix` for B
        samples. Returns a scalar tensor (float32 also inside bf16 autocast; float64 inputs give float64).

    Raises:
        ValueError: temperature <= 0, beta <= 0, fraction outside [0, 1]; ``a`` / ``b`` not floating-point
            2-D tensors of the same shape; a draw that is not a :class:`Mix` for B samples.
    """

    def __init__(self, temperature: float = 0.1, beta: float = 0.15, fraction: float = 0.5) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.beta, self.fraction = _check_mix_params(beta, fraction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, beta={self.beta}, fraction={self.fraction}"

    @float32_loss
    def forward(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        mix_a: Optional[Mix] = None,
        mix_b: Optional[Mix] = None,
    ) -> torch.Tensor:
        check_embeddings("a", a)
        check_embeddings("b", b)
        check_same_shape("a", a, "b", b)
        batch = a.shape[0]
        if batch == 0:
            return (a.sum() + b.sum()) * 0.0  # empty batch: a defined zero that keeps the graph
        if mix_a is None:
            mix_a = draw_mix(batch, self.beta, self.fraction, device=a.device)
        if mix_b is None:
            mix_b = draw_mix(batch, self.beta, self.fraction, device=b.device)
        _check_mix("mix_a", mix_a, batch)
        _check_mix("mix_b", mix_b, batch)

        term_a = m3co_term(mix(a, mix_a), b, mix_targets(mix_a), self.temperature)
        term_b = m3co_term(mix(b, mix_b), a, mix_targets(mix_b), self.temperature)
        return term_a + term_b
