"""The seq2seq SLU model: shapes, masking, the intent classifier, embeddings, SpecAugment."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ModelConfig
from pipeline.models.encoder import lengths_to_mask, masked_mean, sinusoids, spec_augment
from pipeline.models.slu import SLUModel, Vocab

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab(size=30, pad_id=0, bos_id=1, eos_id=2, sep_id=4, class_offset=5, n_classes=6)  # words: ids 11..29


def make(encoder: str, **kw) -> SLUModel:
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=encoder, d_model=32, encoder_layers=2, heads=2, conv_channels=16, proj_dim=8, **kw)
    return SLUModel(cfg, n_mels=10, vocab=VOCAB).eval()


def batch(lengths: list[int], t_max: int = 64):
    g = torch.Generator().manual_seed(1)
    feats = torch.zeros(len(lengths), t_max, 10)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, 10, generator=g) + 3.0
    tokens = torch.tensor([[1, 5 + i % 6, 4, 11 + i, 12, 2, 0, 0] for i in range(len(lengths))])
    return feats, torch.tensor(lengths), tokens


@pytest.mark.parametrize("encoder", ["gru", "conv", "transformer"])
def test_shapes_and_intent_logits(encoder):
    model = make(encoder)
    feats, lens, tokens = batch([40, 64, 23])
    out = model(feats, lens, tokens)
    assert out.token_logits.shape == (3, 5, VOCAB.size)  # tokens trimmed to 6 columns, minus the last
    assert model.class_logits(out.token_logits).shape == (3, 6)
    assert out.audio_pooled.shape == (3, 32)
    emb = model.audio_embedding(out.audio_pooled)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("encoder, front", [("gru", "stack"), ("gru", "conv"), ("conv", "stack"), ("transformer", "conv")])
@pytest.mark.parametrize("utterance_norm", [True, False])
def test_padding_does_not_change_an_utterance(encoder, front, utterance_norm):
    """An utterance gives the same outputs alone (short batch) as next to a longer one (more padding)."""
    model = make(encoder, utterance_norm=utterance_norm, front=front)
    feats, lens, tokens = batch([30, 64])
    both = model(feats, lens, tokens)
    alone = model(feats[:1, :30], lens[:1], tokens[:1])
    assert torch.allclose(both.audio_pooled[0], alone.audio_pooled[0], atol=1e-5)
    assert torch.allclose(both.token_logits[0], alone.token_logits[0], atol=1e-4)


@pytest.mark.parametrize("front", ["stack", "conv"])
def test_subsampled_lengths_match_the_front_end(front):
    model = make("gru", front=front)
    for n in (1, 7, 8, 9, 33, 64):
        x, lens = model.encoder.front(torch.zeros(1, n, 10), torch.tensor([n]))
        assert x.shape[1] == int(lens[0]) == -(-n // 8), n


def test_frame_stacking_puts_consecutive_frames_side_by_side():
    model = make("gru", front="stack")
    proj = model.encoder.front.proj
    with torch.no_grad():  # identity on the first 8 * 10 inputs: the output is the stacked frames themselves
        proj.weight.zero_()
        proj.weight[:, :32].copy_(torch.eye(32))
        proj.bias.zero_()
    x = torch.arange(1.0, 1 + 12 * 10).view(1, 12, 10)  # 12 frames -> 2 steps, the second padded with zeros
    out, lens = model.encoder.front(x, torch.tensor([12]))
    assert out.shape == (1, 2, 32) and int(lens[0]) == 2
    gelu = torch.nn.functional.gelu
    assert torch.allclose(out[0, 0], gelu(x[0, :4].reshape(-1)[:32]))  # frames 0..3 of step 0 (32 = 3.2 frames)
    assert torch.allclose(out[0, 1], gelu(x[0, 8:12].reshape(-1)[:32]))  # frames 8..11 start step 1


def test_predict_only_returns_allowed_classes_and_starts_decoding_with_them():
    model = make("gru")
    feats, lens, _ = batch([30, 50, 64, 20])
    allowed = torch.tensor([2, 4])
    classes, seq = model.predict(feats, lens, allowed, decode=True)
    assert set(classes.tolist()) <= {2, 4}
    assert seq[:, 0].eq(VOCAB.bos_id).all() and torch.equal(seq[:, 1], classes + VOCAB.class_offset)
    assert seq.shape[1] <= model.max_decode_len
    # restricting to one class forces it
    only, _ = model.predict(feats, lens, torch.tensor([3]), decode=False)
    assert only.eq(3).all()


def test_intent_prediction_matches_the_first_teacher_forced_step():
    model = make("transformer")
    feats, lens, tokens = batch([30, 50, 64])
    logits = model.class_logits(model(feats, lens, tokens).token_logits)
    classes, _ = model.predict(feats, lens, torch.arange(6), decode=False)
    assert torch.equal(classes, logits.argmax(1))


def test_text_embedding_pools_words_only():
    model = make("gru")
    a = torch.tensor([[1, 5, 4, 11, 12, 2, 0, 0]])
    b = torch.tensor([[1, 9, 4, 11, 12, 2, 0, 0]])  # another class token, same words
    c = torch.tensor([[1, 5, 4, 13, 12, 2, 0, 0]])  # another word
    ea, eb, ec = (model.text_embedding(t) for t in (a, b, c))
    assert torch.allclose(ea, eb) and not torch.allclose(ea, ec)


def test_seq2seq_loss_adds_the_weighted_intent_cross_entropy():
    model = make("gru")
    feats, lens, tokens = batch([30, 50, 64])
    logits = model(feats, lens, tokens).token_logits
    intent = F.cross_entropy(model.class_logits(logits), tokens[:, 1] - VOCAB.class_offset)
    base = model.token_loss(logits, tokens)
    assert torch.allclose(model.seq2seq_loss(logits, tokens, 2.5), base + 2.5 * intent)
    assert torch.allclose(model.seq2seq_loss(logits, tokens, 0.0), base)


def smoothed_ce_loop(logits: torch.Tensor, target: int, eps: float) -> torch.Tensor:
    """(1 - eps) * -log p[target] + eps * mean over the K classes of -log p[k], one position at a time."""
    logp = torch.log_softmax(logits, dim=0)
    return (1 - eps) * -logp[target] + eps * sum(-logp[k] for k in range(len(logits))) / len(logits)


def test_label_smoothing_matches_a_loop_over_positions_value_and_gradient():
    model = make("gru")
    feats, lens, tokens = batch([30, 50, 64])
    logits = model(feats, lens, tokens).token_logits.detach().requires_grad_(True)
    eps, weight = 0.1, 1.5
    got = model.seq2seq_loss(logits, tokens, weight, label_smoothing=eps)
    target = tokens[:, 1:]  # every row has 5 real targets: <class> <sep> w w <eos>, then padding
    token_terms = [smoothed_ce_loop(logits[b, i], int(target[b, i]), eps)
                   for b in range(len(tokens)) for i in range(target.shape[1]) if target[b, i] != VOCAB.pad_id]
    first, last = VOCAB.class_offset, VOCAB.class_offset + VOCAB.n_classes
    intent_terms = [smoothed_ce_loop(logits[b, 0, first:last], int(tokens[b, 1]) - first, eps) for b in range(len(tokens))]
    want = sum(token_terms) / len(token_terms) + weight * sum(intent_terms) / len(intent_terms)
    assert len(token_terms) == 15 and torch.allclose(got, want, atol=1e-6)
    (g_got,) = torch.autograd.grad(got, logits)
    (g_want,) = torch.autograd.grad(want, logits)
    assert torch.allclose(g_got, g_want, atol=1e-7)
    assert torch.equal(model.seq2seq_loss(logits, tokens, weight), model.seq2seq_loss(logits, tokens, weight, 0.0))


def test_spec_augment_masks_inside_the_utterance_and_is_seeded():
    x = torch.ones(4, 50, 20)
    lens = torch.tensor([50, 30, 10, 5])
    torch.manual_seed(3)
    a = spec_augment(x, lens)
    torch.manual_seed(3)
    b = spec_augment(x, lens)
    assert torch.equal(a, b)
    zero = a == 0
    assert zero.any()
    # at most 2 x 6 bins and 2 x 10 frames are masked per utterance
    full_bins = zero.all(dim=1).sum(dim=1)
    assert (full_bins <= 12).all()
    pad = lengths_to_mask(lens, 50)
    masked_frames = (zero.all(dim=2) & ~pad).sum(dim=1)
    assert (masked_frames <= 20).all()


def test_runtime_setup_makes_cpu_runs_deterministic():
    from pipeline.core import runtime

    before = torch.are_deterministic_algorithms_enabled()
    try:
        assert runtime.setup("cpu", seed=3) == torch.device("cpu")
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_skd_decodes_the_forward_memory_like_a_separate_forward():
    """S-KD reuses the batch's encoder states: its logits for the selected (rehearsal) samples equal those
    of a separate forward of just those samples on their pseudo-transcripts."""
    from pipeline.continual.skd import SequenceKD

    model = make("gru")
    feats, lens, tokens = batch([30, 64, 41, 17])
    out = model(feats, lens, tokens)
    kd = SequenceKD(lambda_skd=1.0, pad_id=0, length=8)
    pseudo = torch.tensor([[1, 6, 4, 20, 21, 22, 2, 0], [1, 7, 4, 23, 2, 0, 0, 0]])
    kd.load_state({"index": torch.tensor([5, 9]), "tokens": pseudo})
    index, rehearsal = torch.tensor([9, 3, 5, 7]), torch.tensor([True, True, True, False])  # 3: no target stored
    got = kd.penalty(model, out, index, rehearsal, contextlib.nullcontext)["skd"]
    sel = torch.tensor([0, 2])
    ref_logits = model(feats[sel], lens[sel], pseudo[[1, 0]]).token_logits
    ref = kd.loss(ref_logits, pseudo[[1, 0]][:, 1:7])
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_incremental_decoding_equals_the_full_prefix(layers):
    """decoder.step (cached keys, one position per call) gives the logits of the full teacher-forced
    forward at every position, so greedy decoding is unchanged by the cache."""
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="gru", d_model=32, encoder_layers=1, decoder_layers=layers, heads=4, proj_dim=8)
    model = SLUModel(cfg, n_mels=10, vocab=VOCAB).eval()
    feats, lens, _ = batch([40, 64, 23])
    memory, _, pad = model.encode(feats, lens)
    start = model.start_proj(torch.randn(3, 32))
    tokens = torch.tensor([[1, 6, 4, 11, 12, 13, 2], [1, 5, 4, 20, 21, 2, 0], [1, 9, 4, 15, 2, 0, 0]])
    full = model.decoder(tokens[:, :6], memory, pad, start)  # [B, 6, V], causal
    cache: list[torch.Tensor] = []
    for pos in range(6):
        step = model.decoder.step(tokens[:, pos], pos, memory, pad, start, cache)
        # rows whose prefix holds padding are masked differently by the full forward; compare the real ones
        real = (tokens[:, : pos + 1] != VOCAB.pad_id).all(1)
        torch.testing.assert_close(step[real], full[real, pos], rtol=1e-5, atol=1e-5)
    assert len(cache) == layers and cache[0].shape == (3, 6, 32)


def test_greedy_decoding_matches_a_full_prefix_loop():
    model = make("gru")
    model.max_decode_len = 9
    feats, lens, _ = batch([40, 64, 23, 51])
    allowed = torch.tensor([0, 2, 3, 5])
    classes, seq = model.predict(feats, lens, allowed)
    # the reference: re-run the decoder on the whole prefix at every step
    v = model.vocab
    memory, _, pad = model.encode(feats, lens)
    start = model.start_proj(masked_mean(memory, pad))
    ref = torch.full((4, 1), v.bos_id)
    first = model.decoder(ref, memory, pad, start)[:, 0, v.class_offset : v.class_offset + v.n_classes]
    ref_classes = allowed[first[:, allowed].argmax(1)]
    ref = torch.cat([ref, (ref_classes + v.class_offset).unsqueeze(1)], 1)
    for _ in range(model.max_decode_len - 2):
        ref = torch.cat([ref, model.decoder(ref, memory, pad, start)[:, -1].argmax(-1, keepdim=True)], 1)
    assert classes.tolist() == ref_classes.tolist()
    for row, ref_row in zip(seq.tolist(), ref.tolist()):
        n = len(row) if v.eos_id not in row else row.index(v.eos_id) + 1
        assert row[:n] == ref_row[:n]
        assert all(t == v.pad_id for t in row[n:])


def test_additive_mask_gives_the_attention_of_key_padding_masks_bit_for_bit():
    """The decoder passes padding as a float attn_mask: in training (dropout drawn from the same seed) the
    logits and every gradient equal those of nn.TransformerDecoder given boolean key-padding masks."""
    from pipeline.models.decoder import additive_mask

    model = make("gru", decoder_layers=2).train()
    feats, lens, tokens = batch([40, 64, 23, 50])
    memory, _, pad = model.encode(feats, lens)
    start = model.start_proj(masked_mean(memory, pad))
    dec, tgt = model.decoder, tokens[:, :-1]
    causal = torch.triu(torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool), diagonal=1)
    assert additive_mask(pad, 2, 3).shape == (4 * 2, 3, memory.shape[1])

    def grads(logits):
        model.zero_grad()
        logits.square().sum().backward(retain_graph=True)
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    torch.manual_seed(5)
    ours = dec(tgt, memory, pad, start)
    torch.manual_seed(5)
    x = dec.embed(tgt) * dec.scale + sinusoids(tgt.shape[1], memory.shape[2], tgt.device)
    x = torch.cat([x[:, :1] + start.unsqueeze(1), x[:, 1:]], dim=1)
    x = dec.layers(dec.drop(x), memory, tgt_mask=causal, tgt_key_padding_mask=tgt == VOCAB.pad_id,
                   memory_key_padding_mask=pad, tgt_is_causal=True)
    torch_ref = dec.norm(x) @ dec.embed.weight.t()
    assert torch.equal(ours, torch_ref)
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(torch_ref)))


def test_training_and_decoding_do_not_import_sympy():
    """nn.MultiheadAttention's key-padding check imports sympy (~0.7 s of every stage): the model avoids it."""
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_model import make, batch\n"
        "model = make('gru').train()\n"
        "feats, lens, tokens = batch([40, 64, 23])\n"
        "model.seq2seq_loss(model(feats, lens, tokens).token_logits, tokens, 1.0, 0.1).backward()\n"
        "model.eval().predict(feats, lens, torch.arange(6))\n"
        "print('torch.fx.experimental.symbolic_shapes' in sys.modules, 'sympy' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]
