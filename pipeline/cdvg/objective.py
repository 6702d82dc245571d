"""What each debiasing method minimises per batch, and the valid accuracy the trainer selects by.

    ========  ====================================================================================
    method    loss of a batch of training rows i (x_i its image, v_i its bias-transformed view)
    ========  ====================================================================================
    erm       CE(f(x_i), y_i)
    lff       GCE_q(f_b(x_i), y_i) + W_i CE(f(x_i), y_i)       (Nam et al. 2020; W below)
    cdvg      CE(f(x_i), y_i) + lam NT-Xent(g(x_i), g(v_i))    [+ CE(f(v_i), y_i) with view_ce]
    cdvg_lff  GCE_q(f_b(x_i), y_i) + W_i CE(f(x_i), y_i) + lam NT-Xent(g(x_i), g(v_i))  [+ W_i CE(f(v_i), y_i)]
    ========  ====================================================================================

``f`` is the debiased net's classifier, ``g`` its projection head, ``f_b`` LfF's biased net. NT-Xent is SimCLR's
(:class:`pipeline.losses.ntxent.NTXentLoss`) over the 2B embeddings of the batch: the positive of x_i is v_i
(and back), the negatives are the other 2B - 2; x and v go through the net in one pass, so BatchNorm sees both.

LfF's weight (its code, ``train.py`` and ``util.EMA``): per training row, ``ema_b`` and ``ema_d`` average the
biased and debiased nets' cross-entropies (``ema <- alpha ema + (1 - alpha) loss``; a row's first loss is taken
as is); each is divided by its CLASS's maximum over all training rows, and ``W = b / (b + d + 1e-8)``: rows the
biased net fails on (bias-conflicting) weigh up to 1, rows it fits weigh ~0. W is a constant of the loss.

A training batch is row positions only (:meth:`TrainRows.dataset`): the step reads the pixels, class labels
and views of those rows; the bias labels are not in :class:`TrainRows` at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from pipeline.cdvg.model import debiased_of, to_input
from pipeline.losses.gce import generalized_cross_entropy
from pipeline.losses.ntxent import NTXentLoss

LFF_METHODS = ("lff", "cdvg_lff")
VIEW_METHODS = ("cdvg", "cdvg_lff")
#: keeps W finite (LfF's constant)
W_EPS = 1e-8


@dataclass
class TrainRows:
    """The training set as the step reads it (CPU tensors, row i of each = training image i)."""

    images: torch.Tensor  # uint8 [N, S, S, 3]
    labels: torch.Tensor  # int64 [N]
    n_classes: int
    views: Optional[torch.Tensor] = None  # uint8 [N, S, S, 3]: the bias-transformed view of image i

    def __len__(self) -> int:
        return self.images.shape[0]

    def dataset(self) -> TensorDataset:
        """The trainer's training dataset: the row positions 0..N-1 (LfF needs each sample's index)."""
        return TensorDataset(torch.arange(len(self), dtype=torch.int64))


# ----------------------------------------------------------------------------- LfF's weights


@torch.no_grad()
def ema_update(ema: torch.Tensor, pos: torch.Tensor, loss: torch.Tensor, alpha: float,
               was_updated: torch.Tensor) -> None:
    """LfF's ``EMA.update`` in place: ``ema[pos] = alpha ema[pos] + (1 - alpha was_updated) loss`` (rows seen for
    the first time, ``was_updated`` 0, take ``loss`` as is since their average is still 0)."""
    ema[pos] = alpha * ema[pos] + (1.0 - alpha * was_updated) * loss


def class_max(ema: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``[K]``: the maximum of ``ema`` over the training rows of each class (0 for a class not yet seen; the
    averages are losses, >= 0)."""
    out = torch.zeros(n_classes, dtype=ema.dtype, device=ema.device)
    return out.scatter_reduce(0, labels, ema, "amax", include_self=True)


def lff_weights(ema_b: torch.Tensor, ema_d: torch.Tensor, pos: torch.Tensor, labels: torch.Tensor,
                n_classes: int) -> torch.Tensor:
    """``[B]``: LfF's relative difficulty ``W = b / (b + d + 1e-8)`` of the rows ``pos``, with ``b`` and ``d`` their
    averaged losses divided by their class's maximum (``labels``: all N training labels). A class maximum of 0
    (every loss exactly 0) divides by the smallest normal float instead of giving NaN."""
    y = labels[pos]
    tiny = torch.finfo(ema_b.dtype).tiny
    b = ema_b[pos] / class_max(ema_b, labels, n_classes)[y].clamp_min(tiny)
    d = ema_d[pos] / class_max(ema_d, labels, n_classes)[y].clamp_min(tiny)
    return b / (b + d + W_EPS)


# ----------------------------------------------------------------------------- the step


