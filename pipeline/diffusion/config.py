"""The diffusion generator's settings: the UNet's shape, the noise schedule, CFG, EMA and sampling.

Dataclasses only (parsed strictly by :func:`pipeline.core.params.from_dict`, whose ``validate(key)`` gives a
one-line :class:`~pipeline.errors.ParamsError` naming the dotted key). The params section ``diffusion``
(:mod:`pipeline.diffusion.params`) holds one as its ``model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.core.params import require


@dataclass
class UNetConfig:
    """A class-conditional ``diffusers.UNet2DModel``: one level per entry of ``channels``, self-attention at the
    lowest level only. Every level but the last halves the image, so ``image_size`` must be divisible by
    ``2 ** (len(channels) - 1)`` (otherwise the skip connections do not line up)."""

    image_size: int = 32
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    norm_groups: int = 16  # GroupNorm groups: must divide every entry of channels
    attention_head_dim: int = 8  # channels per attention head at the lowest level

    @property
    def downsamples(self) -> int:
        return len(self.channels) - 1

    def validate(self, key: str) -> None:
        require(len(self.channels) >= 1, f"{key}.channels", "list at least one level")
        require(all(c > 0 for c in self.channels), f"{key}.channels", f"{self.channels}: every entry must be > 0")
        factor = 2 ** self.downsamples
        require(self.image_size > 0 and self.image_size % factor == 0, f"{key}.image_size",
                f"{self.image_size}: must be a positive multiple of {factor} "
                f"(2 ** (len(channels) - 1): the UNet halves the image {self.downsamples} times)")
        require(self.layers_per_block >= 1, f"{key}.layers_per_block", "must be >= 1")
        require(self.norm_groups >= 1 and all(c % self.norm_groups == 0 for c in self.channels),
                f"{key}.norm_groups", f"{self.norm_groups}: must divide every entry of channels {self.channels}")
        require(self.attention_head_dim >= 1 and self.channels[-1] % self.attention_head_dim == 0,
                f"{key}.attention_head_dim", f"{self.attention_head_dim}: must divide the lowest level's "
                f"channels ({self.channels[-1]})")


@dataclass
class DiffusionConfig:
    """Training (DDPM noise schedule, label dropout for classifier-free guidance, EMA) and sampling (DDIM)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    label_dropout: float = 0.1  # share of training labels replaced by the null class (CFG)
    train_timesteps: int = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    prediction_type: Literal["epsilon"] = "epsilon"  # the UNet predicts the noise
    ema_decay: float = 0.999  # 0: the EMA weights are the latest weights
    sampling_steps: int = 50  # DDIM steps (eta 0) for sampling, SDEdit, inversion and regeneration
    guidance: float = 2.0  # CFG scale w when sampling per class: eps_null + w (eps_y - eps_null)
    clip_sample: bool = True  # DDIM clips its x0 prediction to [-1, 1]

    def validate(self, key: str) -> None:
        self.unet.validate(f"{key}.unet")
        require(0.0 <= self.label_dropout < 1.0, f"{key}.label_dropout",
                f"{self.label_dropout}: must be a fraction in [0, 1)")
        require(self.train_timesteps >= 2, f"{key}.train_timesteps", "must be >= 2")
        require(self.beta_schedule in ("squaredcos_cap_v2", "linear"), f"{key}.beta_schedule",
                f"{self.beta_schedule!r}: one of 'squaredcos_cap_v2', 'linear'")
        require(self.prediction_type == "epsilon", f"{key}.prediction_type", "only 'epsilon' is supported")
        require(0.0 <= self.ema_decay < 1.0, f"{key}.ema_decay", f"{self.ema_decay}: must be in [0, 1)")
        check_steps(self.sampling_steps, self.train_timesteps, f"{key}.sampling_steps")
        require(self.guidance >= 0.0, f"{key}.guidance", f"{self.guidance}: must be >= 0 (1: conditional only)")


def check_steps(steps: int, train_timesteps: int, key: str) -> None:
    require(1 <= steps <= train_timesteps, key, f"{steps}: must be in [1, train_timesteps={train_timesteps}]")


def check_strength(strength: float, key: str) -> None:
    """An SDEdit strength (share of the DDIM steps re-run: 0 keeps the image, 1 starts from pure noise)."""
    require(0.0 <= strength <= 1.0, key, f"{strength}: an SDEdit strength must be in [0, 1]")
