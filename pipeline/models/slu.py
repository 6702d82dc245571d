"""End-to-end seq2seq SLU model: speech encoder, token decoder, audio and text projection heads.

Target layout (pipeline.data.tokenizer): ``<bos> <class:k> <sep> w_1 .. w_n <eos>``. The intent is the
first decoding step restricted to class tokens, so intent prediction is a proper classifier; greedy
decoding from there gives the transcript (for WER and for S-KD's pseudo-targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ModelConfig
from pipeline.models.decoder import TokenDecoder
from pipeline.models.encoder import SpeechEncoder, masked_mean
from pipeline.models.heads import projection_head


@dataclass(frozen=True)
class Vocab:
    """What the model needs to know of the tokenizer."""

    size: int
    pad_id: int
    bos_id: int
    eos_id: int
    sep_id: int
    class_offset: int
    n_classes: int


@dataclass
class SLUOutput:
    token_logits: torch.Tensor  # [B, L-1, V]: prediction of tokens[:, 1:]
    audio_pooled: torch.Tensor  # [B, D]: mean of encoder states over real frames
    memory: torch.Tensor  # [B, T', D]: encoder states (S-KD decodes other targets from them)
    memory_pad: torch.Tensor  # [B, T'] True at padded steps


class SLUModel(nn.Module):
    def __init__(self, cfg: ModelConfig, n_mels: int, vocab: Vocab):
        super().__init__()
        self.vocab = vocab
        self.max_decode_len = cfg.max_decode_len
        ff = cfg.ff_mult * cfg.d_model
        if cfg.pretrained_encoder is not None:  # a local wav2vec2-style checkpoint reading raw samples (n_mels = 1)
            from pipeline.models.pretrained import PretrainedEncoder  # imports transformers only when used

            self.encoder = PretrainedEncoder(cfg.pretrained_encoder, cfg.d_model, cfg.freeze_pretrained_feature_encoder,
                                             cfg.spec_augment)
        else:
            self.encoder = SpeechEncoder(n_mels, cfg.d_model, cfg.encoder_layers, cfg.heads, ff, cfg.dropout,
                                         cfg.subsample, cfg.conv_channels, cfg.utterance_norm, cfg.encoder,
                                         cfg.spec_augment, cfg.front)
        self.decoder = TokenDecoder(vocab.size, cfg.d_model, cfg.decoder_layers, cfg.heads, ff, cfg.dropout, vocab.pad_id)
        # The <bos> position also receives a projection of the pooled encoder states. Without it the first
        # step (the intent) starts from a constant query and only reaches the audio through cross-attention;
        # on small corpora the decoder then learns the transcript language model long before it learns to
        # tell intents apart (train accuracy stayed at chance for 200+ steps in our runs).
        self.start_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.audio_head = projection_head(cfg.d_model, cfg.proj_dim)
        self.text_head = projection_head(cfg.d_model, cfg.proj_dim)

    # -- building blocks
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        t_max = int(feat_lens.max())
        return self.encoder(feats[:, :t_max], feat_lens)  # drop the batch's common padding first

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, tokens: torch.Tensor) -> SLUOutput:
        memory, _, pad = self.encode(feats, feat_lens)
        pooled = masked_mean(memory, pad)
        logits = self.teacher_forced(memory, pad, pooled, tokens)
        return SLUOutput(token_logits=logits, audio_pooled=pooled, memory=memory, memory_pad=pad)

    def teacher_forced(self, memory: torch.Tensor, pad: torch.Tensor, pooled: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Token logits [B, L-1, V] of ``tokens`` [B, L_max] given encoder states (e.g. of another forward)."""
        tokens = trim_tokens(tokens, self.vocab.pad_id)
        return self.decoder(tokens[:, :-1], memory, pad, self.start_proj(pooled))

    def seq2seq_loss(self, logits: torch.Tensor, tokens: torch.Tensor, intent_weight: float,
                     label_smoothing: float = 0.0) -> torch.Tensor:
        """CE over all target tokens + ``intent_weight`` x CE of the intent step alone, both label-smoothed.

        The intent is one of ~10 target tokens; with the plain token average the decoder learns the
        transcript language model first and the intent last. Weighting the intent step (1.0: the
        intent counts as much as the whole transcript) made it learn several times faster here.
        ``label_smoothing`` (Szegedy et al. 2016) spreads that mass of each target over the vocabulary
        (the intent step: over the intents); see ``train.label_smoothing`` in the README for its effect.
        """
        loss = self.token_loss(logits, tokens, label_smoothing=label_smoothing)
        if intent_weight:
            target = tokens[:, 1] - self.vocab.class_offset  # the class token follows <bos>
            intent = F.cross_entropy(self.class_logits(logits).float(), target, label_smoothing=label_smoothing)
            loss = loss + intent_weight * intent
        return loss

    def token_loss(self, logits: torch.Tensor, tokens: torch.Tensor, reduction: str = "mean",
                   label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy of teacher-forced logits [B, L-1, V] against tokens[:, 1:] (padding ignored)."""
        target = trim_tokens(tokens, self.vocab.pad_id)[:, 1:]
        loss = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=self.vocab.pad_id, reduction="none",
                               label_smoothing=label_smoothing)
        if reduction == "none":  # per sample: mean over its real tokens
            return loss.sum(1) / (target != self.vocab.pad_id).sum(1).clamp_min(1)
        return loss.sum() / (target != self.vocab.pad_id).sum().clamp_min(1)

    def class_logits(self, token_logits: torch.Tensor) -> torch.Tensor:
        """[B, n_classes]: the first decoding step restricted to class tokens."""
        v = self.vocab
        return token_logits[:, 0, v.class_offset : v.class_offset + v.n_classes]

    def audio_embedding(self, audio_pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_head(audio_pooled).float(), dim=-1)

    def text_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled decoder token embeddings of the transcript words (specials and class tokens excluded)."""
        words = tokens >= self.vocab.class_offset + self.vocab.n_classes  # [B, L]
        emb = self.decoder.embed(tokens)  # [B, L, D]
        pooled = masked_mean(emb, ~words)
        return F.normalize(self.text_head(pooled).float(), dim=-1)

    # -- inference
    @torch.no_grad()
    def predict(self, feats: torch.Tensor, feat_lens: torch.Tensor, allowed: torch.Tensor, decode: bool = True):
        """Class prediction (argmax over the ``allowed`` class ids) and, if ``decode``, greedy token sequences.

        Decoding starts from ``<bos> <class:pred>``: the transcript is conditioned on the predicted class.
        It stops when every sequence has emitted ``<eos>`` or after ``max_decode_len`` tokens (build_model
        caps that at the corpus's longest target + 2: one babbling sequence, e.g. of a forgotten class,
        otherwise keeps the whole batch decoding to the configured limit).
        Returns (classes [B], tokens [B, <= max_decode_len] or None).
        """
        v = self.vocab
        memory, _, pad = self.encode(feats, feat_lens)
        start = self.start_proj(masked_mean(memory, pad))
        b = feats.shape[0]
        seq = torch.full((b, 1), v.bos_id, dtype=torch.long, device=feats.device)
        cache: list[torch.Tensor] = []  # the decoder's self-attention keys, one position per step
        logits = self.decoder.step(seq[:, 0], 0, memory, pad, start, cache)  # [B, V]
        first = logits[:, v.class_offset : v.class_offset + v.n_classes].float()
        mask = torch.full_like(first, float("-inf"))
        mask[:, allowed] = 0.0
        classes = (first + mask).argmax(1)
        if not decode:
            return classes, None
        seq = torch.cat([seq, (classes + v.class_offset).unsqueeze(1)], 1)
        done = torch.zeros(b, dtype=torch.bool, device=feats.device)
        for pos in range(1, self.max_decode_len - 1):
            nxt = self.decoder.step(seq[:, pos], pos, memory, pad, start, cache).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, v.pad_id), nxt)
            seq = torch.cat([seq, nxt.unsqueeze(1)], 1)
            done |= nxt == v.eos_id
            if bool(done.all()):
                break
        return classes, seq


def trim_tokens(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the columns that are padding in every row ([B, L_max] -> [B, L])."""
    length = int((tokens != pad_id).sum(1).max())
    return tokens[:, :length]
