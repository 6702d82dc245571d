"""A class-conditional diffusion generator on diffusers: a ``UNet2DModel`` with a null class for classifier-free
guidance, trained with the DDPM noise schedule (epsilon target) and sampled with DDIM (eta 0) from EMA weights.

What the later stages use: :meth:`Generator.sample` (per class, with guidance), :meth:`Generator.sdedit`
(partial noising then denoising, one strength per sample allowed), :meth:`Generator.invert` and
:meth:`Generator.regenerate` (DDIM inversion under one label, regeneration under another). Images are
``[B, 3, H, W]`` in [-1, 1]; labels are int64 ``[B]`` in ``0..n_classes-1``; the null class is ``n_classes``.
"""

from __future__ import annotations

import copy
from typing import Optional, Union

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from pipeline.diffusion.config import DiffusionConfig, UNetConfig, check_steps

Labels = Optional[torch.Tensor]


def build_unet(cfg: UNetConfig, n_classes: int, seed: Optional[int] = None) -> UNet2DModel:
    """A class-conditional UNet with ``n_classes + 1`` class embeddings (the last one is the null class),
    self-attention at the lowest level only; its initial weights come from ``seed`` when given."""
    if n_classes < 1:
        raise ValueError(f"build_unet: n_classes must be >= 1, got {n_classes}")
    levels = len(cfg.channels)
    down = ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return UNet2DModel(sample_size=cfg.image_size, in_channels=3, out_channels=3,
                           block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                           down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=cfg.norm_groups,
                           attention_head_dim=cfg.attention_head_dim, num_class_embeds=n_classes + 1)


def _draw(generator: Optional[torch.Generator], device: torch.device, fn, *args, **kwargs) -> torch.Tensor:
    """A random tensor drawn on the generator's device (so a CPU generator gives the same draws whatever the
    model's device), then moved to ``device``."""
    where = generator.device if generator is not None else device
    return fn(*args, generator=generator, device=where, **kwargs).to(device)


