"""Autoregressive Transformer decoder over the tokenizer's vocabulary (class token first, then words)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.encoder import sinusoids


def additive_mask(key_pad: torch.Tensor, heads: int, query_len: int, causal: torch.Tensor | None = None) -> torch.Tensor:
    """The float attention mask [B * heads, query_len, S] (0 or -inf) that ``nn.MultiheadAttention`` would build
    from ``key_pad`` [B, S] (True: padding) and an optional boolean ``causal`` [query_len, S].

    Passing it as ``attn_mask`` instead of ``key_padding_mask`` gives the same attention, bit for bit (tested),
    and spares every process the ~0.7 s import of sympy that MultiheadAttention's key-padding shape check
    triggers (``torch._check_with`` imports ``torch.fx.experimental.symbolic_shapes``).
    """
    b, s = key_pad.shape
    mask = torch.zeros(b, 1, query_len, s, device=key_pad.device).masked_fill(key_pad[:, None, None, :], float("-inf"))
    if causal is not None:
        mask = mask.masked_fill(causal, float("-inf"))
    return mask.expand(b, heads, query_len, s).reshape(b * heads, query_len, s)  # [B, H, L, S] -> [B*H, L, S]


class TokenDecoder(nn.Module):
    """Teacher-forced decoding: tokens [B, L] + encoder memory [B, T', D] -> logits [B, L, V].

    The output projection is tied to the token embedding: the same vectors represent a token as
    input and as prediction, and they are what the text projection head pools (COCONUT's text
    embedding comes from the decoder's token-embedding layer, as in Cappellazzo et al., "Continual
    contrastive spoken language understanding").
    """

    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, ff: int, dropout: float, pad_id: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        # unit-scale logits at init: the embedding doubles as the output layer (tied), inputs are rescaled by sqrt(d)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        layer = nn.TransformerDecoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.pad_id = pad_id
        self.scale = d_model**0.5

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``start`` [B, D] is added to the first position (<bos>): see SLUModel.start_proj."""
        length = tokens.shape[1]
        x = self.embed(tokens) * self.scale + sinusoids(length, memory.shape[2], tokens.device).to(memory.dtype)
        x = torch.cat([x[:, :1] + start.unsqueeze(1).to(x.dtype), x[:, 1:]], dim=1)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        heads = self.layers.layers[0].self_attn.num_heads
        x = self.layers(  # tgt_is_causal=False: the mask also holds the padding, so it must not be dropped for is_causal
            self.drop(x), memory, tgt_mask=additive_mask(tokens == self.pad_id, heads, length, causal),
            memory_mask=additive_mask(memory_pad, heads, length), tgt_is_causal=False,
        )
        return self.norm(x) @ self.embed.weight.t()  # [B, L, D] -> [B, L, V]

    @torch.no_grad()
    def step(self, token: torch.Tensor, pos: int, memory: torch.Tensor, memory_pad: torch.Tensor, start: torch.Tensor,
             cache: list[torch.Tensor]) -> torch.Tensor:
        """Incremental decoding (eval mode): logits [B, V] for position ``pos + 1`` given ``token`` [B] at ``pos``.

        ``cache`` (a list, empty at ``pos`` 0) keeps each layer's normalised inputs of the earlier positions,
        the keys and values of its self-attention. Greedy decoding then costs one position per step instead
        of re-running the whole prefix; it equals ``forward`` on the prefix (the last position's logits) up
        to rounding. Layers are the pre-norm ``nn.TransformerDecoderLayer`` blocks, evaluated without dropout.
        """
        table = sinusoids(pos + 1, memory.shape[2], token.device)[pos].to(memory.dtype)
        x = (self.embed(token) * self.scale + table).unsqueeze(1)  # [B] -> [B, 1, D]
        if pos == 0:
            x = x + start.unsqueeze(1).to(x.dtype)
        cross = additive_mask(memory_pad, self.layers.layers[0].multihead_attn.num_heads, 1)  # every layer's
        for i, layer in enumerate(self.layers.layers):
            h = layer.norm1(x)
            if len(cache) <= i:
                cache.append(h)
            else:
                cache[i] = torch.cat([cache[i], h], dim=1)  # [B, pos + 1, D]
            x = x + layer.self_attn(h, cache[i], cache[i], need_weights=False)[0]
            h = layer.norm2(x)
            x = x + layer.multihead_attn(h, memory, memory, attn_mask=cross, need_weights=False)[0]
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return (self.norm(x) @ self.embed.weight.t())[:, 0]  # [B, 1, V] -> [B, V]
