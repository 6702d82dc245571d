"""The CUDA code path: model and losses agree with the CPU, bf16 autocast trains, and the real stages
run two tasks on the GPU with checkpoints that a CPU-only machine can load. Skipped without a GPU (CI has
none); run it on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
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

PARAMS = {
    "seeds": [0],
    "split": {"preset": None, "n_tasks": 2, "class_order": "paper"},
    "model": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ff_mult": 2, "proj_dim": 16},
    "train": {"device": "auto", "first_task_epochs": 2, "epochs": 2, "batch_size": 16, "eval_batch_size": 64,
              "progress": False, "reset_optimizer": False},
    "cil": {"strategies": ["coconut+skd"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "task0"}]},
    "recipes": {"coconut+skd": {"replay": True, "buffer_size": 20, "contrastive": "nspt", "mm": True, "skd": True}},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from test_prepare import audio_fn, fsc_rows  # the FSC-layout fixture of the prepare tests (tones, no espeak)

    root = tmp_path_factory.mktemp("cuda")
    rows = fsc_rows(train_per_intent=lambda k: 4)
    fsc = make_fsc(root / "fsc", rows, audio=audio_fn([r[0] for r in rows]))
    params = dict(PARAMS, data={"source": "fsc", "root": str(fsc)})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert cli(["prepare", "--params", str(root / "params.yaml"), "--out", str(root / "prepared"), "--no-progress"]) == 0
    return root


def test_two_tasks_train_on_the_gpu_and_continue_on_a_cpu(workdir):
    common = ["--strategy", "coconut+skd", "--seed", "0", "--params", str(workdir / "params.yaml"),
              "--prepared", str(workdir / "prepared"), "--models", str(workdir / "models")]
    assert cli(["init", *common]) == 0
    for k in (0, 1):
        assert cli(["train", *common, "--task", str(k)]) == 0
    folder = workdir / "models" / "coconut+skd" / "s0"
    row = json.loads((folder / "task1" / "eval.json").read_text())
    assert len(row["acc_per_task"]) == 2 and row["buffer_size"] > 0 and row["wer_seen"] is not None
    hist = json.loads((folder / "task1" / "state.json").read_text())["history"]
    assert all(h["loss"] == h["loss"] for h in hist) and all(h.get("skd", 0) > 0 for h in hist)  # finite, S-KD ran
    # the GPU's checkpoint (optimiser state too) continues in a process that sees no CUDA device
    cpu_root = workdir / "cpu-models" / "coconut+skd" / "s0"
    shutil.copytree(folder / "task0", cpu_root / "task0")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-m", "pipeline", "train", *common[:-1], str(workdir / "cpu-models"), "--task", "1"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    cpu_row = json.loads((cpu_root / "task1" / "eval.json").read_text())
    assert len(cpu_row["acc_per_task"]) == 2 and cpu_row["buffer_size"] == row["buffer_size"]
