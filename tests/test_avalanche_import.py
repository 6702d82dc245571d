"""pipeline.continual.avalanche_import: the CIL stages load Avalanche without its unused heavy imports, the
deferred modules are real when used later in the process, a deferred Avalanche feature fails with a clear
message, and nothing of it leaks into a process that merely imports the pipeline's modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

DEFERRED = ["wandb", "torchmetrics", "torchvision.models", "torchvision.ops", "avalanche.benchmarks.classic",
            "matplotlib", "qpsolvers", "tensorboard", "torch.utils.tensorboard", "GPUtil"]

PROBE = """
import json, sys
from pipeline.continual.avalanche_import import fast_import
fast_import()
import pipeline.continual.run, pipeline.continual.plugins, pipeline.continual.template
loaded = [m for m in {deferred!r} if m in sys.modules]
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.storage_policy import ClassBalancedBuffer
from avalanche.evaluation.metric_results import MetricType
try:
    from avalanche.evaluation.metrics.gpu_usage import GPUtil
    GPUtil.getGPUs()
    error = None
except RuntimeError as exc:
    error = str(exc)
import matplotlib.figure
print(json.dumps({{"loaded": loaded, "error": error, "real_figure": hasattr(matplotlib.figure.Figure, "savefig")}}))
"""


def probe(env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    res = subprocess.run([sys.executable, "-c", PROBE.format(deferred=DEFERRED)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_avalanche_is_imported_without_the_deferred_modules():
    out = probe({"PIPELINE_FULL_AVALANCHE_IMPORT": "0"})
    assert out["loaded"] == []
    assert out["error"] is not None and "PIPELINE_FULL_AVALANCHE_IMPORT=1" in out["error"] and "GPUtil" in out["error"]
    assert out["real_figure"]  # a later import gets the real module, not the placeholder


def test_the_full_import_can_be_requested():
    out = probe({"PIPELINE_FULL_AVALANCHE_IMPORT": "1"})
    assert {"matplotlib", "avalanche.benchmarks.classic", "GPUtil"} <= set(out["loaded"])
    assert out["error"] is None


REAL = """
import importlib, json, pkgutil, sys
import pipeline
{before}
for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
    if info.name != "pipeline.__main__":
        importlib.import_module(info.name)
import torch, torchvision
net = torchvision.models.resnet18()
from torchvision.models import resnet18
import torchvision.ops, matplotlib.pyplot, torch.utils.tensorboard
print(json.dumps({{
    "resnet": type(net).__module__ + "." + type(net).__name__,
    "params": sum(p.numel() for p in net.parameters()),
    "same": resnet18 is torchvision.models.resnet18,
    "nms": torchvision.ops.nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5).tolist(),
    "figure": hasattr(matplotlib.pyplot.figure(), "savefig"),
    "writer": torch.utils.tensorboard.SummaryWriter.__module__,
    "dynamo_cache": hasattr(torch.optim.Optimizer.zero_grad.__wrapped__, "__dynamo_disable"),
}}))
"""


def real_modules(before: str = "") -> dict:
    res = subprocess.run([sys.executable, "-c", REAL.format(before=before)], capture_output=True, text=True,
                         env=dict(os.environ, MPLBACKEND="Agg"))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_importing_every_pipeline_module_leaves_torchvision_real():
    out = real_modules()
    assert out["resnet"] == "torchvision.models.resnet.ResNet" and out["params"] == 11_689_512
    assert out["same"] and out["nms"] == [0] and out["figure"]
    assert out["writer"] == "torch.utils.tensorboard.writer"
    assert out["dynamo_cache"] is False  # the optimiser shortcut is opt-in (stage entry points)


def test_after_the_stage_shortcut_the_deferred_modules_are_real_again():
    out = real_modules("from pipeline.continual.avalanche_import import fast_import\nfast_import()")
    assert out["resnet"] == "torchvision.models.resnet.ResNet" and out["params"] == 11_689_512
    assert out["same"] and out["nms"] == [0] and out["figure"]
    assert out["writer"] == "torch.utils.tensorboard.writer"
