"""pipeline.continual.avalanche_import: Avalanche loads without its unused heavy imports, the deferred
modules are real when imported later, and a deferred Avalanche feature fails with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

DEFERRED = ["wandb", "torchmetrics", "torchvision.models", "torchvision.ops", "avalanche.benchmarks.classic",
            "matplotlib", "qpsolvers", "tensorboard", "torch.utils.tensorboard", "GPUtil"]

PROBE = """
import json, sys
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
