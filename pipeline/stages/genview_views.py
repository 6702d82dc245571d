"""Stage ``genview-views``: GenView's generated views, made once per training image.

Reads the params sections ``genview`` (``data``: the corpus and how many training images; ``views``) and
``towers`` (the frozen image tower, at ``genview.views.tower_size``), the corpus ``--vision``/<source>/train and
the trained generator ``--generator`` (the diffusion stage's folder). Writes ``--out`` (default
``data/genview``) all at once (:mod:`pipeline.genview.views` says how each tensor is made)::

    views.safetensors  fixed uint8 [N, S, S, 3]       SDEdit view at views.fixed_strength (null class)
                       adaptive uint8 [N, S, S, 3]    SDEdit view at the image's bin strength, same noise
                       ratio float32 [N]              the real image's foreground ratio (the fitted PCA)
                       strength float32 [N]           its bin's noise level / 1000
                       fg_real, fg_adaptive float32 [N, h, w]   soft foreground maps (min-max projection)
                       tokens_real, tokens_adaptive float16 [N, k, h, w]   tokens on the top k = views.components
                                                      principal components
                       index int64 [N]                the training-split rows (the first n_train)
    views.json         source, n, the views params, the tower, the token grid, the PCA's first-component
                       variance share, the counts per noise bin, the generator's config.json digest and source

S is the generator's image size (a corpus of another size is resized, recorded in views.json). Same params,
generator and corpus: the same bytes (on the CPU). Wall times per phase go to ``--timing`` when given.

Measured (2026-12-04, shapes, the first 2000 training images, default views params, a throwaway generator
trained 1 epoch = 250 steps, 2 CPU threads shared with other jobs): tower on the real images 155 s (58 s for
the same 2000 views later, less loaded), PCA 25 s, SDEdit fixed 64 s, SDEdit adaptive 81 s (more, smaller
per-strength batches), 387 s in all (all 16000 images: about 8x, ~40-50 min here). Images per noise level
0/100/200/300/400: 240/737/975/48/0. The estimated ratio follows the true mask share (masks' pixel mean,
10.4 % on average) only weakly: Spearman 0.21 at tower_size 128 (4x4 tokens); 0.51 at 224 (7x7 tokens, tower
152 s for 2000 images, bins 2/1018/970/10/0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

OWNER = "genview-views"


def add_arguments(parser) -> None:
    parser.add_argument("--vision", default="data/vision", help="prepare-vision's folder (default: data/vision)")
    parser.add_argument("--generator", default="models/diffusion",
                        help="the diffusion stage's trained generator (default: models/diffusion)")
    parser.add_argument("--out", default="data/genview", help="output folder (default: data/genview)")
    parser.add_argument("--timing", default=None, help="wall seconds per phase as JSON (optional; outside --out)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main(args) -> None:
    from dataclasses import replace

    from safetensors.torch import save_file

    from pipeline.core.atomic import atomic_dir, check_replaceable
    from pipeline.core.params import read_yaml, require, section
    from pipeline.core.runtime import setup, write_timing
    from pipeline.data.vision.imageset import read_corpus
    from pipeline.diffusion.io import load_generator
    from pipeline.genview.params import GenViewParams
    from pipeline.genview.views import make_views
    from pipeline.models.params import TowersConfig
    from pipeline.models.towers_image import ImageTower

    t0 = time.time()
    raw = read_yaml(args.params)
    params, towers = section(raw, GenViewParams, "genview"), section(raw, TowersConfig, "towers")
    cfg = params.views
    require(cfg.components <= towers.image.dim, "genview.views.components",
            f"{cfg.components}: at most the tower's {towers.image.dim} channels")
    out = Path(args.out)
    check_replaceable(out, OWNER)  # before any work: a mistyped --out fails at once
    device = setup(towers.device, seed=cfg.seed, threads=towers.threads, key="towers.device")
    generator, gen_config = load_generator(args.generator, device)
    require(cfg.steps <= generator.cfg.train_timesteps, "genview.views.steps",
            f"{cfg.steps}: more than the generator's {generator.cfg.train_timesteps} training timesteps")
    train = read_corpus(Path(args.vision), params.data.source, "genview.data.source", ("train",))["train"]
    n = params.data.rows(len(train))
    tower_cfg = replace(towers.image, input_size=cfg.tower_size, crop_pct=1.0)
    tower = ImageTower(tower_cfg, device)
    load_seconds = time.time() - t0

    views = make_views(train.images[:n], generator, tower, cfg, tower_cfg.batch_size, progress=not args.no_progress)

    t = time.time()
    info = {"source": params.data.source, "n_train": params.data.n_train, "split_size": len(train),
            **views.info,
            "views": {"steps": cfg.steps, "fixed_strength": cfg.fixed_strength, "edges": cfg.edges,
                      "levels": cfg.levels, "share": cfg.share, "components": cfg.components, "seed": cfg.seed,
                      "conditioning": "null class (no labels)", "noise": "per image: SeedSequence([seed, row])"},
            "tower": {"model": tower_cfg.model, "size": cfg.tower_size, "fingerprint": tower.fingerprint,
                      "dim": tower_cfg.dim},
            "generator": {"config_digest": gen_config["digest"], "source": gen_config.get("source"),
                          "steps_trained": gen_config.get("steps"), "image_size": generator.cfg.unet.image_size,
                          "same_source": gen_config.get("source") == params.data.source}}
    with atomic_dir(out, owner=OWNER) as work:
        save_file(views.tensors, str(work / "views.safetensors"))
        (work / "views.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    seconds = {"load": load_seconds, **views.seconds, "write": time.time() - t, "stage": time.time() - t0}
    write_timing(args.timing, seconds)
    bins = ", ".join(f"{level}: {c}" for level, c in zip(cfg.levels, views.info["bin_counts"]))
    note = "" if info["generator"]["same_source"] else f" (generator trained on {gen_config.get('source')!r})"
    resized = f", resized {views.info['corpus_size'][0]} -> {views.info['image_size']} px" if views.info["resized"] else ""
    print(f"genview-views: {n} {params.data.source} images{resized}{note}; images per noise level {{{bins}}}; "
          f"mean foreground ratio {views.info['ratio_mean']:.3f} [{time.time() - t0:.0f} s]")
