"""Training the class-conditional generator on a prepare-vision corpus, through the plain trainer.

Data: the corpus's training split (images to [-1, 1], resized to ``model.unet.image_size`` when it differs;
labels = the corpus's classes), the first ``n_valid`` valid images for the valid loss. Training goes into
``<out>.run`` (:class:`pipeline.core.trainer.Trainer`: a killed run resumes after its last finished epoch and
ends with the same bytes); the EMA weights are updated after every optimiser step by the trainer's
``after_step`` hook, and live in the model's state_dict (frozen parameters: saved every epoch).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from pipeline.core.checkpoint import json_digest
from pipeline.core.trainer import Trainer, TrainResult, derive_seed
from pipeline.diffusion.generator import Generator
from pipeline.diffusion.params import DiffusionParams
from pipeline.errors import DataError

#: the fixed draws of the valid loss (noise, timesteps, label dropout), the same every epoch
VALID_SEED = 1234


def to_unit(images: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, S, S] in [-1, 1]; resized (bilinear, antialiased) when
    ``size`` differs from H."""
    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if size is not None and (x.shape[-2], x.shape[-1]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1]).clamp(-1.0, 1.0)
    return x.contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3] (clipped, rounded)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _first(n: int, total: int) -> int:
    return total if n == 0 else min(n, total)


def datasets(corpus: dict, params: DiffusionParams) -> tuple[TensorDataset, TensorDataset, list[str], str]:
    """(train, valid, class names, data digest) from ``corpus`` (split -> ImageSet, as the stage reads it):
    tensors in [-1, 1] at the UNet's size, int64 labels."""
    size = params.model.unet.image_size
    train, valid = corpus["train"], corpus["valid"]
    nt, nv = _first(params.n_train, len(train)), _first(params.n_valid, len(valid))
    digest = hashlib.sha256()
    for arr in (train.images[:nt], train.labels[:nt], valid.images[:nv], valid.labels[:nv]):
        digest.update(np.ascontiguousarray(arr).tobytes())
    labels = torch.as_tensor(train.labels[:nt], dtype=torch.long)
    n_classes = len(train.class_names)
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{params.source}: labels outside 0..{n_classes - 1}")
    return (TensorDataset(to_unit(train.images[:nt], size), labels),
            TensorDataset(to_unit(valid.images[:nv], size), torch.as_tensor(valid.labels[:nv], dtype=torch.long)),
            list(train.class_names), digest.hexdigest()[:16])


def training_step(model: Generator, batch) -> dict[str, torch.Tensor]:
    """The DDPM epsilon loss (draws from torch's global generator, which the trainer seeds and checkpoints)."""
    x0, labels = batch
    return {"loss": model.training_loss(x0, labels)}


def evaluate(model: Generator, loader) -> dict[str, float]:
    """The valid loss under fixed draws (comparable across epochs) and the optimiser step count (selection:
    the latest weights)."""
    gen = torch.Generator().manual_seed(VALID_SEED)
    total, count = 0.0, 0
    for x0, labels in loader:
        total += float(model.training_loss(x0, labels, generator=gen)) * len(labels)
        count += len(labels)
    return {"loss": total / max(count, 1), "steps": float(model.ema_updates)}


def build(params: DiffusionParams, n_classes: int) -> Generator:
    """The generator with its initial weights from ``params.seed``."""
    return Generator(params.model, n_classes, seed=derive_seed(params.seed, "diffusion-init"), key="diffusion.model")


def fingerprint(params: DiffusionParams, data_digest: str, n_classes: int) -> str:
    return json_digest({"model": asdict(params.model), "source": params.source, "n_classes": n_classes,
                        "init": params.seed, "data": data_digest})


def fit(generator: Generator, params: DiffusionParams, train: TensorDataset, valid: TensorDataset, run: Path,
        fp: str, label: str = "diffusion") -> tuple[TrainResult, Trainer]:
    """Train (or resume, or find finished) into ``run``; the generator ends with the last weights and EMA."""
    trainer = Trainer(params.train, generator, training_step, evaluate, out=run, fingerprint=fp, seed=params.seed,
                      key="diffusion.train", label=label, after_step=generator.update_ema)
    return trainer.fit(train, valid), trainer
