"""A plain epoch loop for the stages that Avalanche does not drive (contrastive, fusion, generator, SSL).

The caller gives a model, a training step ``step(model, batch) -> {"loss": tensor, <term>: tensor, ...}``
(``loss`` is back-propagated, every term is logged), an ``evaluate(model, loader) -> {metric: float}`` and
the train and valid datasets; :class:`Trainer` runs the epochs::

    trainer = Trainer(cfg, model, step, evaluate, out=Path("models/cwcl/s0"), fingerprint=fp, seed=0)
    result = trainer.fit(train_data, valid_data)   # model now holds the selected weights

Output folder ``out`` (written at the end, all or nothing, through :func:`checkpoint.write_folder`)::

    model.safetensors   the selected model: every entry of its state_dict (loads with strict=True alone)
    last.safetensors    the model after the last epoch, without its frozen parameters (requires_grad
                        False: never optimised, so identical to those in model.safetensors);
                        :func:`load_model` ``(which="last")`` puts the two together
    history.jsonl       one JSON line per epoch: epoch, train (the mean of each loss term over the
                        epoch's steps), valid (the metrics, on evaluated epochs), lr (group 0's at the
                        epoch's last step; lr_groups by group name when there are several), seconds
    state.json          fingerprint, epochs, best_epoch and its valid metrics, the selection rule, frozen names

Guarantees:

- **Resume.** After every epoch but the last, ``<out>.partial`` holds the same files plus ``optimizer.pt``,
  ``scheduler.pt`` and ``rng.pt`` (torch's CPU and CUDA generators). A run killed at any point (``kill -9``)
  and started again with the same fingerprint continues after the last finished epoch and ends with the
  same files as an uninterrupted run (byte for byte on the CPU, except the wall-clock ``seconds`` of
  history.jsonl). A partial state of another fingerprint is deleted, never resumed. The fingerprint
  combines the caller's (a digest of its params and input data) with this trainer's config (all but
  ``progress``). A finished ``out`` of the same fingerprint is not trained again.
- **Determinism.** The same seed and params give the same bytes on the CPU: deterministic kernels
  (:func:`runtime.setup`), torch's generator seeded from the seed at the start, and each epoch's shuffling,
  Python and NumPy draws seeded from (seed, epoch) alone, so none of them depends on what ran before.
- **Selection.** Only the valid split is evaluated (the trainer never sees test data), every
  ``eval_every`` epochs and after the last; the selected epoch maximises (``select_mode: max``) or minimises
  the ``select_metric``; a tie keeps the earlier epoch; a NaN metric never beats a number.
- **Frozen parameters** (requires_grad False) are left out of every optimiser group and saved once per
  folder; every trainable parameter must be in some group (one spent on gradients and never stepped is an
  error). A frozen module in train mode still updates its buffers (BatchNorm statistics): keep it in eval
  mode in the model's ``train()`` if that is not wanted.

Processes: everything about ranks, model wrapping, samplers and metric reduction goes through
:mod:`pipeline.core.distributed` (single-process today), so running under ``torchrun`` changes that module only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.core import checkpoint as ckpt
from pipeline.core.atomic import atomic_dir
from pipeline.core import distributed as dist
from pipeline.core import runtime
from pipeline.core.trainer_config import TrainerConfig
from pipeline.errors import DataError, ParamsError, UserError

StepFn = Callable[[torch.nn.Module, Any], Mapping[str, torch.Tensor]]
EvalFn = Callable[[torch.nn.Module, Iterable], Mapping[str, float]]
GroupsFn = Callable[[torch.nn.Module], Iterable[dict]]
OptimizerFn = Callable[[list[dict]], torch.optim.Optimizer]
SchedulerFn = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    best: dict[str, float]  # the valid metrics of the selected epoch
    history: list[dict]
    resumed_after: int  # epochs found finished in a partial state (0: started afresh)


# ----------------------------------------------------------------------------- helpers


def derive_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed for one use of ``seed`` (an epoch's shuffling, ...): independent streams per use, and a
    function of the arguments only, so a resumed run draws exactly what an uninterrupted one drew."""
    digest = hashlib.sha256(":".join(map(str, (seed, *tags))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def lr_factor(schedule: str, step: int, total: int, warmup: int, final: float) -> float:
    """The learning rate of step ``step`` (0-based, of ``total``) as a fraction of the group's lr: a linear
    ramp over the first ``warmup`` steps, then constant, or cosine / linear decay to ``final`` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min((step - warmup) / max(total - 1 - warmup, 1), 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return final + (1.0 - final) * shape


def schedule_from_config(cfg: TrainerConfig) -> SchedulerFn:
    """The per-step schedule of ``cfg`` as a scheduler factory (a LambdaLR: its state is its step count)."""

    def build(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler:
        warmup = int(cfg.warmup * total)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(cfg.lr_schedule, s, total, warmup, cfg.lr_final))

    return build


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (tuples, lists, dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    if isinstance(batch, tuple):  # a named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    return batch


class DeviceLoader:
    """A DataLoader whose batches arrive on the training device (what ``step`` and ``evaluate`` iterate);
    ``.dataset`` is the dataset it reads."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield to_device(batch, self.device)


def frozen_names(model: torch.nn.Module) -> list[str]:
    """The parameters that are never optimised (requires_grad False), by state_dict name."""
    return sorted(name for name, p in model.named_parameters() if not p.requires_grad)


def load_model(folder: Path, model: torch.nn.Module, which: Literal["best", "last"] = "best") -> dict:
    """Load the selected (``best``) or the ``last`` model of a trainer folder (output or partial) into
    ``model`` with strict=True; returns its state.json."""
    meta = ckpt.read_meta(folder)
    state = ckpt.read_tensors(folder, "model")
    if which == "last":
        last = ckpt.read_tensors(folder, "last")
        frozen = set(meta["frozen"])
        if set(last) | frozen != set(state) or set(last) & frozen:
            raise DataError(f"{folder}: last.safetensors does not match model.safetensors and the frozen names")
        state.update(last)
    model.load_state_dict(state, strict=True)
    return meta


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Train ``model`` by ``step`` and select by ``evaluate`` on the valid split; see the module docstring.

    ``fingerprint``: the caller's digest of everything the result depends on (its params, the content of
    its input data, the initial weights' source). ``seed``: this run's seed (one of the top-level ``seeds``).
    ``param_groups(model)``: optimiser groups (torch dicts; ``lr_scale`` multiplies ``cfg.lr``, ``name``
    labels the group in the history); default: one group of every trainable parameter. Frozen parameters
    in a group are dropped. ``optimizer(groups)``: default AdamW(lr, weight_decay). ``scheduler(optimizer,
    total_steps)``: stepped after every optimiser step, its state_dict checkpointed; default: the config's
    schedule. ``collate``: the DataLoaders' collate_fn. ``key``: the params section, for error messages.
    ``on_epoch(epoch)``: called before each training epoch (1-based), also the first one after a resume, for
    what depends on the epoch alone (a loss schedule). ``after_step()``: called after every optimiser and
    scheduler step, for what must see the freshly stepped weights (an EMA copy of them); whatever it changes
    must live in the model's state_dict to survive a resume.
    """

    def __init__(self, cfg: TrainerConfig, model: torch.nn.Module, step: StepFn, evaluate: EvalFn, *, out: Path,
                 fingerprint: str, seed: int, param_groups: GroupsFn | None = None,
                 optimizer: OptimizerFn | None = None, scheduler: SchedulerFn | None = None,
                 collate: Callable | None = None, key: str = "train", label: str = "",
                 on_epoch: Callable[[int], None] | None = None, after_step: Callable[[], None] | None = None):
        self.cfg, self.step, self.evaluate, self.seed, self.key = cfg, step, evaluate, seed, key
        self.on_epoch, self.after_step = on_epoch, after_step
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.label = label or self.out.name
        self.collate = collate
        self.device = runtime.setup(cfg.device, seed, cfg.threads, key=f"{key}.device")
        trainer_cfg = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"}
        self.fp = ckpt.json_digest({"caller": fingerprint, "trainer": trainer_cfg, "seed": seed,
                                    "world_size": dist.world_size()})
        self.model = model.to(self.device)
        self.net = dist.wrap(self.model, self.device)
        self.frozen = frozen_names(self.model)
        groups = self._groups(param_groups)
        self.trainable = [p for g in groups for p in g["params"]]
        self.optimizer = (optimizer or self._adamw)(groups)
        self.make_scheduler = scheduler or schedule_from_config(cfg)
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the selected non-frozen entries

    # -- building
    def _adamw(self, groups: list[dict]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _groups(self, param_groups: GroupsFn | None) -> list[dict]:
        raw = list(param_groups(self.model)) if param_groups else [{"params": self.model.parameters()}]
        names = {id(p): n for n, p in self.model.named_parameters()}
        groups, seen = [], set()
        for i, group in enumerate(raw):
            group = dict(group)
            params = [p for p in group["params"] if p.requires_grad]  # a frozen tower's are never optimised
            for p in params:
                if id(p) not in names:
                    raise ValueError(f"param_groups: group {i} holds a parameter that is not the model's")
                if id(p) in seen:
                    raise ValueError(f"param_groups: {names[id(p)]} is in two groups")
                seen.add(id(p))
            if not params:
                continue
            group["params"] = params
            group.setdefault("name", f"group{i}")
            if "lr_scale" in group and "lr" not in group:
                group["lr"] = self.cfg.lr * group["lr_scale"]
            groups.append(group)
        missing = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            # its gradient would be computed every step and never applied
            raise ValueError(f"param_groups: {missing[0]} is trainable but in no group; set requires_grad_(False) "
                             "to freeze it")
        if not groups:
            raise ValueError("param_groups: the model has no trainable parameter")
        return groups

    def _loader(self, dataset: Dataset, train: bool, epoch: int = 0) -> DeviceLoader:
        cfg = self.cfg
        if train:
            seed = derive_seed(self.seed, "shuffle", epoch)
            sampler, batch_size, drop_last = dist.train_sampler(dataset, seed), cfg.batch_size, cfg.drop_last
        else:
            seed, sampler, batch_size, drop_last = 0, dist.eval_sampler(dataset), cfg.eval_batch_size, False
        # the loader's own generator seeds its workers (torch seeds their torch, random and NumPy from it)
        generator = torch.Generator()
        generator.manual_seed(seed)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                            num_workers=cfg.num_workers, collate_fn=self.collate, generator=generator,
                            pin_memory=self.device.type == "cuda")
        return DeviceLoader(loader, self.device)

    # -- the run
    def fit(self, train_data: Dataset, valid_data: Dataset) -> TrainResult:
        """Train the remaining epochs (all, or those after a partial state of this run), write ``out`` and
        leave the selected weights in the model."""
        cfg = self.cfg
        finished = self._finished()
        if finished is not None:
            return finished
        self.steps_per_epoch = len(self._loader(train_data, True, 1))
        if self.steps_per_epoch == 0:
            raise DataError(f"{self.label}: the training set has {len(train_data)} samples, fewer than one batch "
                            f"of {cfg.batch_size} (drop_last)")
        self.scheduler = self.make_scheduler(self.optimizer, cfg.epochs * self.steps_per_epoch)
        done = self._resume()
        if not done:
            torch.manual_seed(derive_seed(self.seed, "torch"))  # dropout and augmentations, independent of init
        valid_loader = self._loader(valid_data, False)
        for epoch in range(done + 1, cfg.epochs + 1):
            t0 = time.time()
            row = {"epoch": epoch, "train": self._train_epoch(train_data, epoch)}
            row["lr"] = self.last_lrs[0]
            if len(self.last_lrs) > 1:
                row["lr_groups"] = {g["name"]: lr for g, lr in zip(self.optimizer.param_groups, self.last_lrs)}
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                row["valid"] = self._evaluate(valid_loader)
                self._select(epoch, row["valid"])
            row["seconds"] = round(time.time() - t0, 3)
            self.history.append(row)
            if cfg.progress and dist.is_main():
                from tqdm import tqdm

                tqdm.write(f"{self.label} epoch {epoch}/{cfg.epochs}: "
                           + json.dumps({k: row[k] for k in ("train", "valid") if k in row}))
            if epoch < cfg.epochs:  # after the last epoch the output itself is written
                self._save(self.partial, final=False)
        self._save(self.out, final=True)
        if dist.is_main():
            shutil.rmtree(self.partial, ignore_errors=True)
        dist.barrier()
        return self._result(done)

    def _train_epoch(self, data: Dataset, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        # Python and NumPy draws (augmentations in the dataset) restart from (seed, epoch): their state is
        # not in the checkpoint, so a resumed epoch must not depend on what earlier epochs drew
        random.seed(derive_seed(self.seed, "python", epoch))
        np.random.seed(derive_seed(self.seed, "numpy", epoch) % 2**32)
        loader = self._loader(data, True, epoch)
        if self.on_epoch is not None:
            self.on_epoch(epoch)
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        from tqdm import tqdm

        bar = tqdm(loader, desc=f"{self.label} epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (cfg.progress and dist.is_main()))
        for i, batch in enumerate(bar):
            with runtime.autocast(self.device):
                terms = self.step(self.net, batch)
            loss = terms["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # outside autocast: backward runs in the dtypes the forward chose
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
            self.last_lrs = [g["lr"] for g in self.optimizer.param_groups]
            self.optimizer.step()
            self.scheduler.step()
            if self.after_step is not None:
                self.after_step()
            for name, value in terms.items():  # summed on the device: no synchronisation per step
                value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                sums[name] = sums[name] + value if name in sums else value
            if not bar.disable and i % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        bar.close()
        means = {name: float(total) / len(loader) for name, total in sums.items()}
        if not math.isfinite(means["loss"]):
            # stop before a diverged state is checkpointed: the partial state of the previous epoch stays
            raise UserError(f"{self.label}: the training loss is {means['loss']} in epoch {epoch}; lower "
                            f"{self.key}.lr or set {self.key}.grad_clip")
        return means

    def _evaluate(self, loader: DeviceLoader) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), runtime.autocast(self.device):
            metrics = self.evaluate(self.model, loader)
        count = len(loader.loader.sampler)  # this rank's share of the split
        metrics = dist.reduce_metrics({str(k): float(v) for k, v in metrics.items()}, count)
        if self.cfg.select_metric not in metrics:
            raise ParamsError(f"params: {self.key}.select_metric: {self.cfg.select_metric!r} is not among the "
                              f"metrics evaluate returns ({', '.join(sorted(metrics)) or 'none'})")
        return metrics

    def _select(self, epoch: int, metrics: dict[str, float]) -> None:
        value, best = metrics[self.cfg.select_metric], self.best_value
        if best is None or math.isnan(best):
            better = best is None or not math.isnan(value)
        else:  # strict: a tie keeps the earlier epoch; a NaN compares False
            better = value > best if self.cfg.select_mode == "max" else value < best
        if better:
            self.best_epoch, self.best_value = epoch, value
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self._state().items()
                               if k not in set(self.frozen)}

    # -- checkpoints
    def _state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def _meta(self, final: bool) -> dict:
        best = next((h["valid"] for h in self.history if h["epoch"] == self.best_epoch), None)
        return {"fingerprint": self.fp, "complete": final, "epochs": self.cfg.epochs,
                "epochs_done": len(self.history), "best_epoch": self.best_epoch, "best": best,
                "select": {"metric": self.cfg.select_metric, "mode": self.cfg.select_mode}, "frozen": self.frozen}

    def _save(self, folder: Path, final: bool) -> None:
        if dist.is_main():
            current = self._state()
            best = self.best_state if self.best_state is not None else current  # before the first evaluation
            frozen = set(self.frozen)
            tensors = {"model": {k: current[k] if k in frozen else best[k] for k in current},
                       "last": {k: v for k, v in current.items() if k not in frozen}}
            pickled = {} if final else {"optimizer": self.optimizer.state_dict(),
                                        "scheduler": self.scheduler.state_dict(), "rng": runtime.rng_state()}
            history = "".join(json.dumps(row) + "\n" for row in self.history)
            ckpt.write_folder(folder, tensors, pickled, self._meta(final), text_files={"history.jsonl": history})
        dist.barrier()

    def _finished(self) -> TrainResult | None:
        """The result of a finished output of this very run (nothing to train), else None."""
        state = self.out / "state.json"
        if not state.is_file():
            return None
        meta = json.loads(state.read_text())
        if meta.get("fingerprint") != self.fp or not meta.get("complete"):
            return None
        load_model(self.out, self.model)
        if dist.is_main():  # left by a kill between writing the output and removing it
            shutil.rmtree(self.partial, ignore_errors=True)
        self.history = read_history(self.out)
        self.best_epoch = meta["best_epoch"]
        return self._result(len(self.history))

    def _resume(self) -> int:
        """Load this run's partial state (the number of epochs it finished) or delete another run's (0)."""
        if not (self.partial / "state.json").is_file():
            return 0
        meta = ckpt.read_meta(self.partial)
        if meta.get("fingerprint") != self.fp:
            if dist.is_main():
                print(f"{self.label}: {self.partial} is the partial state of another run (other params or data); "
                      "starting afresh")
                shutil.rmtree(self.partial, ignore_errors=True)
            dist.barrier()
            return 0
        load_model(self.partial, self.model, "last")
        self.optimizer.load_state_dict(ckpt.read_pickled(self.partial, "optimizer"))
        self.scheduler.load_state_dict(ckpt.read_pickled(self.partial, "scheduler"))
        runtime.set_rng_state(ckpt.read_pickled(self.partial, "rng"))
        self.history = read_history(self.partial)
        self.best_epoch = meta["best_epoch"]
        if self.best_epoch is not None:
            self.best_value = meta["best"][self.cfg.select_metric]
            frozen = set(meta["frozen"])
            self.best_state = {k: v for k, v in ckpt.read_tensors(self.partial, "model").items() if k not in frozen}
        if dist.is_main():
            print(f"{self.label}: resuming after epoch {meta['epochs_done']}")
        return meta["epochs_done"]

    def _result(self, resumed_after: int) -> TrainResult:
        """Leave the selected weights in the model and describe the run."""
        if self.best_state is not None:
            self.model.load_state_dict({**self._state(), **self.best_state}, strict=True)
        best = next((h["valid"] for h in self.history if h["epoch"] == self.best_epoch), {})
        return TrainResult(self.out, self.best_epoch, best, self.history, resumed_after)


@contextlib.contextmanager
def publish(run: Path, out: Path, owner: str, history: list[dict], copy: Iterable[str] = ("model.safetensors",)):
    """Write a stage's output folder from a finished trainer folder ``run``, all at once: the ``copy`` files,
    ``history.jsonl`` (one sorted-key line per epoch, without the wall-clock ``seconds``, so the same params
    give the same bytes) and whatever the caller writes into the yielded folder; then remove ``run``."""
    with atomic_dir(out, owner=owner) as work:
        for name in copy:
            shutil.copyfile(Path(run) / name, work / name)
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in history]
        (work / "history.jsonl").write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        yield work
    shutil.rmtree(run, ignore_errors=True)


def read_history(folder: Path) -> list[dict]:
    """The history.jsonl of a trainer folder, one dict per epoch."""
    f = Path(folder) / "history.jsonl"
    if not f.is_file():
        raise DataError(f"{f}: missing from the checkpoint")
    return [json.loads(line) for line in f.read_text().splitlines() if line]
