"""pipeline.continual.optim.AdamW: torch's AdamW bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import torch

from pipeline.continual.optim import AdamW


def train(opt_cls, model, steps: int = 6):
    opt = opt_cls(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 8, generator=g), torch.randn(16, 4, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return opt


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def test_same_weights_and_state_as_torch_adamw():
    ours, ref = net(), net()
    o, r = train(AdamW, ours), train(torch.optim.AdamW, ref)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    so, sr = o.state_dict(), r.state_dict()
    assert so["param_groups"] == sr["param_groups"]
    for k in sr["state"]:
        for name, value in sr["state"][k].items():
            assert torch.equal(so["state"][k][name], value), name
    # checkpoints interchange: torch's AdamW continues from ours and gives the same next step
    cont_ours, cont_ref = copy.deepcopy(ours), copy.deepcopy(ours)
    a = AdamW(cont_ours.parameters(), lr=3e-3, weight_decay=0.01)
    b = torch.optim.AdamW(cont_ref.parameters(), lr=3e-3, weight_decay=0.01)
    a.load_state_dict(copy.deepcopy(so))  # (load_state_dict keeps the given tensors: one copy each)
    b.load_state_dict(copy.deepcopy(so))
    for opt, model in ((a, cont_ours), (b, cont_ref)):
        opt.zero_grad()
        model(torch.ones(2, 8)).sum().backward()
        opt.step()
    for p, q in zip(cont_ours.parameters(), cont_ref.parameters()):
        assert torch.equal(p, q)


def test_training_does_not_import_dynamo():
    code = (
        "import sys, torch\n"
        "from pipeline.continual import optim\n"
        "optim.enable_fast_path()\n"
        "m = torch.nn.Linear(4, 2)\n"
        "o = optim.adamw(m.parameters(), lr=1e-3)\n"
        "assert type(o) is optim.AdamW\n"
        "for _ in range(3):\n"
        "    o.zero_grad(); m(torch.randn(3, 4)).sum().backward(); o.step()\n"
        "o.load_state_dict(o.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_the_fast_path_is_opt_in():
    """Importing the module changes nothing process-wide: torch's optimisers keep their dynamo wrappers and
    adamw() is torch's own class until a stage entry point opts in."""
    code = (
        "import torch\n"
        "from pipeline.continual import optim\n"
        "import pipeline.continual.run\n"
        "m = torch.nn.Linear(4, 2)\n"
        "print(type(optim.adamw(m.parameters(), lr=1e-3)) is torch.optim.AdamW,\n"
        "      hasattr(torch.optim.Optimizer.zero_grad.__wrapped__, '__dynamo_disable'))\n"
        "optim.enable_fast_path()\n"
        "print(type(optim.adamw(m.parameters(), lr=1e-3)) is optim.AdamW,\n"
        "      hasattr(torch.optim.Optimizer.zero_grad.__wrapped__, '__dynamo_disable'))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False", "True", "True"]
