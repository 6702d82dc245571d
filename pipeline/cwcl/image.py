"""Image -> text: a caption encoder trained onto the FROZEN image tower's embeddings (the paper's direction).

Pairs: each training image with one of its captions (a fresh draw per epoch) and the frozen tower's
embedding of the image (the embed stage's ``<source>-<split>`` image sets). The zero-shot classes are the
colour x shape combinations of the source (``attributes.json`` ``domains``); the held-out ones never appear
in a training image or caption, while every colour and every shape still does. At test, every image is
classified by cosine between its frozen embedding and the trained text encoder's embedding of each
combination's prompts (``cwcl.image.prompts``, the unit embeddings averaged over templates, as CLIP does).

The supervised bound: a linear classifier over ALL combinations on the same frozen image embeddings.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pipeline.cwcl.align import ScoreSet
from pipeline.cwcl.holdout import pick_combos
from pipeline.cwcl.params import ImageTaskConfig, TextEncoderConfig
from pipeline.cwcl.zeroshot import cosine_scores
from pipeline.data.embeddings import load_embeddings
from pipeline.data.tokenizer import words
from pipeline.data.vision.imageset import read_split
from pipeline.errors import DataError
from pipeline.models.encoder import masked_mean, sinusoids

PAD, UNK = 0, 1


class WordVocab:
    """Word -> id over the training captions (``<pad>`` 0, ``<unk>`` 1, then the words sorted)."""

    def __init__(self, texts: list[str]):
        self.itos = ["<pad>", "<unk>", *sorted({w for t in texts for w in words(t)})]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        """[N, max_tokens] ids, padded with PAD, truncated; an empty text keeps one UNK (never all padding)."""
        out = torch.full((len(texts), max_tokens), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.stoi.get(w, UNK) for w in words(t)][:max_tokens] or [UNK]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class CaptionEncoder(nn.Module):
    """[B, L] word ids -> [B, out_dim]: embeddings + sinusoidal positions, pre-norm Transformer layers, mean over
    the real tokens, an MLP into the frozen image space."""

    def __init__(self, cfg: TextEncoderConfig, vocab_size: int, out_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=PAD)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ff_mult * cfg.d_model, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, out_dim))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        length = int((tokens != PAD).sum(1).max())
        tokens = tokens[:, :length]  # [B, L] -> [B, L']: drop the batch's common padding
        pad = tokens == PAD
        x = self.embed(tokens) + sinusoids(length, self.embed.embedding_dim, tokens.device).to(self.embed.weight.dtype)
        x = self.norm(self.layers(x, src_key_padding_mask=pad))  # [B, L', d]
        return self.head(masked_mean(x, pad))  # [B, out_dim]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encode_tokens(batch["tokens"])


class LinearProbe(nn.Module):
    """The supervised bound: logits of every class from the frozen image embedding."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.linear(batch["q"])


class CaptionPairs(Dataset):
    """Training pairs: one caption of image i (drawn each epoch from Python's ``random``, which the trainer
    seeds per epoch) as word ids, the image's frozen embedding ``q`` and its class ``y``."""

    def __init__(self, captions: list[torch.Tensor], frozen: torch.Tensor, labels: torch.Tensor):
        self.captions, self.frozen, self.labels = captions, frozen, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        options = self.captions[i]  # [n_captions, L]
        return {"tokens": options[random.randrange(options.shape[0])], "q": self.frozen[i], "y": self.labels[i]}


class FrozenImages(Dataset):
    """Evaluation samples: the frozen embedding ``q`` of each image and its class ``y``."""

    def __init__(self, frozen: torch.Tensor, labels: torch.Tensor):
        self.frozen, self.labels = frozen, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"q": self.frozen[i], "y": self.labels[i]}


@dataclass
class ImageData:
    classes: list[str]  # "colour shape", in (shape, colour) order
    heldout: list[str]
    vocab: WordVocab
    train: Dataset
    valid: FrozenImages
    test: FrozenImages
    prompts: torch.Tensor  # [C, T, max_tokens] word ids of every class's prompt under every template
    dim: int

    @property
    def unseen(self) -> list[int]:
        return [self.classes.index(c) for c in self.heldout]


