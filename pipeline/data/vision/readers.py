"""Readers of the real image datasets users have on disk; nothing is ever downloaded.

``read_real(kind, root, **options)`` returns ``{split: ImageSet}`` with splits among train, valid, test
(in that order; an empty split is left out). Images are uint8 [N, H, W, 3] RGB.

- ``mnist``: ``root`` holds ``MNIST/raw/`` (or is ``MNIST/raw``); options ``valid_fraction`` (0.1), ``seed`` (0).
- ``cifar10``: ``root`` holds ``cifar-10-batches-py/`` (or is it); ``valid_fraction``, ``seed``.
- ``cifar100``: ``root`` holds ``cifar-100-python/`` (or is it); ``valid_fraction``, ``seed``,
  ``labels`` (``fine``, the default, 100 classes; ``coarse``, 20).
- ``imagefolder``: ``root/<split>/<class>/<file>`` or ``root/<class>/<file>``; ``image_size`` (None: keep,
  all sizes must agree; an int side or [height, width]: resize), ``valid_fraction``, ``test_fraction`` (0.1),
  ``seed``.
- ``jsonl``: ``root`` is the ``.jsonl`` caption file; ``images`` (folder the paths are relative to, default
  the file's folder), ``image_size``, ``valid_fraction``, ``test_fraction``, ``seed``.
- ``coco``: ``root`` is a ``captions_*.json`` or the COCO folder; ``images``, ``split``, ``year`` ("2017"),
  ``image_size``, ``valid_fraction``, ``test_fraction``, ``seed``.
- ``n24news``: ``root`` holds ``news/nytimes_{train,dev,test}.json`` and ``imgs/``; ``text_field`` (the
  caption: ``headline``, ``caption``, ``abstract`` (the default) or ``body``), ``image_size``, ``seed`` (unused).
- ``food101``: UPMC-Food-101, ``root`` holds ``images/{train,test}/`` and ``texts/{train,test}_titles.csv``;
  ``image_size``, ``valid_fraction``, ``seed``, ``skip_missing`` (False: a row whose image is missing is an
  error; True: left out, counted in ``extra["skipped"]``).

Formats, exact paths and id schemes: :mod:`.readers_idx` (MNIST), :mod:`.readers_cifar` (CIFAR, read by a
restricted unpickler), :mod:`.readers_folder`, :mod:`.readers_captions` (JSON lines, COCO),
:mod:`.readers_multimodal` (N24News, UPMC-Food-101: one text per image, as its caption). Ids are
``<kind>-<split of the source file>-<index>`` for MNIST and CIFAR (``cifar10-test-00042``), and the image's
relative path for folders and caption files, the ``image_id`` for N24News and
``<split>/<class>/<filename>`` for UPMC-Food-101. ``valid_fraction``/``test_fraction`` draw seeded (``seed``)
splits where the source has none. Bad data is one :class:`~pipeline.errors.DataError` line naming the file;
an unknown kind or option is a :class:`~pipeline.errors.ParamsError`.
"""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path

from pipeline.data.vision.imageset import ImageSet
from pipeline.data.vision.readers_captions import read_coco, read_jsonl
from pipeline.data.vision.readers_cifar import read_cifar
from pipeline.data.vision.readers_common import check_fraction
from pipeline.data.vision.readers_folder import read_imagefolder
from pipeline.data.vision.readers_idx import read_mnist
from pipeline.data.vision.readers_multimodal import read_food101, read_n24news
from pipeline.errors import DataError, ParamsError

READERS = {
    "mnist": read_mnist,
    "cifar10": partial(read_cifar, "cifar10"),
    "cifar100": partial(read_cifar, "cifar100"),
    "imagefolder": read_imagefolder,
    "jsonl": read_jsonl,
    "coco": read_coco,
    "n24news": read_n24news,
    "food101": read_food101,
}


def options_of(kind: str) -> list[str]:
    """The option names ``read_real(kind, ...)`` accepts."""
    params = inspect.signature(READERS[kind]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def read_real(kind: str, root: Path, **options) -> dict[str, ImageSet]:
    """The splits of the real dataset ``kind`` at ``root`` (see the module docstring for kinds and options)."""
    if kind not in READERS:
        raise ParamsError(f"read_real: unknown kind {kind!r} (expected one of {', '.join(READERS)})")
    unknown = sorted(set(options) - set(options_of(kind)))
    if unknown:
        raise ParamsError(f"read_real({kind}): unknown option {unknown[0]!r} (known: {', '.join(options_of(kind))})")
    for name in ("valid_fraction", "test_fraction"):
        if name in options:
            check_fraction(options[name], name, kind)
    if options.get("valid_fraction", 0.1) + options.get("test_fraction", 0.1) >= 1.0 and "test_fraction" in options_of(kind):
        raise ParamsError(f"read_real({kind}): valid_fraction + test_fraction must be below 1")
    if not isinstance(options.get("seed", 0), int):
        raise ParamsError(f"read_real({kind}): seed must be an int, got {options['seed']!r}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: missing ({kind} dataset root)")
    return READERS[kind](root, **options)
