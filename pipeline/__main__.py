"""Run one stage of the pipeline: python -m pipeline <stage> [options] (dvc.yaml calls these).

Each stage module in :mod:`pipeline.stages` provides ``add_arguments(parser)`` and ``main(args)``.
User errors (:class:`pipeline.errors.UserError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import UserError

# stage name -> (module, one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "prepare": ("pipeline.stages.prepare", "build or read the corpus, compute features, write the task split"),
    "init": ("pipeline.stages.init", "write the untrained model checkpoint a strategy starts from"),
    "first": ("pipeline.stages.first", "train the first task once per group of strategies that train it alike"),
    "train": ("pipeline.stages.train", "train one strategy on one task, resuming from the previous task's checkpoint"),
    "evaluate": ("pipeline.stages.evaluate", "accuracy matrices, forgetting, BWT, figures and the report"),
    "compare": ("pipeline.stages.compare", "one comparison table and figure across DVC experiments"),
    "prepare-vision": ("pipeline.stages.prepare_vision",
                       "render or read the image corpora: shapes with captions and masks, coloured digits, real datasets"),
    "embed": ("pipeline.stages.embed", "embeddings of the frozen text and image towers, computed once for the later stages"),
    "cwcl-speech": ("pipeline.stages.cwcl_speech",
                    "a speech encoder aligned to the frozen text tower (CL, CWCL or supervised); zero-shot intents, keywords"),
    "cwcl-image": ("pipeline.stages.cwcl_image",
                   "a caption encoder aligned to the frozen image tower (CL, CWCL or supervised); zero-shot combinations"),
    "evaluate-cwcl": ("pipeline.stages.evaluate_cwcl",
                      "CL vs CWCL over seeds: zero-shot metrics, paired differences, figures and the report"),
    "prepare-m3col": ("pipeline.stages.prepare_m3col",
                      "the M3CoL fusion tasks' data: degraded images, noisy captions and transcripts, frozen embeddings"),
    "m3col-image": ("pipeline.stages.m3col_image",
                    "one M3CoL variant (unimodal, concat, aux, clip, m3co, m3col) on the image + caption task"),
    "m3col-speech": ("pipeline.stages.m3col_speech",
                     "one M3CoL variant (unimodal, concat, aux, clip, m3co, m3col) on the speech + transcript task"),
    "evaluate-m3col": ("pipeline.stages.evaluate_m3col",
                       "M3CoL against its baselines over seeds: accuracies, paired differences, figures and the report"),
    "diffusion": ("pipeline.stages.diffusion",
                  "the class-conditional diffusion generator (diffusers): training, samples, class consistency, Fréchet distance"),
    "genview": ("pipeline.stages.genview",
                "one GenView SSL variant (simclr, fixed, adaptive, genview): training, linear probes and k-NN"),
    "genview-views": ("pipeline.stages.genview_views",
                      "GenView's generated views once per training image: foreground ratios, SDEdit views, foreground maps"),
    "evaluate-genview": ("pipeline.stages.evaluate_genview",
                         "GenView's variants against SimCLR over seeds, the generator's quality, the foreground check: the report"),
    "cdvg-data": ("pipeline.stages.cdvg_data",
                  "the debiasing track's biased sets per rho (coloured digits, Colored MNIST or shapes) and the oracle split"),
    "cdvg-oracles": ("pipeline.stages.cdvg_oracles",
                     "the content (greyscale class) and bias (colour) oracles, trained on the held-out unbiased split"),
    "cdvg-generator": ("pipeline.stages.cdvg_generator",
                       "the bias-transformation generator: class-conditional diffusion on one rho's biased training set"),
    "cdvg-views": ("pipeline.stages.cdvg_views",
                   "one bias-transformed view per training image, and the oracle rates of the translation recipes"),
    "cdvg": ("pipeline.stages.cdvg", "one debiasing run (erm, lff, cdvg, cdvg_lff) on one rho and seed"),
    "evaluate-cdvg": ("pipeline.stages.evaluate_cdvg",
                      "ERM, LfF, CDvG and CDvG + LfF over rho and seeds, the translation oracles: the report"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The CLI; only the ``selected`` stage's module is imported (a stage process imports what it runs and
    nothing else, which is what dvc.yaml's deps of that stage list)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module, help_text) in STAGES.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if name != selected:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_arguments(sp)
        sp.set_defaults(_main=mod.main, _fast_exit=getattr(mod, "FAST_EXIT", False))
    return parser


def quiet_known_warnings() -> None:
    """Silence third-party warnings that say nothing about the user's run (import-time notices of
    optional solvers, Avalanche's deprecation notices for APIs we call as documented)."""
    import warnings

    warnings.filterwarnings("ignore", message="no QP solver found")
    warnings.filterwarnings("ignore", message="No loggers specified")
    warnings.filterwarnings("ignore", message="Call to deprecated function update")


def log_timing(argv: list[str], seconds: float, code: int) -> None:
    """With PIPELINE_TIMING_LOG=<file>, append one JSON line per stage run (bench/repro.py, bench/stages.py):
    wall seconds, peak host memory and, when the stage used CUDA, peak GPU memory."""
    import json
    import os
    import resource

    path = os.environ.get("PIPELINE_TIMING_LOG")
    if path:
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row = {"argv": argv, "seconds": round(seconds, 3), "peak_rss_mb": round(rss_mb, 1), "exit": code}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def log_imports(argv: list[str]) -> None:
    """With PIPELINE_IMPORTS_LOG=<file>, append one JSON line per stage run: the project's source files the
    stage process has imported (tests/test_dvc.py checks that dvc.yaml's deps of each stage cover them)."""
    import json
    import os

    path = os.environ.get("PIPELINE_IMPORTS_LOG")
    if path:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        files = sorted(os.path.relpath(m.__file__, root) for name, m in list(sys.modules.items())
                       if (name == "pipeline" or name.startswith("pipeline.")) and getattr(m, "__file__", None))
        with open(path, "a") as f:
            f.write(json.dumps({"stage": argv[0] if argv else None, "files": files}) + "\n")


def main(argv: list[str] | None = None) -> int:
    import time

    t0 = time.time()
    argv = sys.argv[1:] if argv is None else argv
    code = run(argv)
    log_timing(argv, time.time() - t0, code)
    log_imports(argv)
    return code


def run(argv: list[str]) -> int:
    quiet_known_warnings()
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    if not hasattr(args, "_main"):
        print(f"error: stage {args.stage!r} is not available in this version", file=sys.stderr)
        return 2
    global _FAST_EXIT
    _FAST_EXIT = args._fast_exit
    try:
        args._main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


#: set by run() from the stage module's ``FAST_EXIT`` (opt-in: the stage closes every file it writes)
_FAST_EXIT = False


def exit_now(code: int) -> None:
    """End the stage process without the interpreter's teardown of torch and Avalanche (about a second
    per process, and a default run starts dozens), for stages that opted in; otherwise a normal exit."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    if _FAST_EXIT:
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_now(main())
