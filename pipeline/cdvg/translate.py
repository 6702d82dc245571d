"""Bias translation with the class-conditional generator, and the oracle rates that check CDvG's premise.

CDvG's premise (reference §6): a translation model trained on biased data with class labels only learns to
move the easy bias attribute (colour) while the content (the digit) survives. Translating an image x of class
y towards another class y' therefore should give an image whose content is still y and whose colour is y''s
dominant colour. Two recipes (:class:`~pipeline.cdvg.params.Recipe`):

* ``sdedit``: noise x to ``strength`` of the DDIM schedule, denoise under y' with classifier-free guidance w;
* ``inversion``: DDIM inversion of x under y up to ``strength`` (deterministic: the latent encodes x's layout),
  then regeneration under y' with guidance w over the same steps.

:func:`rates` measures what a translation did with the two oracles (:mod:`pipeline.cdvg.oracles`):
``content_kept`` (the content oracle still names y), ``content_to_target`` (it names y'), ``bias_to_target``
(the bias oracle names y''s dominant colour), ``bias_kept`` (it names the colour it named for x) and ``both``
(content kept AND colour moved: the view CDvG wants).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.cdvg.oracles import judge
from pipeline.core.trainer import derive_seed


def targets(labels: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    """int64 [N]: for each label y a class y' != y, uniform over the other n_classes - 1 (seeded)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "cdvg-targets"))
    shift = 1 + torch.randint(0, n_classes - 1, labels.shape, generator=gen)
    return (labels.long() + shift) % n_classes


@torch.no_grad()
def translate(generator, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor, recipe, steps: int,
              batch_size: int, seed: int, progress=None) -> torch.Tensor:
    """``x`` [N, 3, S, S] in [-1, 1] of classes ``labels`` translated to ``target`` by ``recipe``; batch b's
    SDEdit noise comes from (seed, b), so the result depends on the params only."""
    out = []
    device = generator.device
    for b, start in enumerate(range(0, len(x), batch_size)):
        sl = slice(start, start + batch_size)
        xb, yb, tb = x[sl].to(device), labels[sl].to(device), target[sl].to(device)
        if recipe.method == "sdedit":
            gen = torch.Generator().manual_seed(derive_seed(seed, "cdvg-sdedit", b))
            noise = torch.randn(xb.shape, generator=gen).to(device)
            v = generator.sdedit(xb, recipe.strength, tb, steps=steps, guidance=recipe.guidance, noise=noise)
        else:
            latent = generator.invert(xb, yb, steps=steps, strength=recipe.strength)
            v = generator.regenerate(latent, tb, steps=steps, guidance=recipe.guidance, strength=recipe.strength)
        out.append(v.clamp(-1, 1).cpu())
        if progress is not None:
            progress.update(len(xb))
    return torch.cat(out) if out else x.clone()


def rates(oracles: dict, original: torch.Tensor, translated: torch.Tensor, labels: torch.Tensor,
          target: torch.Tensor, dominant: torch.Tensor) -> dict[str, float]:
    """What a translation did, by the oracles (module docstring); ``dominant`` int64 [K] is each class's
    dominant colour index."""
    content = judge(oracles["content"], "content", translated)
    colour = judge(oracles["bias"], "bias", translated)
    colour_before = judge(oracles["bias"], "bias", original)
    kept = content == labels
    moved = colour == dominant[target]
    share = lambda m: float(m.double().mean()) if m.numel() else float("nan")  # noqa: E731
    return {"content_kept": share(kept), "content_to_target": share(content == target),
            "bias_to_target": share(moved), "bias_kept": share(colour == colour_before), "both": share(kept & moved)}


def sample_rates(oracles: dict, samples: torch.Tensor, labels: torch.Tensor, dominant: torch.Tensor) -> dict:
    """Class-conditional samples judged: the share whose content is their class, and whose colour is their
    class's dominant colour (what the generator tied to the label)."""
    content = judge(oracles["content"], "content", samples)
    colour = judge(oracles["bias"], "bias", samples)
    return {"content_consistency": float((content == labels).double().mean()),
            "bias_dominant": float((colour == dominant[labels]).double().mean())}


def pair_grid(original: np.ndarray, views: np.ndarray, labels: np.ndarray, n_classes: int,
              per_class: int = 4) -> np.ndarray:
    """uint8 tiles [n_classes * 2 rows x per_class]: per source class, its first ``per_class`` training images
    and, below them, their translations (blank tiles where a class has fewer)."""
    rows = []
    for k in range(n_classes):
        idx = np.flatnonzero(labels == k)[:per_class]
        blank = np.zeros((per_class - len(idx), *original.shape[1:]), dtype=np.uint8)
        rows += [np.concatenate([original[idx], blank]), np.concatenate([views[idx], blank])]
    return np.concatenate(rows)
