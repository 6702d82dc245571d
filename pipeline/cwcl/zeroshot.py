"""Zero-shot classification by nearest class description, and its metrics.

Every evaluation reduces to a score matrix ``scores [N, C]`` (samples x classes: cosine similarities to the
class prototypes for CL/CWCL, logits for the supervised bound), the true labels ``[N]`` and the set of
held-out ("unseen") classes. The metrics (Xian et al., "Zero-shot learning: the good, the bad and the ugly",
TPAMI 2018, for the generalised setting):

- ``unseen``: held-out samples classified among the held-out classes only (classic zero-shot);
- ``seen``: training-class samples among the training classes only;
- ``gzsl_unseen`` / ``gzsl_seen``: the same samples classified among ALL classes (generalised zero-shot),
  and ``harmonic`` = 2 u s / (u + s) of the two;
- ``all``: every sample among all classes; and the chance level of each.

Accuracies are per-sample means (not per-class means: our test splits are close to class-balanced, and the
per-class accuracies are reported separately). A metric whose sample set is empty is absent, never 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_scores(samples: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[N, D] samples and [C, D] class prototypes -> [N, C] cosine similarities (float32)."""
    return F.normalize(samples.float(), dim=1) @ F.normalize(prototypes.float(), dim=1).T


def _accuracy(scores: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, classes: list[int]) -> float | None:
    """Accuracy of the samples ``rows`` (bool [N]) when only ``classes`` may be predicted."""
    if not bool(rows.any()) or not classes:
        return None
    cols = torch.tensor(classes, dtype=torch.long)
    pred = cols[scores[rows][:, cols].argmax(dim=1)]  # [n] class ids
    return float((pred == labels[rows]).float().mean())


def zero_shot_metrics(scores: torch.Tensor, labels: torch.Tensor, unseen: list[int]) -> dict[str, float]:
    """See the module docstring. ``scores`` [N, C], ``labels`` [N] int in [0, C), ``unseen`` class ids."""
    n_classes = scores.shape[1]
    if scores.dim() != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if any(not 0 <= u < n_classes for u in unseen):
        raise ValueError(f"unseen class ids must be in [0, {n_classes}), got {unseen}")
    labels = labels.long().cpu()
    scores = scores.float().cpu()
    unseen = sorted(set(unseen))
    seen = [c for c in range(n_classes) if c not in set(unseen)]
    is_unseen = torch.isin(labels, torch.tensor(unseen, dtype=torch.long))
    everything = list(range(n_classes))
    found = {
        "unseen": _accuracy(scores, labels, is_unseen, unseen),
        "seen": _accuracy(scores, labels, ~is_unseen, seen),
        "gzsl_unseen": _accuracy(scores, labels, is_unseen, everything),
        "gzsl_seen": _accuracy(scores, labels, ~is_unseen, everything),
        "all": _accuracy(scores, labels, torch.ones_like(is_unseen), everything),
    }
    u, s = found["gzsl_unseen"], found["gzsl_seen"]
    if u is not None and s is not None:
        found["harmonic"] = 2 * u * s / (u + s) if u + s > 0 else 0.0
    out = {k: v for k, v in found.items() if v is not None}
    out["chance_all"] = 1.0 / n_classes
    if unseen:
        out["chance_unseen"] = 1.0 / len(unseen)
    if seen:
        out["chance_seen"] = 1.0 / len(seen)
    return out


def per_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, unseen: list[int]) -> list[float | None]:
    """Accuracy of each class's samples: held-out classes among the held-out classes, training classes among
    the training classes (the ``unseen`` / ``seen`` protocol, class by class); None for a class without samples."""
    labels, scores = labels.long().cpu(), scores.float().cpu()
    unseen_set = set(unseen)
    groups = {True: sorted(unseen_set), False: [c for c in range(scores.shape[1]) if c not in unseen_set]}
    return [_accuracy(scores, labels, labels == c, groups[c in unseen_set]) for c in range(scores.shape[1])]
