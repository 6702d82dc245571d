"""Word-level text from scratch: a vocabulary over training texts and a small Transformer encoder.

Shared by the tracks that train a text encoder on captions (CWCL's caption encoder, M3CoL's end-to-end text
side); a track never imports another's modules.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.data.tokenizer import words
from pipeline.models.encoder import masked_mean, sinusoids
from pipeline.models.heads import projection_head

PAD, UNK = 0, 1


class WordVocab:
    """Word -> id over the training texts (``<pad>`` 0, ``<unk>`` 1, then the words sorted)."""

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


class WordEncoder(nn.Module):
    """[B, L] word ids (``batch[key]``) -> [B, out_dim]: embeddings + sinusoidal positions, pre-norm Transformer
    layers, mean over the real tokens, an MLP head (:func:`pipeline.models.heads.projection_head`)."""

    def __init__(self, vocab_size: int, out_dim: int, *, d_model: int = 128, layers: int = 2, heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, key: str = "tokens"):
        super().__init__()
        self.key = key
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_mult * d_model, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = projection_head(d_model, out_dim)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        length = int((tokens != PAD).sum(1).max())
        tokens = tokens[:, :length]  # [B, L] -> [B, L']: drop the batch's common padding
        pad = tokens == PAD
        x = self.embed(tokens) + sinusoids(length, self.embed.embedding_dim, tokens.device).to(self.embed.weight.dtype)
        x = self.norm(self.layers(x, src_key_padding_mask=pad))  # [B, L', d]
        return self.head(masked_mean(x, pad))  # [B, out_dim]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encode_tokens(batch[self.key])
