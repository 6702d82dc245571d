"""What both CWCL tasks share: the trainable side with its temperature, the training steps, the scores.

A task (speech or image) gives datasets whose items are dicts with the model's inputs, ``"y"`` (the class)
and ``"q"`` (the frozen tower's embedding of the sample's pair: transcript, image, ...), and a model whose
``forward(batch)`` returns the trainable side's embedding ``p`` [B, D] in the frozen tower's space (or
class logits for the supervised bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses.cwcl import ContrastiveLoss, CWCLLoss

#: CLIP's cap on the learnable logit scale (1 / tau <= 100): beyond it training becomes unstable
MAX_SCALE = 100.0


class LogitScale(nn.Module):
    """1 / tau: a fixed buffer, or a learnable ``log(1/tau)`` (Radford et al. 2021) whose exp is capped at 100
    (the cap applies to learning only: a fixed tau below 0.01 is used as given)."""

    def __init__(self, tau: float, learn: bool):
        super().__init__()
        value = torch.tensor(math.log(1.0 / tau))
        self.learn = learn
        if learn:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> torch.Tensor:
        scale = self.log_scale.exp()
        return scale.clamp(max=MAX_SCALE) if self.learn else scale


class Aligned(nn.Module):
    """The trainable encoder and its logit scale (one module, so both are optimised and checkpointed)."""

    def __init__(self, encoder: nn.Module, tau: float, learn: bool):
        super().__init__()
        self.encoder = encoder
        self.scale = LogitScale(tau, learn)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encoder(batch)


def make_loss(name: str, tau: float) -> nn.Module:
    """``cl``: symmetric one-hot InfoNCE against the locked tower (LiT); ``cwcl``: CWCL trainable -> frozen
    plus one-hot frozen -> trainable. Same temperature handling and scale, so they differ only in W."""
    return {"cl": ContrastiveLoss, "cwcl": CWCLLoss}[name](temperature=tau)


def contrastive_step(loss: nn.Module):
    def step(model: Aligned, batch: dict) -> dict[str, torch.Tensor]:
        p = model(batch)  # [B, D] in the frozen space
        scale = model.scale()
        return {"loss": loss(p, batch["q"], scale=scale), "tau": 1.0 / scale.detach()}

    return step


def supervised_step(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    return {"loss": F.cross_entropy(model(batch).float(), batch["y"])}


@dataclass
class ScoreSet:
    """One evaluation: scores [N, C] of every sample against every class, labels [N], sample embeddings
    [N, D] (for maps), the class names and the held-out class ids."""

    scores: torch.Tensor
    labels: torch.Tensor
    emb: torch.Tensor
    classes: list[str]
    unseen: list[int]
    protos: torch.Tensor | None = None  # [C, D] the class prototypes, when they come from the trained side


@torch.no_grad()
def cosine_or_logits(model: Aligned, loader, prototypes: torch.Tensor, supervised: bool, classes: list[str],
                     unseen: list[int]) -> ScoreSet:
    """Samples encoded by the trainable side (``model.encoder.pooled`` then ``.head``): cosine to the frozen
    class ``prototypes`` [C, D], or, for the supervised bound, the classifier's logits (embedding: the pooled
    states)."""
    from pipeline.cwcl.zeroshot import cosine_scores

    scores, embs, labels = [], [], []
    for batch in loader:
        pooled = model.encoder.pooled(batch)
        out = model.encoder.head(pooled).float()
        emb = pooled.float() if supervised else out
        scores.append((out if supervised else cosine_scores(out, prototypes.to(out.device))).cpu())
        embs.append(F.normalize(emb, dim=1).cpu())
        labels.append(batch["y"].cpu())
    return ScoreSet(torch.cat(scores), torch.cat(labels), torch.cat(embs), classes, unseen)
