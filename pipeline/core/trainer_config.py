"""The plain trainer's params (a section of a track's params, e.g. ``cwcl.speech.train``).

Apart from :mod:`pipeline.core.trainer` so that a track's ``params.py``, which every stage imports to learn
the sections, stays free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from pipeline.core.params import require


@dataclass
class TrainerConfig:
    """A params section (``from_dict(TrainerConfig, raw, "cwcl.train")``). The seed is not a key here: it
    comes from the top-level ``seeds`` (one rule for the whole project) and is given to :class:`Trainer`."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    drop_last: bool = False  # drop the last incomplete training batch (a batch of one breaks contrastive losses)
    lr: float = 1e-3
    weight_decay: float = 0.01
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"  # per step, from lr down to lr * lr_final
    lr_final: float = 0.0  # the last step's learning rate as a fraction of lr
    warmup: float = 0.0  # fraction of all steps over which the learning rate ramps up linearly first
    grad_clip: Optional[float] = 1.0  # max global gradient norm; null: no clipping
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA with bf16 autocast when present, else CPU
    threads: int = 0  # CPU threads (0 = all cores)
    num_workers: int = 0  # DataLoader worker processes
    progress: bool = True
    eval_every: int = 1  # evaluate on the valid split every this many epochs (and always after the last)
    select_metric: str = "accuracy"  # a key of what evaluate returns
    select_mode: Literal["max", "min"] = "max"

    def validate(self, key: str) -> None:
        require(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        require(self.eval_batch_size >= 1, f"{key}.eval_batch_size", "must be >= 1")
        require(self.lr > 0, f"{key}.lr", "must be > 0")
        require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        require(0.0 <= self.lr_final <= 1.0, f"{key}.lr_final", "must be in [0, 1] (a fraction of lr)")
        require(0.0 <= self.warmup < 1.0, f"{key}.warmup", "must be in [0, 1) (a fraction of all steps)")
        require(self.grad_clip is None or self.grad_clip > 0, f"{key}.grad_clip", "must be > 0 (null: no clipping)")
        require(self.threads >= 0, f"{key}.threads", "must be >= 0")
        require(self.num_workers >= 0, f"{key}.num_workers", "must be >= 0")
        require(self.eval_every >= 1, f"{key}.eval_every", "must be >= 1")
        require(bool(self.select_metric), f"{key}.select_metric", "must name a metric that evaluate returns")
