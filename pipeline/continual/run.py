"""One task of one strategy: restore the previous checkpoint, train through Avalanche, evaluate, save.

Checkpoint folder of a task (``models/cil/<strategy>/s<seed>/task<k>``)::

    model.safetensors   student weights (the next task's teacher is this model, frozen)
    optimizer.pt        optimiser state (tensors and numbers; weights_only=True)
    rng.pt              torch (and CUDA) RNG state at the end of the task
    buffer.safetensors  rehearsal buffer: per class, training-split indices and reservoir weights
    skd.safetensors     S-KD pseudo-transcripts of the buffer samples
    ewc.safetensors     EWC Fisher and anchor weights
    state.json          params fingerprint, history, timings
    eval.json           this task's row of the accuracy matrix (read by evaluate)

While a task trains, ``<folder>.partial`` holds the state at the end of the last finished epoch; a run
that is killed and started again resumes from it (if the params and the previous checkpoint are the
same) and ends with the same result as an uninterrupted run. Task 0 can adopt instead the state that
stage ``first@<seed>`` trained once for every strategy with the same first task (``first_task.py``),
through the same fingerprinted path.

A recipe with a frozen text target (``mm_target: frozen_text``) also reads the embed stage's cached
transcript embeddings (``<embeddings>/text/transcripts.*``; their content is part of the run's fingerprint)
and its model carries ``frozen_text_head`` from task 0 on (made from the seed when the chain starts, since
the init checkpoint is the same for every strategy).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from avalanche.core import SupervisedPlugin

from pipeline.config import Recipe, TrainParams
from pipeline.core import checkpoint as ckpt
from pipeline.core import runtime
from pipeline.continual.data import as_avalanche
from pipeline.data.prepared import Prepared
from pipeline.continual.optim import adamw
from pipeline.data.embeddings import load_embeddings
from pipeline.errors import DataError
from pipeline.models.build import model_fingerprint
from pipeline.models.slu import SLUModel


def load_previous(folder: Path, model: SLUModel, fingerprint: str, new_keys: frozenset[str] = frozenset()) -> dict:
    """Load ``folder``'s weights into ``model`` (strictly); ``new_keys``: the model's own weights that the
    checkpoint may lack (kept as they are: a head the init checkpoint does not have)."""
    meta = ckpt.read_meta(folder)
    if meta.get("model_fingerprint") != fingerprint:
        raise DataError(f"{folder}: checkpoint was made with other model params or another corpus; re-run it (dvc repro)")
    state = ckpt.read_tensors(folder, "model")
    own = {k: v for k, v in model.state_dict().items() if k in new_keys and k not in state}
    model.load_state_dict({**state, **own})
    return meta


def uses_frozen_text(recipe: Recipe) -> bool:
    """Whether the recipe's audio-text term targets the frozen text tower's embeddings (the embed stage's cache)."""
    return recipe.mm and recipe.mm_target == "frozen_text"


# ----------------------------------------------------------------------------- one task


class TaskRun:
    """Everything about training ``strategy`` on task ``k`` (``prev``: the folder it starts from).

    ``recipe`` overrides the strategy's recipe (stage ``first`` trains first-task recipes); ``shared``: a
    ``first@<seed>`` folder whose state task 0 adopts when its fingerprint matches; ``embeddings``: the embed
    stage's folder, read only by a recipe with a frozen text target.
    """

    def __init__(self, params: TrainParams, strategy: str, seed: int, task: int, prep: Prepared,
                 prev: Path, out: Path, device: torch.device, eval_split: str = "test",
                 recipe: Recipe | None = None, shared: Path | None = None, embeddings: Path | None = None):
        self.embeddings = Path(embeddings) if embeddings is not None else None
        self.frozen_text, self.frozen_digest = None, None  # set by load_frozen_text
        self.p, self.name = params, strategy
        self.recipe = recipe if recipe is not None else params.recipes[strategy]
        self.shared = Path(shared) if shared is not None and task == 0 else None
        self.seed, self.k, self.prep, self.prev, self.out = seed, task, prep, Path(prev), Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.device, self.eval_split = device, eval_split
        tasks = prep.manifest["tasks"]
        self.past = sorted(c for t in tasks[:task] for c in t)
        self.seen = sorted(c for t in tasks[: task + 1] for c in t)
        self.train_all = as_avalanche(prep.splits["train"])

    # -- building
    def experience(self):
        """The Avalanche experience of this task (joint: every class seen so far)."""
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

        classes = set(self.seen if self.recipe.joint else self.prep.manifest["tasks"][self.k])
        idx = [i for i, y in enumerate(self.prep.splits["train"].targets) if y in classes]
        return benchmark_from_datasets(train=[self.train_all.subset(idx)]).train_stream[0]

    def build(self, model: SLUModel):
        from pipeline.continual import plugins as pl
        from pipeline.continual.buffer import buffer_capacity, make_storage_policy
        from pipeline.continual.coconut import Coconut
        from pipeline.continual.regularizers import IntentLwF, OnlineEWC
        from pipeline.continual.skd import SequenceKD
        from pipeline.continual.template import Seq2SeqTemplate

        r, t = self.recipe, self.p.train
        past = pl.PastClasses(self.past)
        plugins, self.algos = [], {}
        self.policy = None
        if r.replay:
            capacity = buffer_capacity(r.buffer_size, len(self.prep.splits["train"]))
            self.policy = make_storage_policy(r.buffer_selection, capacity, model)
            plugins.append(pl.BufferReplayPlugin(capacity, batch_size_mem=r.buffer_batch_size, storage_policy=self.policy))
        if r.contrastive != "none" or r.mm:
            algo = Coconut(r.contrastive, r.tau, r.lambda_contrastive, r.mm, r.tau_mm, r.lambda_mm, r.mm_loss,
                           self.frozen_text)
            plugins.append(pl.CoconutPlugin(algo, past))
        if r.skd:
            self.algos["skd"] = SequenceKD(r.lambda_skd, self.prep.tokenizer.pad_id, self.p.model.max_decode_len)
            plugins.append(pl.SKDPlugin(self.algos["skd"], past, self.policy, self.seen))
        if r.lwf:
            plugins.append(pl.LwFPlugin(IntentLwF(r.lwf_alpha, r.lwf_temperature), past))
        if r.ewc:
            self.algos["ewc"] = OnlineEWC(r.ewc_lambda)
            plugins.append(pl.EWCPlugin(self.algos["ewc"]))
        self.epochs = t.first_task_epochs if self.k == 0 else (r.epochs or t.epochs)
        self.progress = pl.ProgressPlugin(self.epochs, 0, t.progress, f"{self.name} task {self.k}")
        self.resume = ResumePlugin(self)
        plugins += [self.progress, self.resume]  # resume last: teachers are copied before it loads partial weights
        optimizer = adamw(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        return Seq2SeqTemplate(model=model, optimizer=optimizer, train_mb_size=t.batch_size, train_epochs=self.epochs,
                               eval_mb_size=t.eval_batch_size, device=self.device, plugins=plugins, grad_clip=t.grad_clip,
                               intent_weight=t.intent_weight, label_smoothing=t.label_smoothing,
                               lr_schedule=t.lr_schedule, lr_final=t.lr_final)

    def fingerprint(self, prev_meta: dict, recipe: Recipe | None = None) -> str:
        """Identifies a run's training (and its partial states): ``recipe`` (default: this run's), params,
        seed, task, the exact weights it starts from and the content of the prepared data it reads (task
        split, class order, metadata, features), so that a state left by a killed run is never resumed or
        adopted on other data (with a frozen text target, also the content of the cached embeddings)."""
        recipe = recipe or self.recipe
        info = {
            "data": self.prep.digest,
            "recipe": asdict(recipe), "train": asdict(self.p.train), "model": asdict(self.p.model),
            "seed": self.seed, "task": self.k, "prev": self.prev_digest,
            "prev_model_fingerprint": prev_meta.get("model_fingerprint"),
        }
        if uses_frozen_text(recipe):
            info["frozen_text"] = self.frozen_digest
        return ckpt.json_digest(info)

    def load_frozen_text(self) -> None:
        """The frozen transcript embeddings of the training split (``self.frozen_text``, float32 [N, D]) and the
        cache files' content digest (``self.frozen_digest``)."""
        from pipeline.continual.coconut import FROZEN_TEXT, frozen_transcripts

        if self.embeddings is None:
            raise DataError(f"recipes.{self.name}: mm_target frozen_text reads the embed stage's cache: give --embeddings")
        tower, name = FROZEN_TEXT
        cache = load_embeddings(self.embeddings, tower, name)
        base = self.embeddings / tower / name
        self.frozen_text = frozen_transcripts(cache, self.prep.meta["train"], f"{base}.json")
        self.frozen_digest = ckpt.json_digest({ext: ckpt.file_digest(base.with_suffix(ext))
                                               for ext in (".safetensors", ".json")})

    # -- state across tasks
    def restore(self) -> None:
        from pipeline.continual.buffer import load_buffer_state

        runtime.set_rng_state(ckpt.read_pickled(self.prev, "rng"))
        if self.k == 0:
            return
        if self.policy is not None:
            load_buffer_state(self.policy, ckpt.read_tensors(self.prev, "buffer"), self.train_all)
        for stem, algo in self.algos.items():
            algo.load_state(ckpt.read_tensors(self.prev, stem))
        if not self.p.train.reset_optimizer:
            self.carry_optimizer = ckpt.read_pickled(self.prev, "optimizer")

    def save(self, strategy, meta: dict, row: dict) -> None:
        """Write the task's checkpoint folder (with eval.json) atomically and drop the partial state."""
        from pipeline.continual.buffer import buffer_state

        tensors = {"model": strategy.model.state_dict()}
        if self.policy is not None:
            tensors["buffer"] = buffer_state(self.policy)
        for stem, algo in self.algos.items():
            tensors[stem] = algo.state()
        pickled = {"optimizer": strategy.optimizer.state_dict(), "rng": runtime.rng_state()}
        ckpt.write_folder(self.out, tensors, pickled, meta, {"eval.json": row})  # all or nothing
        shutil.rmtree(self.partial, ignore_errors=True)

    # -- the whole task
    def train(self, model: SLUModel):
        """Restore, resume or adopt, train the remaining epochs and run the end-of-task hooks."""
        from pipeline.continual.first_task import first_task_recipe

        new_keys = frozenset()
        if uses_frozen_text(self.recipe):
            from pipeline.continual.coconut import add_frozen_text_head

            self.load_frozen_text()
            add_frozen_text_head(model, self.frozen_text.shape[1], self.seed)
            if self.k == 0:  # the init checkpoint is every strategy's: the head starts here
                new_keys = frozenset(k for k in model.state_dict() if k.startswith("frozen_text_head."))
        self.prev_meta = load_previous(self.prev, model, model_fingerprint(self.p.model, self.prep), new_keys)
        self.prev_digest = ckpt.file_digest(self.prev / "model.safetensors")  # read by both fingerprints
        self.fp = self.fingerprint(self.prev_meta)
        self.first_fp = self.fingerprint(self.prev_meta, first_task_recipe(self.recipe)) if self.k == 0 else None
        model.to(self.device)
        strategy = self.build(model)
        self.carry_optimizer = None
        self.restore()
        self.resume.check()
        # After a kill between the last epoch and the save (or on adopting a shared first task), 0 epochs
        # remain: the end-of-task hooks still run.
        strategy.train_epochs = self.epochs - self.resume.done
        strategy.epoch_offset = self.resume.done  # the learning-rate schedule continues where it stopped
        strategy.train(self.experience(), eval_streams=[])
        return strategy

    def run(self, model: SLUModel) -> dict:
        t0 = time.time()
        strategy = self.train(model)
        seconds = time.time() - t0 + self.resume.previous_seconds
        from pipeline.continual.evaluation import evaluate_row

        row = evaluate_row(strategy.model, self.prep, self.eval_split, self.k, self.device,
                           self.p.train.eval_batch_size, decode=True, autocast=strategy.autocast)
        buffer_size = len(self.policy.buffer) if self.policy is not None else 0
        history = self.resume.history + self.progress.history
        row = {"strategy": self.name, "seed": self.seed, "task": self.k, "n_tasks": len(self.prep.manifest["tasks"]),
               "task_classes": self.prep.manifest["task_names"], **row, "buffer_size": buffer_size,
               "train_seconds": round(seconds, 2), "epochs": self.epochs,
               "final_loss": history[-1]["loss"] if history else None, "eval_split": self.eval_split,
               # train_seconds then leaves out the shared training, which evaluate adds from first's timing.json
               "shared_first_task": self.resume.adopted is not None}
        meta = {"strategy": self.name, "seed": self.seed, "task": self.k, "fingerprint": self.fp,
                "model_fingerprint": self.prev_meta["model_fingerprint"], "history": history, "seconds": round(seconds, 2),
                "buffer_size": buffer_size, "seen_classes": self.seen,
                "shared_first_task": str(self.resume.adopted) if self.resume.adopted else None}
        self.save(strategy, meta, row)
        return row


class ResumePlugin(SupervisedPlugin):
    """Epoch-level resume. after_training_epoch: reads strategy.model, .optimizer and the progress plugin's
    history; writes ``<out>.partial``. before_training_exp: loads the partial model, optimiser and RNG state
    into strategy.model / .optimizer (it runs after the other plugins copied their teachers from the
    previous task's weights)."""

    def __init__(self, run: TaskRun):
        super().__init__()
        self.run, self.done, self.history, self.previous_seconds, self.state = run, 0, [], 0.0, None
        self.adopted: Path | None = None  # the shared first-task folder adopted, if any

    def check(self) -> None:
        """Adopt the shared first task if it was trained for exactly this run's first task, else the
        partial state if it belongs to exactly this run; drop a partial state of another run."""
        part, shared = self.run.partial, self.run.shared
        if shared is not None and (shared / "state.json").is_file():
            meta = ckpt.read_meta(shared)
            if meta.get("fingerprint") == self.run.first_fp:
                self.adopt(shared, meta)
                self.adopted = shared
                shutil.rmtree(part, ignore_errors=True)
                print(f"{self.run.name} task 0: adopting the first task trained once by stage first ({shared})")
                return
            print(f"{self.run.name} task 0: {shared} was trained with other params, data or init weights; "
                  "training the first task here")
        if not (part / "state.json").is_file():
            return
        meta = ckpt.read_meta(part)
        if meta.get("fingerprint") != self.run.fp:
            shutil.rmtree(part, ignore_errors=True)
            return
        self.adopt(part, meta)
        print(f"resuming {self.run.name} task {self.run.k} after epoch {self.done}")

    def adopt(self, folder: Path, meta: dict) -> None:
        self.done, self.history, self.previous_seconds = meta["epochs_done"], meta["history"], meta["seconds"]
        self.state = (ckpt.read_tensors(folder, "model"), ckpt.read_pickled(folder, "optimizer"),
                      ckpt.read_pickled(folder, "rng"))
        self.run.progress.epoch = self.done

    def before_training_exp(self, strategy, **kwargs):
        if self.state is not None:
            model_sd, opt_sd, rng = self.state
            strategy.model.load_state_dict(model_sd)
            strategy.optimizer.load_state_dict(opt_sd)
            runtime.set_rng_state(rng)
        elif self.run.carry_optimizer is not None:
            strategy.optimizer.load_state_dict(self.run.carry_optimizer)

    def after_training_epoch(self, strategy, **kwargs):
        progress = self.run.progress
        meta = {"fingerprint": self.run.fp, "epochs_done": progress.epoch, "history": self.history + progress.history,
                "seconds": self.previous_seconds + sum(h["seconds"] for h in progress.history)}
        ckpt.write_folder(self.run.partial, {"model": strategy.model.state_dict()},
                          {"optimizer": strategy.optimizer.state_dict(), "rng": runtime.rng_state()}, meta)
