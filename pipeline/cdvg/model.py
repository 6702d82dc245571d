"""The debiasing runs' networks: two backbones, each with a classifier and a contrastive projection head, and
the model the trainer holds (the debiased net; for LfF also the biased net and its per-sample loss averages).

Inputs: every net takes float ``[B, 3, S, S]`` in [0, 1] (:func:`to_input` of the uint8 ``[B, S, S, 3]`` images
of the sets and views files): no mean/std normalisation, as LfF / DFA feed Colored MNIST.

Backbones (``cdvg.train.backbones``):
    * ``mlp``: LfF / DFA's Colored-MNIST MLP: flatten ``3 S S`` -> hidden widths ``mlp_hidden`` (ReLU each) ->
      features ``[B, mlp_hidden[-1]]``;
    * ``cnn``: three blocks of a 3x3 convolution (BatchNorm, ReLU) at ``w, 2w, 4w`` channels, each followed by
      2x2 max-pooling, then global average pooling -> features ``[B, 4w]``.

Both: ``classifier`` Linear(features -> K); ``head`` Linear-ReLU-Linear(features -> proj_dim), read only by the
contrastive term (ERM and LfF never train it, so all methods share one architecture and one initialisation).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, S, S, 3]`` -> float32 ``[B, 3, S, S]`` in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0


class Net(nn.Module):
    """A backbone (``body``: float ``[B, 3, S, S]`` -> ``[B, dim]``), its classifier and projection head."""

    def __init__(self, body: nn.Module, dim: int, n_classes: int, proj_dim: int):
        super().__init__()
        self.body, self.dim = body, dim
        self.classifier = nn.Linear(dim, n_classes)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class logits ``[B, K]``."""
        return self.classifier(self.body(x))


def mlp_body(image_size: int, hidden: list[int]) -> tuple[nn.Module, int]:
    layers, d_in = [nn.Flatten()], 3 * image_size * image_size  # [B, 3, S, S] -> [B, 3 S S]
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU(inplace=True)]
        d_in = h
    return nn.Sequential(*layers), d_in


class CNNBody(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).mean(dim=(2, 3))  # [B, 4w, S/8, S/8] -> [B, 4w]


def build_net(backbone: str, cfg, image_size: int, n_classes: int) -> Net:
    """A fresh net of ``backbone`` (``cfg``: the ``cdvg.train`` section), initialised from torch's generator."""
    if backbone == "mlp":
        body, dim = mlp_body(image_size, list(cfg.mlp_hidden))
    elif backbone == "cnn":
        if image_size < 8:
            raise ValueError(f"the cnn backbone pools three times: images of at least 8 px, got {image_size}")
        body, dim = CNNBody(cfg.cnn_width), 4 * cfg.cnn_width
    else:
        raise ValueError(f"backbone {backbone!r}: one of mlp, cnn")
    return Net(body, dim, n_classes, cfg.proj_dim)


class Model(nn.Module):
    """What ERM and CDvG train: the ``debiased`` net (the only one, and the one evaluated) and ``steps``, the
    optimiser steps done (a buffer, so it is in the checkpoint)."""

    def __init__(self, debiased: Net):
        super().__init__()
        self.debiased = debiased
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def count_step(self) -> None:
        self.steps += 1


class LfFModel(Model):
    """LfF's pair (``debiased`` and ``biased``) and its per-training-sample state, all buffers so that the
    plain trainer checkpoints them and a killed run resumes with them:

    * ``ema_b``, ``ema_d`` float32 ``[N]``: the moving averages of the biased / debiased net's cross-entropy
      on each training image (LfF's ``EMA.parameter``);
    * ``updated`` float32 ``[N]``: 1 once a sample's averages hold a value (its first loss is taken as is).
    """

    def __init__(self, debiased: Net, biased: Net, n_train: int):
        super().__init__(debiased)
        self.biased = biased
        self.register_buffer("ema_b", torch.zeros(n_train))
        self.register_buffer("ema_d", torch.zeros(n_train))
        self.register_buffer("updated", torch.zeros(n_train))


def debiased_of(model: nn.Module) -> Net:
    """The evaluated net of a (possibly wrapped) model."""
    return getattr(model, "module", model).debiased


def make_model(method: str, backbone: str, cfg, image_size: int, n_classes: int, n_train: int,
               init_seed: int, biased_seed: Optional[int] = None) -> Model:
    """The method's model; the debiased net's weights depend on ``init_seed`` alone (the same for every method
    of a seed), the biased net's (lff, cdvg_lff) on ``biased_seed``."""
    torch.manual_seed(init_seed)
    debiased = build_net(backbone, cfg, image_size, n_classes)
    if method not in ("lff", "cdvg_lff"):
        return Model(debiased)
    if biased_seed is None:
        raise ValueError(f"method {method}: the biased net needs its own seed")
    torch.manual_seed(biased_seed)
    return LfFModel(debiased, build_net(backbone, cfg, image_size, n_classes), n_train)
