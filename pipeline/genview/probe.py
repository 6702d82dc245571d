"""Frozen-encoder evaluation: a linear probe per attribute, selected on VALID, and k-NN accuracy.

* :func:`encode`: the pooled encoder features of un-augmented images (eval mode, no gradient).
* :func:`linear_probe`: logistic regression (an ``nn.Linear`` on features standardised with the training
  features' mean and std, zero-initialised, Adam, full passes in a seeded order) for each (lr, weight_decay)
  of the grid; the one with the best VALID accuracy is kept (a tie keeps the earlier in grid order), and only
  that one is scored on the test split. Deterministic: no draw but the seeded shuffling.
* :func:`knn_accuracy`: cosine similarity of L2-normalised features, the k most similar training images vote
  with weight ``exp(sim / T)`` (InstDisc, Wu et al. 2018; DINO's k-NN), the class with the largest vote wins
  (a tie: the lower index).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from pipeline.genview.objective import to_unit


@torch.no_grad()
def encode(model, images: torch.Tensor, batch_size: int = 512, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, D] pooled encoder features (CPU), model in eval mode."""
    model.eval()
    device = device or next(model.parameters()).device
    out = [model.features(to_unit(images[i : i + batch_size]).to(device)).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, getattr(model, "dim", 0))


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean()) if len(labels) else float("nan")


def fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, lr: float, weight_decay: float, epochs: int,
               batch_size: int, seed: int = 0) -> torch.nn.Linear:
    """Logistic regression on (already standardised) features: zero init, Adam with L2 ``weight_decay``,
    ``epochs`` passes in an order drawn from a generator seeded by ``seed``."""
    head = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), batch_size):
                idx = order[i : i + batch_size]
                loss = F.cross_entropy(head(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return head


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], n_classes: int, lrs: Sequence[float],
                 weight_decays: Sequence[float], epochs: int, batch_size: int, seed: int = 0) -> dict:
    """Fit every (lr, weight_decay), keep the best on VALID, score it on test once.

    ``train``/``valid``/``test``: (features [N, D] float, labels [N] int64). Returns {valid, test, lr,
    weight_decay, grid: [{lr, weight_decay, valid}]} (accuracies in [0, 1]); the test split is read only for
    the kept probe."""
    x_tr, y_tr = train
    mean, std = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True).clamp_min(1e-6)

    def norm(x):
        return (x.float() - mean) / std

    x_tr, x_va = norm(x_tr), norm(valid[0])
    best, grid = None, []
    for lr in lrs:
        for wd in weight_decays:
            head = fit_linear(x_tr, y_tr, n_classes, lr, wd, epochs, batch_size, seed)
            with torch.no_grad():
                acc = _accuracy(head(x_va), valid[1])
            grid.append({"lr": lr, "weight_decay": wd, "valid": acc})
            if best is None or acc > best[0]:
                best = (acc, lr, wd, head)
    acc, lr, wd, head = best
    with torch.no_grad():
        test_acc = _accuracy(head(norm(test[0])), test[1])
    return {"valid": acc, "test": test_acc, "lr": lr, "weight_decay": wd, "grid": grid}


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, n_classes: int, k: int,
                temperature: float, chunk: int = 512) -> torch.Tensor:
    """The weighted k-NN vote's class of each query ([M] int64)."""
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    out = []
    for i in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[i : i + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], n_classes, dtype=torch.float64)
        votes.scatter_add_(1, bank_labels[idx], torch.exp(sim.double() / temperature))
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, labels: torch.Tensor,
                 n_classes: int, k: int, temperature: float) -> float:
    pred = knn_predict(bank, bank_labels, queries, n_classes, k, temperature)
    return float((pred == labels).double().mean()) if len(labels) else float("nan")
