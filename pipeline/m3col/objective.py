"""What a variant minimises, epoch by epoch, and how a model is scored.

Every fusion variant but ``concat`` trains the fusion head and both unimodal heads by cross-entropy; the
contrastive variants add ``weight`` x a contrastive term on the two modalities' embeddings:

    ============  =======================================================  ===========
    variant       loss                                                     phase
    ============  =======================================================  ===========
    <modality>    CE(its head)                                             none
    concat        CE(fusion)                       (UniConcat)             none
    aux           CE(fusion) + CE(a) + CE(b)                               none
    clip          aux + weight x InfoNCE(z_a, z_b)  (both directions)       infonce
    m3co          aux + weight x M3Co(z_a, z_b)     every epoch            m3co
    m3col         aux + weight x M3Co for the first round(m3co_share x      m3co, then
                  epochs) epochs, then SoftCLIP     (the paper's method)   softclip
    ============  =======================================================  ===========

The phase depends on the epoch alone (:func:`phase`), set by the trainer's ``on_epoch`` hook, so a resumed
run switches at the same epoch. M3Co's draws (partners, lambdas, which samples mix) come from torch's global
generator, which the trainer seeds and checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.losses.m3co import M3CoLoss
from pipeline.losses.multimodal import MultimodalInfoNCELoss
from pipeline.losses.softclip import SoftCLIPLoss
from pipeline.m3col.params import LossConfig

CONTRASTIVE = {"clip": "infonce", "m3co": "m3co", "m3col": "m3co"}


def phase(variant: str, epoch: int, cfg: LossConfig, epochs: int) -> str:
    """The contrastive term used in (1-based) ``epoch``: none, infonce, m3co or softclip."""
    if variant not in CONTRASTIVE:
        return "none"
    if variant == "m3col" and epoch > cfg.m3co_epochs(epochs):
        return "softclip"
    return CONTRASTIVE[variant]


def switch_epoch(variant: str, cfg: LossConfig, epochs: int) -> int | None:
    """The first epoch trained with SoftCLIP (m3col), else None."""
    if variant != "m3col":
        return None
    first = cfg.m3co_epochs(epochs) + 1
    return first if first <= epochs else None


class Objective:
    """The training step of one variant (``step(model, batch) -> terms``, terms["loss"] is minimised)."""

    def __init__(self, variant: str, cfg: LossConfig, epochs: int):
        self.variant, self.cfg, self.epochs = variant, cfg, epochs
        # clip: InfoNCE with BOTH encoders trained (ContrastiveLoss, CWCL's locked-tower loss, detaches its
        # second side), summed over the two directions (twice the averaged one): M3Co's scale at lambda = 1
        infonce = MultimodalInfoNCELoss(temperature=cfg.tau)
        self.losses = {"infonce": lambda a, b: 2 * infonce(a, b),
                       "m3co": M3CoLoss(temperature=cfg.tau, beta=cfg.beta, fraction=cfg.mix_fraction),
                       "softclip": SoftCLIPLoss(temperature=cfg.soft_tau)}
        self.phase = phase(variant, 1, cfg, epochs)

    def set_epoch(self, epoch: int) -> None:
        self.phase = phase(self.variant, epoch, self.cfg, self.epochs)

    def __call__(self, model, batch: dict) -> dict[str, torch.Tensor]:
        out = model(batch)
        y = batch["y"]
        terms = {f"ce_{name}": F.cross_entropy(logits.float(), y) for name, logits in out["logits"].items()}
        loss = sum(terms.values())
        if self.phase != "none":
            a, b = (out["z"][m].float() for m in model_modalities(model))
            terms["contrastive"] = self.losses[self.phase](a, b)
            loss = loss + self.cfg.weight * terms["contrastive"]
        return {"loss": loss, **terms}


def model_modalities(model) -> tuple[str, str]:
    inner = getattr(model, "module", model)  # a DDP wrapper holds the model as .module
    return inner.modalities


class Scorer:
    """The trainer's ``evaluate``: accuracy of the inference head (and of each head) on a loader. Records the
    ``split`` and sample ``index`` of everything it read (:attr:`read`), so tests can show that model selection
    sees the valid split only."""

    def __init__(self):
        self.read: list[tuple[str, int]] = []

    def __call__(self, model, loader) -> dict[str, float]:
        logits, labels = predict(model, loader, self.read)
        return {"accuracy": float((logits.argmax(1) == labels).float().mean())}


@torch.no_grad()
def predict(model, loader, read: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The inference head's logits float32 [N, C] (CPU) and labels [N] over ``loader``, in order."""
    inner = getattr(model, "module", model)
    inner.eval()
    out, ys = [], []
    for batch in loader:
        out.append(inner.predict(batch).float().cpu())
        ys.append(batch["y"].cpu())
        if read is not None:
            read.extend((s, int(i)) for s, i in zip(batch["split"], batch["index"].tolist()))
    return torch.cat(out), torch.cat(ys)


def accuracy_report(logits: torch.Tensor, labels: torch.Tensor, n_classes: int, conditions: dict[str, torch.Tensor]):
    """Test metrics: accuracy, macro-F1 (over classes with a test sample), per-class accuracy (None without
    samples) and the accuracy on each named subset (bool masks)."""
    pred = logits.argmax(1)
    right = pred == labels
    per_class, f1s = [], []
    for c in range(n_classes):
        mine, said = labels == c, pred == c
        per_class.append(float(right[mine].float().mean()) if bool(mine.any()) else None)
        if bool(mine.any()):
            tp = float((mine & said).sum())
            precision = tp / float(said.sum()) if bool(said.any()) else 0.0
            recall = tp / float(mine.sum())
            f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    subsets = {name: {"n": int(mask.sum()), "accuracy": float(right[mask].float().mean()) if bool(mask.any()) else None}
               for name, mask in conditions.items()}
    return {"accuracy": float(right.float().mean()), "macro_f1": sum(f1s) / max(len(f1s), 1)}, per_class, subsets
