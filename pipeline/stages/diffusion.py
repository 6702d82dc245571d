"""Stage ``diffusion``: the class-conditional diffusion generator (diffusers UNet2DModel, DDPM training, EMA,
DDIM sampling with classifier-free guidance), trained on a prepare-vision corpus, and its measured quality.

Reads the params sections ``diffusion`` and ``towers`` (the frozen image tower of the Fréchet distance) and
``--vision``/<diffusion.source>/{train,valid,test}. Trains through the plain trainer into ``<out>.run`` (a
killed run resumes after its last finished epoch, same bytes), then writes ``--out`` all at once::

    model.safetensors   the Generator's state_dict (tensors only): unet.* (last weights), ema.* (their EMA,
                        what every sampling method uses), ema_updates
    config.json         the model section, the classes, the source, the steps trained
    history.jsonl       per epoch: train loss, valid loss (fixed draws), lr
    samples.png         grid_per_class samples per class (one row per class; EMA, DDIM, guidance)

and, outside it (wall times live there), ``--metrics`` (class consistency, the Fréchet distance in
EfficientNet-Lite0 features and its real-vs-real floor, train seconds, steps/s) and ``--grids`` (one PNG per
class). Same params and seed, same bytes in ``--out`` on the CPU.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

OWNER = "diffusion"


def add_arguments(parser) -> None:
    parser.add_argument("--vision", default="data/vision", help="prepare-vision's folder (default: data/vision)")
    parser.add_argument("--out", default="models/diffusion", help="output folder (default: models/diffusion)")
    parser.add_argument("--metrics", default="reports/diffusion/metrics.json",
                        help="quality and timings (default: reports/diffusion/metrics.json; outside --out)")
    parser.add_argument("--grids", default="reports/diffusion/samples",
                        help="one sample grid PNG per class (default: reports/diffusion/samples)")


def main(args) -> None:
    import torch

    from pipeline.core.params import read_yaml, section
    from pipeline.data.vision.imageset import read_corpus
    from pipeline.diffusion import train as T
    from pipeline.diffusion.params import load_diffusion_params
    from pipeline.models.params import TowersConfig

    t0 = time.time()
    params = load_diffusion_params(args.params)
    towers = section(read_yaml(args.params), TowersConfig, "towers")
    corpus = read_corpus(Path(args.vision), params.source, "diffusion.source")
    train, valid, classes, digest = T.datasets(corpus, params)
    generator = T.build(params, len(classes))
    out = Path(args.out)
    run = out.with_name(out.name + ".run")
    result, trainer = T.fit(generator, params, train, valid, run, T.fingerprint(params, digest, len(classes)))
    steps = int(generator.ema_updates)
    train_seconds = sum(row["seconds"] for row in result.history)
    t1 = time.time()
    metrics, grid = measure(generator, params, towers, corpus, train, classes, trainer.device)
    write_output(out, run, params, classes, steps, result.history, grid)
    metrics["timing"] = {"train_seconds": round(train_seconds, 1), "steps": steps,
                         "steps_per_second": round(steps / max(train_seconds, 1e-9), 3),
                         "images_per_second": round(steps * params.train.batch_size / max(train_seconds, 1e-9), 1),
                         "quality_seconds": round(time.time() - t1, 1), "stage_seconds": round(time.time() - t0, 1),
                         "threads": torch.get_num_threads()}
    write_metrics(Path(args.metrics), Path(args.grids), metrics, grid, classes)
    q = metrics["quality"]
    print(f"diffusion: {steps} steps in {train_seconds:.0f} s; class consistency {100 * q['class_consistency']:.1f} % "
          f"(classifier on real test {100 * q['classifier_test_accuracy']:.1f} %); Fréchet distance in "
          f"EfficientNet-Lite0 features {q['frechet_distance']:.2f} (real-vs-real floor {q['frechet_floor']:.2f}) "
          f"[{time.time() - t0:.0f} s]")


def measure(generator, params, towers, corpus, train, classes, device) -> tuple[dict, "object"]:
    """Class consistency, the Fréchet distance and its floor, and the per-class grids (uint8 per class)."""
    import numpy as np
    import torch

    from pipeline.diffusion import quality as Q
    from pipeline.diffusion.train import to_uint8, to_unit
    from pipeline.models.towers_image import ImageTower

    q, m = params.quality, params.model
    k, size = len(classes), m.unet.image_size
    generator.eval()
    images, labels = Q.sample_per_class(
        lambda y, g: generator.sample(y.to(device), steps=m.sampling_steps, guidance=m.guidance, generator=g),
        k, max(q.per_class, q.grid_per_class), q.batch_size, q.seed)
    per = max(q.per_class, q.grid_per_class)
    keep = torch.cat([torch.arange(c * per, c * per + q.per_class) for c in range(k)])
    grid = to_uint8(torch.cat([images[c * per : c * per + q.grid_per_class] for c in range(k)]))
    images, labels = images[keep], labels[keep]

    x_train, y_train = train.tensors
    classifier = Q.train_classifier(x_train, y_train, k, epochs=q.classifier_epochs, batch_size=q.classifier_batch,
                                    lr=q.classifier_lr, width=q.classifier_width, seed=q.seed)
    test = corpus["test"]
    x_test = to_unit(test.images, size)
    y_test = torch.as_tensor(test.labels, dtype=torch.long)
    test_acc = float((Q.predict(classifier, x_test) == y_test).double().mean())
    consistency = Q.class_consistency(Q.predict(classifier, images), labels, k)

    # the Fréchet distance: class-interleaved generated images vs a seeded subset of the real test images (both at
    # the generator's size), and the floor: a real training subset of the same size vs that test subset
    n = min(q.frechet_n, len(labels), len(test.labels), len(y_train))
    interleaved = torch.arange(len(labels)).view(k, q.per_class).t().flatten()[:n]
    rng = np.random.default_rng(q.seed)
    test_idx = np.sort(rng.choice(len(test.labels), n, replace=False))
    train_idx = np.sort(rng.choice(len(y_train), n, replace=False))
    tower = ImageTower(towers.image, device)
    bs = towers.image.batch_size
    f_gen = Q.tower_features(tower, to_uint8(images[interleaved]), bs)
    f_test = Q.tower_features(tower, to_uint8(x_test[test_idx]), bs)
    f_train = Q.tower_features(tower, to_uint8(x_train[train_idx]), bs)
    quality = {"class_consistency": consistency["accuracy"],
               "class_consistency_per_class": dict(zip(classes, consistency["per_class"])),
               "classifier_test_accuracy": test_acc,
               "frechet_distance": Q.frechet_distance(f_gen, f_test),
               "frechet_floor": Q.frechet_distance(f_train, f_test),
               "frechet_features": f"{towers.image.model} pooled ({towers.image.dim}-d, {towers.image.input_size} px)",
               "frechet_n": n, "samples_per_class": q.per_class, "sampling_steps": m.sampling_steps,
               "guidance": m.guidance}
    return {"quality": quality}, grid


def write_output(out: Path, run: Path, params, classes, steps: int, history: list, grid) -> None:
    from pipeline.core.trainer import publish
    from pipeline.diffusion import quality as Q

    config = {"source": params.source, "classes": classes, "model": asdict(params.model), "seed": params.seed,
              "steps": steps, "null_class": len(classes)}
    with publish(run, out, OWNER, history) as work:
        (work / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        Q.write_png(work / "samples.png", Q.grid(grid, len(classes)), scale=2)


def write_metrics(path: Path, grids: Path, metrics: dict, grid, classes) -> None:
    from pipeline.diffusion import quality as Q

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    if grids.exists():
        shutil.rmtree(grids)
    grids.mkdir(parents=True)
    per = len(grid) // len(classes)
    for c, name in enumerate(classes):
        Q.write_png(grids / f"{name}.png", Q.grid(grid[c * per : (c + 1) * per], 1), scale=4)
