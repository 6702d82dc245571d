"""Benchmark of the frozen towers and the embed stage's cache (not a test).

Prints: embeddings/s of each tower (default params), the embed stage's wall time and peak memory on real
inputs (``--vision`` / ``--prepared``, skipped when absent), and the training-epoch speed-up of the cache:
one epoch of a linear head on cached embeddings against the same epoch with the frozen tower in the loop.

    python bench/embed.py [--vision data/vision --prepared data/prepared] [--n 2048]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.models.params import TowersConfig  # noqa: E402
from pipeline.models.towers_image import ImageTower  # noqa: E402
from pipeline.models.towers_text import TextTower  # noqa: E402


def inputs(n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``n`` 32x32 images, ``n`` distinct caption-like texts (~8 words) and 10-class labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    colours, shapes, places = ["red", "lime", "navy", "gold"], ["circle", "star", "cross", "heart"], ["left", "top", "centre"]
    texts = [f"a {'tiny small big'.split()[i % 3]} {colours[i % 4]} {shapes[i // 4 % 4]} at the {places[i % 3]} #{i}"
             for i in range(n)]
    return images, texts, rng.integers(0, 10, n)


def epoch(head: torch.nn.Module, opt, batches) -> float:
    t = time.time()
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(head(x()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.time() - t


def speedup(name: str, encode, data, labels: np.ndarray, dim: int, bs: int = 64) -> None:
    """One epoch with cached embeddings vs the tower inside the loop (the head and batches the same)."""
    cached = encode(data).half()  # what the cache holds
    y = torch.as_tensor(labels)
    spans = [slice(i, i + bs) for i in range(0, len(y), bs)]
    head = torch.nn.Linear(dim, 10)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    t_cache = epoch(head, opt, [(lambda s=s: cached[s].float(), y[s]) for s in spans])
    t_tower = epoch(head, opt, [(lambda s=s: encode(data[s]), y[s]) for s in spans])
    print(f"{name}: epoch of {len(y)} on the cache {t_cache * 1000:.1f} ms, with the tower in the loop {t_tower:.2f} s: "
          f"x{t_tower / t_cache:.0f}")


def stage(vision: Path, prepared: Path) -> None:
    if not (vision.is_dir() and prepared.is_dir()):
        print(f"embed stage: skipped ({vision} or {prepared} missing; dvc repro prepare prepare-vision first)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        subprocess.run([sys.executable, "-m", "pipeline", "embed", "--vision", str(vision), "--prepared", str(prepared),
                        "--out", str(Path(tmp) / "emb"), "--timing", str(Path(tmp) / "timing.json"), "--no-progress"],
                       check=True)
        wall = time.time() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"embed stage: {wall:.1f} s wall, peak memory {rss:.0f} MB; stats: {(Path(tmp) / 'timing.json').read_text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vision", type=Path, default=Path("data/vision"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--n", type=int, default=2048, help="images and texts for the speed and speed-up checks")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = TowersConfig()
    images, texts, labels = inputs(args.n)
    text, image = TextTower(cfg.text), ImageTower(cfg.image)
    for name, tower, data in (("text", text, texts), ("image", image, images)):
        tower.encode(data[:64])  # warm-up: first-call allocations
        t = time.time()
        tower.encode(data)
        print(f"{name} tower: {len(data) / (time.time() - t):.0f} embeddings/s (batch {tower.cfg.batch_size}, "
              f"{torch.get_num_threads()} threads)")
    speedup("image head", image.encode, images, labels, image.dim)
    speedup("text head", text.encode, texts, labels, text.dim)
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    stage(args.vision, args.prepared)


if __name__ == "__main__":
    main()