def domains(folder: Path) -> tuple[list[str], list[str]]:
    """The source's shapes and colours (``attributes.json``: ``domains``)."""
    f = folder / "attributes.json"
    if not f.is_file():
        raise DataError(f"{f}: missing; run prepare-vision (dvc repro prepare-vision)")
    found = json.loads(f.read_text()).get("domains", {})
    if "shape" not in found or "colour" not in found:
        raise DataError(f"{f}: no colour and shape domains; the image transfer needs a source with colour x shape "
                        "attributes (cwcl.image.source: shapes)")
    return list(found["shape"]), list(found["colour"])


def load_image(cfg: ImageTaskConfig, vision: Path, embeddings: Path, seed: int, key: str,
               supervised: bool = False) -> ImageData:
    folder = vision / cfg.source
    shapes, colours = domains(folder)
    classes = [f"{c} {s}" for s in shapes for c in colours]
    heldout = pick_combos(cfg.heldout_combos, shapes, colours, seed, f"{key}.heldout_combos")
    unseen = {classes.index(c) for c in heldout}
    splits, frozen = {}, {}
    for split in ("train", "valid", "test"):
        data = read_split(folder, split)
        emb = load_embeddings(embeddings, "image", f"{cfg.source}-{split}")
        if emb.ids != data.ids:
            raise DataError(f"{embeddings}/image/{cfg.source}-{split}.json: its ids are not those of {folder}/"
                            f"{split}.jsonl; re-run `dvc repro embed`")
        labels = torch.tensor([classes.index(f"{a['colour']} {a['shape']}") for a in data.attributes])
        splits[split], frozen[split] = (data, labels), emb.emb.float()
    data, labels = splits["train"]
    keep = [i for i, y in enumerate(labels.tolist()) if supervised or y not in unseen]  # held-out: gone, with captions
    captions = [data.captions[i] for i in keep]
    vocab = WordVocab([c for per_image in captions for c in per_image])
    if supervised:
        train: Dataset = FrozenImages(frozen["train"][keep], labels[keep])
    else:
        tokens = [vocab.encode(per_image, cfg.text_encoder.max_tokens) for per_image in captions]
        train = CaptionPairs(tokens, frozen["train"][keep], labels[keep])
    prompts = torch.stack([vocab.encode([t.format(colour=c.split(" ", 1)[0], shape=c.split(" ", 1)[1])
                                         for t in cfg.prompts], cfg.text_encoder.max_tokens) for c in classes])
    return ImageData(classes, heldout, vocab, train, FrozenImages(frozen["valid"], splits["valid"][1]),
                     FrozenImages(frozen["test"], splits["test"][1]), prompts, int(frozen["train"].shape[1]))


def build_image_model(cfg: ImageTaskConfig, data: ImageData, supervised: bool) -> nn.Module:
    if supervised:
        return LinearProbe(data.dim, len(data.classes))
    return CaptionEncoder(cfg.text_encoder, len(data.vocab), data.dim)


def class_prototypes(encoder: CaptionEncoder, prompts: torch.Tensor) -> torch.Tensor:
    """[C, T, L] prompt ids -> [C, D]: each template's unit embedding, averaged over templates, renormalised."""
    c, t, length = prompts.shape
    emb = F.normalize(encoder.encode_tokens(prompts.reshape(c * t, length)).float(), dim=1)  # [C*T, D]
    return F.normalize(emb.reshape(c, t, -1).mean(1), dim=1)  # [C, T, D] -> [C, D]


@torch.no_grad()
def image_scores(model, loader, data: ImageData, supervised: bool) -> ScoreSet:
    """Every image of ``loader`` (frozen embeddings) against every class: cosine to the trained text encoder's
    prompt prototypes, or the supervised probe's logits."""
    device = next(model.parameters()).device
    protos = None if supervised else class_prototypes(model.encoder, data.prompts.to(device))
    scores, embs, labels = [], [], []
    for batch in loader:
        q = batch["q"].float()
        scores.append((model(batch).float() if supervised else cosine_scores(q, protos)).cpu())
        embs.append(F.normalize(q, dim=1).cpu())
        labels.append(batch["y"].cpu())
    return ScoreSet(torch.cat(scores), torch.cat(labels), torch.cat(embs), data.classes, data.unseen,
                    None if protos is None else protos.cpu())
