"""Benchmark: the diffusion generator's training and sampling speed, and peak memory.

Builds the generator of the ``diffusion`` params section (``--set`` overrides any key, e.g. a GPU-sized UNet)
with random weights (speed does not depend on them) and prints:

* training: optimiser steps/s and images/s at ``diffusion.train.batch_size`` (DDPM loss, backward, AdamW, EMA);
* sampling: images/s of our DDIM loop (``Generator.sample``, null class, ``sampling_steps`` steps) against
  diffusers' own ``DDIMPipeline`` on the same UNet, same noise and steps (outputs checked equal), and of our
  class-conditional sampling with classifier-free guidance (two UNet passes per step, batched);
* peak memory: the process's peak resident set (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA).

    python bench/diffusion.py                                   # the params.yaml generator on this machine
    python bench/diffusion.py --device cuda --set diffusion.model.unet.channels=[64,128,256] \\
        --set diffusion.model.unet.norm_groups=32 --set diffusion.train.batch_size=256
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.params import read_yaml, section, set_dotted  # noqa: E402
from pipeline.diffusion.generator import Generator, NullClassUNet  # noqa: E402
from pipeline.diffusion.params import DiffusionParams  # noqa: E402


def load_params(path: Path, overrides: list[str]) -> DiffusionParams:
    raw = read_yaml(path)
    for item in overrides:
        key, _, value = item.partition("=")
        set_dotted(raw, key, yaml.safe_load(value))
    return section(raw, DiffusionParams, "diffusion")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_training(g: Generator, batch: int, steps: int, device: torch.device, n_classes: int) -> float:
    size = g.cfg.unet.image_size
    opt = torch.optim.AdamW(g.unet.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    y = torch.randint(0, n_classes, (batch,), device=device)
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        loss = g.training_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        g.update_ema()
    sync(device)
    return steps / (time.perf_counter() - t0)


def timed(fn, device: torch.device) -> tuple[torch.Tensor, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a params key")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--sample-batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed sampling runs of each loop (the best is kept)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    params = load_params(args.params, args.set)
    m = params.model
    g = Generator(m, args.classes, seed=0).to(device)
    n_params = sum(p.numel() for p in g.unet.parameters())
    print(f"UNet channels {m.unet.channels} at {m.unet.image_size} px: {n_params / 1e6:.2f} M parameters; "
          f"{args.device}, {torch.get_num_threads()} threads")

    steps_per_s = time_training(g, params.train.batch_size, args.train_steps, device, args.classes)
    print(f"training:  {steps_per_s:.2f} steps/s = {steps_per_s * params.train.batch_size:.0f} images/s "
          f"(batch {params.train.batch_size}; {params.train.epochs} epochs of the default data = "
          f"{params.train.epochs * (16000 // params.train.batch_size) / steps_per_s:.0f} s at this rate)")

    from diffusers import DDIMPipeline

    g.eval()
    b, steps = args.sample_batch, m.sampling_steps
    pipe = DDIMPipeline(unet=NullClassUNet(g.ema, g.null), scheduler=g.ddim)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        g.sample(n=2, generator=torch.Generator(device).manual_seed(0))  # warm-up
        t_theirs = t_ours = float("inf")
        for _ in range(args.repeats):  # alternate the two and keep each one's best time: less noise from the machine
            theirs, t = timed(lambda: pipe(batch_size=b, generator=torch.Generator(device).manual_seed(1),
                                           num_inference_steps=steps, eta=0.0, output_type="pt").images, device)
            t_theirs = min(t_theirs, t)
            ours, t = timed(lambda: g.sample(n=b, generator=torch.Generator(device).manual_seed(1)), device)
            t_ours = min(t_ours, t)
        labels = torch.arange(b, device=device) % args.classes
        _, t_cfg = timed(lambda: g.sample(labels, generator=torch.Generator(device).manual_seed(1)), device)
    same = torch.allclose((ours / 2 + 0.5).clamp(0, 1).cpu(), theirs.cpu(), atol=1e-5)
    print(f"sampling:  ours {b / t_ours:.1f} images/s, DDIMPipeline {b / t_theirs:.1f} images/s "
          f"(ours / theirs {t_theirs / t_ours:.2f}x, best of {args.repeats}; {steps} DDIM steps, batch {b}, outputs equal: {same}); "
          f"with guidance {m.guidance} (2 passes per step): {b / t_cfg:.1f} images/s")
    print(f"peak memory: {peak_mib(device):.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
