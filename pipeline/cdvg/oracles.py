"""The two judges of a bias translation, trained on the held-out UNBIASED oracle split that no debiasing run sees.

* ``content``: names the class from a colour-free image (:func:`greyscale`), so it reads the digit (or shape)
  and not its colour: "is the content still y?".
* ``bias``: names the colour (the bias attribute's index) from the RGB image: "did the colour move to y''s
  dominant colour?".

Both are the diffusion track's independent :class:`~pipeline.diffusion.quality.SmallCNN`, trained by
:func:`~pipeline.diffusion.quality.train_classifier` on images in [-1, 1]. Because the oracle split is unbiased,
neither can answer through the other attribute. Their own accuracy on the clean unbiased test set is stored
beside them (``oracles.json``) and printed beside every rate they give.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.errors import DataError, one_line

KINDS = ("content", "bias")


def greyscale(x: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> the same shape, colour removed: each pixel's brightest channel,
    rescaled so the image's brightest pixel is white (a dark blue digit and a yellow one become the same
    white stroke), repeated over the 3 channels."""
    v = (x + 1.0) / 2.0  # [0, 1]
    m = v.amax(dim=1, keepdim=True)  # [B, 1, H, W]
    peak = m.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    return (2.0 * m / peak - 1.0).expand(-1, 3, -1, -1).contiguous()


def oracle_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    return greyscale(x) if kind == "content" else x


def train_oracle(kind: str, images: torch.Tensor, targets: torch.Tensor, n_classes: int, cfg) -> torch.nn.Module:
    """The ``kind`` oracle trained on ``images`` [N, 3, S, S] in [-1, 1] and ``targets`` (class or colour)."""
    from pipeline.diffusion.quality import train_classifier

    return train_classifier(oracle_input(kind, images), targets, n_classes, epochs=cfg.epochs,
                            batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=cfg.seed)


@torch.no_grad()
def judge(oracle: torch.nn.Module, kind: str, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """int64 [N]: what the ``kind`` oracle names for each image [N, 3, S, S] in [-1, 1]."""
    from pipeline.diffusion.quality import predict

    return predict(oracle, oracle_input(kind, images), batch_size)


def load_oracles(folder: str | Path) -> tuple[dict[str, torch.nn.Module], dict]:
    """({kind: oracle in eval mode}, oracles.json) from the folder ``cdvg-oracles`` wrote."""
    from safetensors.torch import load_file

    from pipeline.diffusion.quality import SmallCNN

    folder = Path(folder)
    meta_path = folder / "oracles.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing; run the cdvg-oracles stage (dvc repro cdvg-oracles)")
    try:
        meta = json.loads(meta_path.read_text())
        oracles = {}
        for kind in KINDS:
            net = SmallCNN(meta[kind]["n_classes"], meta[kind]["width"])
            net.load_state_dict(load_file(str(folder / f"{kind}.safetensors")))
            oracles[kind] = net.eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DataError(f"{folder}: not the oracles cdvg-oracles writes ({one_line(exc)[:200]}); re-run it") from None
    return oracles, meta