class Objective:
    """The trainer's step for one method: ``step(model, (positions,)) -> terms`` (``loss`` is minimised; ``ce``,
    ``contrastive``, ``gce`` and ``w_mean`` (LfF's mean weight) are logged where they exist)."""

    def __init__(self, method: str, cfg, rows: TrainRows):
        if method in VIEW_METHODS and rows.views is None:
            raise ValueError(f"method {method}: the bias-transformed views are missing")
        self.method, self.cfg, self.rows = method, cfg, rows
        self.ntxent = NTXentLoss(cfg.temperature)
        self._on: dict[str, tuple] = {}  # the rows' tensors per device (moved once)

    def data(self, device: torch.device) -> tuple:
        key = str(device)
        if key not in self._on:
            r = self.rows
            self._on[key] = (r.images.to(device), r.labels.to(device), None if r.views is None else r.views.to(device))
        return self._on[key]

    def embed(self, net, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits of x ``[B, K]``, logits of v, projections of x ``[B, P]``, projections of v) in one pass."""
        h = net.features(torch.cat([x, v]))  # [2B, D]
        logits, z = net.classifier(h), net.head(h)
        logits_x, logits_v = logits.chunk(2)  # [2B, K] -> 2 x [B, K]
        z_x, z_v = z.chunk(2)  # [2B, P] -> 2 x [B, P]
        return logits_x, logits_v, z_x, z_v

    def contrastive(self, z_x: torch.Tensor, z_v: torch.Tensor) -> torch.Tensor:
        """NT-Xent of the pairs (x_i, v_i) against the batch's other 2B - 2 embeddings."""
        return self.ntxent(z_x, z_v)

    def lff(self, model, pos: torch.Tensor, y: torch.Tensor, logits_b: torch.Tensor,
            logits_d: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Update the rows' loss averages with this batch's cross-entropies and return their weights ``[B]``."""
        with torch.no_grad():
            loss_b = F.cross_entropy(logits_b.float(), y, reduction="none")  # [B]
            loss_d = F.cross_entropy(logits_d.float(), y, reduction="none")
            was = model.updated[pos].clone()
            ema_update(model.ema_b, pos, loss_b, self.cfg.ema, was)
            ema_update(model.ema_d, pos, loss_d, self.cfg.ema, was)
            model.updated[pos] = 1.0
            return lff_weights(model.ema_b, model.ema_d, pos, labels, self.rows.n_classes)

    def __call__(self, model, batch) -> dict[str, torch.Tensor]:
        (pos,) = batch
        model = getattr(model, "module", model)
        images, labels, views = self.data(pos.device)
        x, y = to_input(images[pos]), labels[pos]
        net, terms = model.debiased, {}
        if self.method in VIEW_METHODS:
            logits, logits_v, z_x, z_v = self.embed(net, x, to_input(views[pos]))
        else:
            logits = net(x)
        ce = F.cross_entropy(logits, y, reduction="none")  # [B]
        if self.method in VIEW_METHODS and self.cfg.view_ce:
            ce = ce + F.cross_entropy(logits_v, y, reduction="none")
        if self.method in LFF_METHODS:
            logits_b = model.biased(x)
            w = self.lff(model, pos, y, logits_b, logits, labels)
            terms["gce"] = generalized_cross_entropy(logits_b, y, self.cfg.gce_q)
            terms["w_mean"] = w.mean()
            ce = w * ce
        terms["ce"] = ce.mean()
        loss = terms["ce"] + terms.get("gce", 0.0)
        if self.method in VIEW_METHODS:
            terms["contrastive"] = self.contrastive(z_x, z_v)
            loss = loss + self.cfg.lam * terms["contrastive"]
        return {"loss": loss, **terms}


# ----------------------------------------------------------------------------- accuracy


@torch.no_grad()
def count_correct(net, images: torch.Tensor, labels: torch.Tensor) -> int:
    return int((net(to_input(images)).argmax(dim=1) == labels).sum())


class ValidAccuracy:
    """The trainer's ``evaluate``: the debiased net's accuracy on the valid split (batches of (images, labels))."""

    def __call__(self, model, loader) -> dict[str, float]:
        net, correct, total = debiased_of(model), 0, 0
        for images, labels in loader:
            correct += count_correct(net, images, labels)
            total += len(labels)
        return {"accuracy": correct / max(total, 1)}


def accuracy(net, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """The fraction of ``images`` (uint8 ``[n, S, S, 3]``) that ``net`` (eval mode) classifies as ``labels``;
    NaN for an empty set."""
    if len(labels) == 0:
        return float("nan")
    net.eval()
    correct = sum(count_correct(net, images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device))
                  for i in range(0, len(labels), batch_size))
    return correct / len(labels)
