"""What each modality of the M3CoL tasks loses, so that the class needs both: seeded, label-independent draws.

**Image + caption (shapes).** The class is the (colour, shape) pair: 8 x 8 = 64 classes. The image modality:

- ``greyscale``: the background turned grey (luminance) and the shape painted one random grey level, so no
  colour is left, not even as brightness;
- ``occlusion``: a block of random dark colour (grey on a grey image), its side ``occlusion_size`` x the shape's
  diameter, centred near the shape's centre: the outline is partly hidden;
- every image: contrast scaled by U(``contrast_min``, ``contrast_max``) around its mean, then Gaussian pixel
  noise of ``noise_std``.

The caption modality: one caption per image from a few templates with synonyms (:data:`FULL`, :data:`NO_COLOUR`,
:data:`NO_SHAPE`); a share ``omit_colour`` of the captions leaves the colour out and ``omit_shape`` the shape,
then each phrase is dropped with probability ``word_dropout`` (an attribute phrase counts as one: the caption
either names the attribute or it does not; one phrase always stays). What each sample lost is recorded, so
the report can split the test accuracy by condition and compute the information ceilings.

**Speech + transcript.** ASR-like errors in the transcript: each word dropped with probability
``word_dropout`` or replaced by a random other word of the training transcripts' vocabulary with probability
``substitution`` (one word always stays).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.vision.vocab import fill, synonym

# caption templates: a list of phrases; "{colour}" and "{shape}" are the attribute phrases
FULL = (("a", "{colour}", "{shape}"), ("the", "{shape}", "is", "{colour}"), ("{colour}", "{shape}"),
        ("a picture of a", "{colour}", "{shape}"), ("there is a", "{colour}", "{shape}", "here"))
NO_COLOUR = (("a", "{shape}"), ("the picture shows a", "{shape}"), ("one", "{shape}"))
NO_SHAPE = (("something", "{colour}"), ("a", "{colour}", "thing"), ("it is", "{colour}"))


# ----------------------------------------------------------------------------- images


def degrade(images: np.ndarray, masks: np.ndarray, attributes: list[dict], cfg, rng: np.random.Generator):
    """Degraded copies of uint8 [N, S, S, 3] ``images`` (shape masks uint8 [N, S, S], 1 = shape; ``attributes``
    with the shapes corpus's ``cx``, ``cy``, ``radius`` in px); returns (images uint8 [N, S, S, 3], grey bool [N],
    occluded bool [N]). ``cfg``: :class:`pipeline.m3col.params.DegradeConfig`."""
    n, size = images.shape[0], images.shape[1]
    grey = rng.random(n) < cfg.greyscale
    occluded = rng.random(n) < cfg.occlusion
    level = rng.uniform(110, 240, n)  # the grey shapes' level
    block_rgb = rng.integers(0, 111, (n, 3))
    shift = rng.uniform(-0.5, 0.5, (n, 2))  # the block's centre offset, x the radius
    contrast = rng.uniform(cfg.contrast_min, cfg.contrast_max, n)
    noise = rng.normal(0.0, 1.0, images.shape).astype(np.float32) * np.float32(cfg.noise_std)

    x = images.astype(np.float32)  # [N, S, S, 3]
    lum = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # [N, S, S]
    painted = np.where(masks == 1, level[:, None, None].astype(np.float32), lum)  # [N, S, S]
    x[grey] = painted[grey][..., None]  # broadcast to 3 channels
    block_rgb[grey] = block_rgb[grey].mean(axis=1, keepdims=True).round().astype(block_rgb.dtype)
    cx = np.array([a["cx"] for a in attributes], dtype=np.float32)
    cy = np.array([a["cy"] for a in attributes], dtype=np.float32)
    r = np.array([a["radius"] for a in attributes], dtype=np.float32)
    centres = np.arange(size, dtype=np.float32) + 0.5
    half = cfg.occlusion_size * r  # half the block's side (side = occlusion_size x diameter)
    bx, by = cx + shift[:, 0] * r, cy + shift[:, 1] * r
    inside_x = np.abs(centres[None, :] - bx[:, None]) <= half[:, None]  # [N, S] columns
    inside_y = np.abs(centres[None, :] - by[:, None]) <= half[:, None]  # [N, S] rows
    block = inside_y[:, :, None] & inside_x[:, None, :] & occluded[:, None, None]  # [N, S, S]
    x = np.where(block[..., None], block_rgb[:, None, None, :].astype(np.float32), x)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = mean + contrast[:, None, None, None].astype(np.float32) * (x - mean) + noise
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), grey, occluded


# ----------------------------------------------------------------------------- captions


def caption(colour: str, shape: str, cfg, rng: np.random.Generator) -> tuple[str, bool, bool]:
    """One noisy caption of a ``colour`` ``shape``; returns (text, names the colour, names the shape).
    ``cfg``: :class:`pipeline.m3col.params.CaptionNoiseConfig`."""
    u = rng.random()
    pool = NO_COLOUR if u < cfg.omit_colour else NO_SHAPE if u < cfg.omit_colour + cfg.omit_shape else FULL
    template = pool[int(rng.integers(len(pool)))]
    words = {"colour": synonym("colour", colour, int(rng.integers(3))),
             "shape": synonym("shape", shape, int(rng.integers(3)))}
    keep = rng.random(len(template)) >= cfg.word_dropout
    if not keep.any():
        keep[int(rng.integers(len(template)))] = True
    phrases = [p for p, k in zip(template, keep) if k]
    text = fill(" ".join(phrases), words)
    return text, "{colour}" in phrases, "{shape}" in phrases


# ----------------------------------------------------------------------------- transcripts


def corrupt_transcript(text: str, vocab: list[str], cfg, rng: np.random.Generator) -> tuple[str, int, int]:
    """``text`` with words dropped and substituted; returns (text, dropped, substituted). ``cfg``:
    :class:`pipeline.m3col.params.TranscriptNoiseConfig`; ``vocab``: the words a substitution draws from."""
    out, dropped, substituted = [], 0, 0
    words = text.split()
    draws = rng.random(len(words))
    picks = rng.integers(0, max(len(vocab), 1), len(words))
    for w, u, pick in zip(words, draws, picks):
        if u < cfg.word_dropout:
            dropped += 1
        elif u < cfg.word_dropout + cfg.substitution and len(vocab) > 1:
            new = vocab[int(pick)]
            if new == w:  # another word: the next one in the vocabulary
                new = vocab[(int(pick) + 1) % len(vocab)]
            out.append(new)
            substituted += 1
        else:
            out.append(w)
    if not out:  # every word dropped: one stays (a transcript is never empty)
        i = int(rng.integers(len(words)))
        out, dropped = [words[i]], dropped - 1
    return " ".join(out), dropped, substituted


# ----------------------------------------------------------------------------- ceilings


def text_ceiling(has_colour: np.ndarray, has_shape: np.ndarray, n_colours: int, n_shapes: int) -> float:
    """The best expected accuracy from the captions alone: a missing attribute is a uniform guess."""
    p = np.where(has_colour, 1.0, 1.0 / n_colours) * np.where(has_shape, 1.0, 1.0 / n_shapes)
    return float(p.mean())


def image_ceiling(grey: np.ndarray, n_colours: int) -> float:
    """An upper bound from the images alone: a grey image's colour is a uniform guess (occlusion assumed to hide
    nothing, so the true ceiling is lower)."""
    return float(np.where(grey, 1.0 / n_colours, 1.0).mean())


def fused_ceiling(grey: np.ndarray, has_colour: np.ndarray, has_shape: np.ndarray, n_colours: int) -> float:
    """An upper bound from both: colour is lost only when the image is grey AND the caption omits it; the shape
    is taken as always visible (occlusion hides nothing), so a caption without the shape costs nothing."""
    del has_shape  # the image is assumed to show the shape
    colour_lost = grey & ~has_colour
    return float(np.where(colour_lost, 1.0 / n_colours, 1.0).mean())
