"""The CUDA code path: model and losses agree with the CPU, bf16 autocast trains, every kind of strategy
runs two tasks through the real stages on the GPU, and a GPU checkpoint continues on a CPU-only machine.
Skipped without a GPU (CI has none); run it on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_fsc
from pipeline.__main__ import main as cli
from pipeline.losses import MultimodalInfoNCELoss, RehearsalContrastiveLoss, SequenceKDLoss
from pipeline.models.slu import SLUModel
from test_model import make as make_small
from test_train import TINY, run_chain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def make(encoder: str, front: str) -> SLUModel:
    """test_model's small model, without dropout and in training mode (cuDNN's RNN backward needs it)."""
    return make_small(encoder, front=front, dropout=0.0).train()


def batch(lengths: list[int], t_max: int = 64):
    g = torch.Generator().manual_seed(1)
    feats = torch.zeros(len(lengths), t_max, 10)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, 10, generator=g)
    tokens = torch.tensor([[1, 5 + i % 6, 4, 11 + i % 19, 12, 2, 0, 0] for i in range(len(lengths))])
    return feats, torch.tensor(lengths), tokens


def loss_and_grads(model: SLUModel, feats, lens, tokens, autocast: bool):
    model.zero_grad()
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else torch.autocast("cuda", enabled=False)
    with ctx:
        out = model(feats, lens, tokens)
        loss = model.seq2seq_loss(out.token_logits, tokens, 1.0)
    loss.backward()
    return loss.detach().cpu(), {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("encoder, front", [("gru", "stack"), ("gru", "conv"), ("transformer", "conv"), ("conv", "stack")])
def test_fp32_forward_and_gradients_match_the_cpu(encoder, front):
    feats, lens, tokens = batch([40, 64, 23, 57])
    cpu = make(encoder, front)
    gpu = make(encoder, front).to(CUDA)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare true fp32
    loss_c, grads_c = loss_and_grads(cpu, feats, lens, tokens, autocast=False)
    loss_g, grads_g = loss_and_grads(gpu, feats.to(CUDA), lens.to(CUDA), tokens.to(CUDA), autocast=False)
    assert loss_g.item() == pytest.approx(loss_c.item(), rel=1e-5)
    assert grads_c.keys() == grads_g.keys()
    for name, g in grads_c.items():
        torch.testing.assert_close(grads_g[name], g, rtol=1e-3, atol=1e-5, msg=name)
    allowed = torch.arange(6)
    cls_c, seq_c = cpu.eval().predict(feats, lens, allowed)
    cls_g, seq_g = gpu.eval().predict(feats.to(CUDA), lens.to(CUDA), allowed.to(CUDA))
    assert cls_g.cpu().tolist() == cls_c.tolist()
    assert seq_g.cpu().tolist() == seq_c.tolist()


def test_bf16_autocast_step_is_close_to_fp32_and_learns():
    feats, lens, tokens = (t.to(CUDA) for t in batch([40, 64, 23, 57, 33, 61]))
    model = make("gru", "stack").to(CUDA)
    loss32, grads32 = loss_and_grads(model, feats, lens, tokens, autocast=False)
    loss16, grads16 = loss_and_grads(model, feats, lens, tokens, autocast=True)
    assert torch.isfinite(loss16) and loss16.item() == pytest.approx(loss32.item(), rel=0.05)
    for name, g in grads16.items():
        assert torch.isfinite(g).all(), name
    cos = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in grads16.values()]),
                                                torch.cat([g.flatten() for g in grads32.values()]), dim=0)
    assert cos > 0.98  # bf16 rounding, not a different gradient
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(feats, lens, tokens)
            loss = model.seq2seq_loss(out.token_logits, tokens, 1.0)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first  # it fits six utterances


def test_losses_match_the_cpu():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 4, 4, 5, 5])
    mask = torch.tensor([True] * 6 + [False] * 6)
    logits, targets = torch.randn(12, 7, 30, generator=g), torch.randint(3, 30, (12, 7), generator=g)
    cases = [
        (RehearsalContrastiveLoss("nspt", 0.1), (student, teacher, labels, mask)),
        (RehearsalContrastiveLoss("ntpt", 0.1), (student, teacher, labels, mask)),
        (RehearsalContrastiveLoss("supcon", 0.1), (student, None, labels, mask)),
        (MultimodalInfoNCELoss(0.1), (student, teacher, ~mask, labels)),
        (SequenceKDLoss(0), (logits, targets, mask)),
    ]
    for loss, args in cases:
        on_cpu = loss(*args)
        on_gpu = loss(*(a.to(CUDA) if isinstance(a, torch.Tensor) else a for a in args))
        assert on_gpu.device.type == "cuda"
        assert on_gpu.item() == pytest.approx(on_cpu.item(), rel=1e-5), type(loss).__name__


# ----------------------------------------------------------------------------- the stages on the GPU

#: test_train's tiny params, on the GPU (optimiser state carried over, so that the CPU continuation loads it)
PARAMS = dict(TINY, train=dict(TINY["train"], device="cuda", reset_optimizer=False))
#: every kind of strategy (TINY's recipes): baselines, rehearsal, regularisers, S-KD, COCONUT, joint
KINDS = ["finetune", "replay", "herding", "lwf", "ewc", "skd", "coconut", "coconut+skd", "joint"]
#: loss terms a strategy's task-1 history must show (finite, > 0)
TERMS = {"lwf": ["lwf"], "ewc": ["ewc"], "skd": ["skd"], "coconut": ["contrastive", "mm"],
         "coconut+skd": ["contrastive", "mm", "skd"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """test_train's layout (params.yaml, data/prepared) on an FSC-layout corpus of tones (no espeak needed);
    params-auto.yaml: the same with ``train.device: auto``, for a process that sees no GPU."""
    from test_prepare import audio_fn, fsc_rows  # the FSC-layout fixture of the prepare tests

    root = tmp_path_factory.mktemp("cuda")
    rows = fsc_rows(train_per_intent=lambda k: 4)
    fsc = make_fsc(root / "fsc", rows, audio=audio_fn([r[0] for r in rows]))
    for name, device in (("params.yaml", "cuda"), ("params-auto.yaml", "auto")):
        params = dict(PARAMS, data={"source": "fsc", "root": str(fsc)}, train=dict(PARAMS["train"], device=device))
        (root / name).write_text(yaml.safe_dump(params))
    out = root / "data" / "prepared"
    assert cli(["prepare", "--params", str(root / "params.yaml"), "--out", str(out), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize("strategy", KINDS)
def test_strategy_trains_two_tasks_on_the_gpu(workdir, strategy):
    torch.cuda.reset_peak_memory_stats()
    rows = run_chain(workdir, strategy, "models-" + strategy)
    assert torch.cuda.max_memory_allocated() > 0  # it ran on the GPU
    folder = workdir / ("models-" + strategy) / strategy / "s0"
    for k, row in enumerate(rows):
        assert len(row["acc_per_task"]) == k + 1
        assert all(0.0 <= a <= 1.0 for a in row["acc_per_task"]) and 0.0 <= row["acc_seen"] <= 1.0
        hist = json.loads((folder / f"task{k}" / "state.json").read_text())["history"]
        assert hist and all(math.isfinite(v) for h in hist for v in h.values()), hist
    for term in TERMS.get(strategy, []):
        assert all(h.get(term, 0) > 0 for h in hist), (term, hist)  # task 1: the term ran every epoch
    if strategy == "ewc":  # the Fisher pass (a backward through cuDNN's GRU) ran at the end of each task
        from safetensors.torch import load_file

        for k in (0, 1):
            fisher = {n: t for n, t in load_file(str(folder / f"task{k}" / "ewc.safetensors")).items() if n.startswith("fisher.")}
            assert fisher and all(torch.isfinite(t).all() for t in fisher.values())
            assert sum(float(t.sum()) for t in fisher.values()) > 0


def test_two_tasks_train_on_the_gpu_and_continue_on_a_cpu(workdir):
    rows = run_chain(workdir, "coconut+skd", "models")
    folder = workdir / "models" / "coconut+skd" / "s0"
    row = rows[1]
    assert len(row["acc_per_task"]) == 2 and row["buffer_size"] > 0 and row["wer_seen"] is not None
    hist = json.loads((folder / "task1" / "state.json").read_text())["history"]
    assert all(h["loss"] == h["loss"] for h in hist) and all(h.get("skd", 0) > 0 for h in hist)  # finite, S-KD ran
    # the GPU's checkpoint (optimiser state too) continues in a process that sees no CUDA device
    cpu_root = workdir / "cpu-models" / "coconut+skd" / "s0"
    shutil.copytree(folder / "task0", cpu_root / "task0")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-m", "pipeline", "train", "--strategy", "coconut+skd", "--seed", "0",
                          "--params", str(workdir / "params-auto.yaml"), "--prepared", str(workdir / "data" / "prepared"),
                          "--models", str(workdir / "cpu-models"), "--task", "1"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    cpu_row = json.loads((cpu_root / "task1" / "eval.json").read_text())
    assert len(cpu_row["acc_per_task"]) == 2 and cpu_row["buffer_size"] == row["buffer_size"]