class Generator(torch.nn.Module):
    """The UNet being trained (``unet``), its EMA copy used for every sampling method (``ema``), the DDPM
    scheduler of training (``ddpm``) and the DDIM scheduler of sampling (``ddim``). ``state_dict()`` holds
    tensors only (both UNets and the EMA update count), so it saves as safetensors."""

    def __init__(self, cfg: DiffusionConfig, n_classes: int, seed: Optional[int] = None, key: str = "diffusion"):
        super().__init__()
        cfg.validate(key)
        self.cfg, self.n_classes, self.null = cfg, n_classes, n_classes
        self.unet = build_unet(cfg.unet, n_classes, seed)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.int64))
        schedule = dict(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                        prediction_type=cfg.prediction_type)
        self.ddpm = DDPMScheduler(**schedule)
        self.ddim = DDIMScheduler(**schedule, clip_sample=cfg.clip_sample)
        # inversion's counterpart: clipping x0_hat is not invertible (it biases saturated pixels at every step)
        self.ddim_exact = DDIMScheduler(**schedule, clip_sample=False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # ------------------------------------------------------------------------------------------ training

    def drop_labels(self, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``labels`` with each replaced by the null class with probability ``label_dropout`` (one uniform draw
        per label from ``generator``)."""
        drop = _draw(generator, labels.device, torch.rand, labels.shape) < self.cfg.label_dropout
        return torch.where(drop, torch.full_like(labels, self.null), labels)

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The DDPM epsilon loss of a batch: draws, in this order from ``generator``, noise ~ N(0, I) like x0,
        t ~ U{0..T-1} per image, then the label dropout; x_t = add_noise(x0, noise, t);
        MSE(unet(x_t, t, labels).sample, noise)."""
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = _draw(generator, x0.device, torch.randint, 0, self.cfg.train_timesteps, (x0.shape[0],))
        labels = self.drop_labels(labels, generator)
        x_t = self.ddpm.add_noise(x0, noise, t)
        return F.mse_loss(self.unet(x_t, t, class_labels=labels).sample, noise)

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step after an optimiser step: ema <- d ema + (1 - d) unet, with the usual warm-up
        d = min(ema_decay, (1 + n) / (10 + n)) after n updates; buffers are copied."""
        n = int(self.ema_updates)
        decay = min(self.cfg.ema_decay, (1 + n) / (10 + n))
        for e, p in zip(self.ema.parameters(), self.unet.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.unet.buffers()):
            e.copy_(b)
        self.ema_updates += 1

    # ------------------------------------------------------------------------------------------ sampling

    def _labels(self, labels: Labels, n: int) -> torch.Tensor:
        if labels is None:
            return torch.full((n,), self.null, dtype=torch.long, device=self.device)
        return labels.to(self.device, torch.long)

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: Union[int, torch.Tensor], labels: Labels = None,
            guidance: float = 1.0) -> torch.Tensor:
        """The EMA UNet's noise prediction with classifier-free guidance: eps_null + w (eps_y - eps_null).
        ``labels=None``: the null class only (no guidance); w = 1: the conditional eps only; w = 0: the null
        eps only; otherwise one batched pass of both."""
        if labels is None or guidance == 0.0:
            return self.ema(x, t, class_labels=self._labels(None, x.shape[0])).sample
        labels = self._labels(labels, x.shape[0])
        if guidance == 1.0:
            return self.ema(x, t, class_labels=labels).sample
        both = self.ema(torch.cat([x, x]), t, class_labels=torch.cat([labels, self._labels(None, x.shape[0])]))
        eps_y, eps_null = both.sample.chunk(2)
        return eps_null + guidance * (eps_y - eps_null)

    def _steps(self, steps: Optional[int]) -> int:
        steps = self.cfg.sampling_steps if steps is None else steps
        check_steps(steps, self.cfg.train_timesteps, "steps")
        return steps

    def _denoise(self, x: torch.Tensor, timesteps: torch.Tensor, labels: Labels, guidance: float,
                 scheduler: Optional[DDIMScheduler] = None) -> torch.Tensor:
        """The DDIM (eta 0) loop over ``timesteps`` (decreasing; ``set_timesteps`` already called)."""
        scheduler = self.ddim if scheduler is None else scheduler
        for t in timesteps:
            x = scheduler.step(self.eps(x, t, labels, guidance), t, x, eta=0.0).prev_sample
        return x

    @torch.no_grad()
    def sample(self, labels: Labels = None, n: Optional[int] = None, guidance: Optional[float] = None,
               steps: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` (about [-1, 1]) from fresh noise: one per label (guidance defaults to
        ``cfg.guidance``), or ``n`` unconditional ones (``labels=None``: the null class)."""
        if labels is None and n is None:
            raise ValueError("sample: give labels or n")
        size = self.cfg.unet.image_size
        b = len(labels) if labels is not None else n
        x = randn_tensor((b, 3, size, size), generator=generator, device=self.device, dtype=self.ema.dtype)
        self.ddim.set_timesteps(self._steps(steps), device=self.device)
        return self._denoise(x, self.ddim.timesteps, labels, self.cfg.guidance if guidance is None else guidance)

    @torch.no_grad()
    def sdedit(self, x0: torch.Tensor, strength: Union[float, torch.Tensor], labels: Labels = None,
               steps: Optional[int] = None, generator: Optional[torch.Generator] = None,
               guidance: Optional[float] = None, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """SDEdit: noise ``x0`` to the timestep of ``strength`` (t_start = N - int(N s) of the N DDIM steps),
        then denoise, conditioned on ``labels`` (guidance defaults to ``cfg.guidance``) or on the null class.
        s = 0 returns x0 itself; s = 1 starts from the pure noise (the sampler). ``strength`` may be one value
        per image: images of equal strength are denoised together, each with its own slice of the same noise
        (drawn once for the whole batch from ``generator`` unless ``noise`` is given)."""
        s = torch.as_tensor(strength, dtype=torch.float64).flatten().cpu()
        if s.numel() == 1:
            s = s.expand(x0.shape[0])
        if s.numel() != x0.shape[0]:
            raise ValueError(f"sdedit: {s.numel()} strengths for {x0.shape[0]} images")
        bad = s[(s < 0) | (s > 1) | s.isnan()]
        if bad.numel():
            raise ValueError(f"sdedit: strength {bad[0].item()} is outside [0, 1]")
        steps = self._steps(steps)
        guidance = self.cfg.guidance if guidance is None else guidance
        if noise is None:
            noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        out = x0.clone()
        for value in torch.unique(s).tolist():
            idx = (s == value).nonzero().flatten().to(x0.device)
            t_start = steps - int(steps * value)
            self.ddim.set_timesteps(steps, device=x0.device)
            timesteps = self.ddim.timesteps[t_start:]
            if len(timesteps) == 0:
                continue  # strength 0 (or too small for one step): the input itself
            x = noise[idx] if value == 1.0 else self.ddim.add_noise(x0[idx], noise[idx], timesteps[:1])
            out[idx] = self._denoise(x, timesteps, None if labels is None else labels[idx], guidance)
        return out

    @torch.no_grad()
    def invert(self, x0: torch.Tensor, labels: Labels = None, steps: Optional[int] = None,
               strength: float = 1.0) -> torch.Tensor:
        """DDIM inversion (deterministic, increasing t) of images to noise under ``labels`` (conditional eps,
        no guidance; None: the null class): for each DDIM timestep t from the smallest, with a_prev the
        alpha_cumprod of the level below (1 for the image itself), x0_hat = (x - sqrt(1 - a_prev) eps(x, t)) /
        sqrt(a_prev), x <- sqrt(a_t) x0_hat + sqrt(1 - a_t) eps(x, t): the sampler's steps run backwards.
        ``strength`` < 1 stops after the first int(steps x strength) of them (a partly noised latent that
        :meth:`regenerate` with the same strength takes back)."""
        steps = self._steps(steps)
        self.ddim.set_timesteps(steps, device=x0.device)
        alphas = self.ddim.alphas_cumprod.to(x0.device, torch.float64)
        final = self.ddim.final_alpha_cumprod.to(x0.device, torch.float64)
        stride = self.cfg.train_timesteps // steps
        x = x0
        for t in self.ddim.timesteps.flip(0)[: _levels(steps, strength)]:
            a_prev = alphas[t - stride] if t - stride >= 0 else final
            a_t = alphas[t]
            e = self.eps(x, t, labels, 1.0)
            x0_hat = (x - (1 - a_prev).sqrt() * e) / a_prev.sqrt()
            x = (a_t.sqrt() * x0_hat + (1 - a_t).sqrt() * e).to(x0.dtype)
        return x

    @torch.no_grad()
    def regenerate(self, noise: torch.Tensor, labels: Labels = None, steps: Optional[int] = None,
                   guidance: float = 1.0, strength: float = 1.0) -> torch.Tensor:
        """The DDIM loop from ``noise`` (e.g. :meth:`invert`'s, at the same ``strength``) under ``labels``
        (default guidance 1: the conditional eps only) without clipping x0_hat: the exact counterpart of the
        inversion; ``strength`` < 1 runs only the last int(steps x strength) steps."""
        steps = self._steps(steps)
        self.ddim_exact.set_timesteps(steps, device=noise.device)
        timesteps = self.ddim_exact.timesteps[steps - _levels(steps, strength):]
        return self._denoise(noise, timesteps, labels, guidance, self.ddim_exact)


def _levels(steps: int, strength: float) -> int:
    """How many of ``steps`` DDIM steps a strength re-runs (SDEdit's int(N s))."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} is outside [0, 1]")
    return int(steps * strength)


class NullClassUNet(torch.nn.Module):
    """A class-conditional UNet as diffusers' ``DDIMPipeline`` calls it, ``unet(x, t).sample`` with no class
    labels (a class-conditional ``UNet2DModel`` refuses to run without them): the labels are fixed to the null
    class. For comparing our sampler with the pipeline's (the tests and ``bench/diffusion.py``)."""

    def __init__(self, unet: UNet2DModel, null: int):
        super().__init__()
        self.inner, self.null, self.config = unet, null, unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def forward(self, x: torch.Tensor, t):
        labels = torch.full((x.shape[0],), self.null, dtype=torch.long, device=x.device)
        return self.inner(x, t, class_labels=labels)
