"""The pretrained-encoder path: a tiny randomly initialised wav2vec2 checkpoint written by the test.

Covers the encoder (shapes, lengths, independence from padding, weights really loaded, frozen feature
encoder), the clear one-line errors (bad folders, a non-speech model, features of the wrong kind, a
sample-rate mismatch), the fingerprint following the checkpoint's content, and one end-to-end run:
prepare with ``features.kind: waveform``, then init and two tasks of ``finetune`` through the CLI.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from pipeline.__main__ import main as cli
from pipeline.config import ModelConfig
from pipeline.core.params import from_dict
from pipeline.errors import DataError, ParamsError
from pipeline.models.build import check_features, model_fingerprint
from pipeline.models.pretrained import PretrainedEncoder, checkpoint_digest, load_pretrained

# conv strides 5 x 8 = 40: 400 states per second (wav2vec2-base: 320 -> 50), so that the CPU run stays short
TINY_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16, 16), conv_stride=(5, 8), conv_kernel=(10, 8), num_feat_extract_layers=2,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def write_checkpoint(folder: Path, seed: int = 0, feat_extract_norm: str = "layer") -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(feat_extract_norm=feat_extract_norm, **TINY_W2V)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2")


def waves(lengths: list[int], t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, t_max, 1] random waveforms in [-1, 1) (zero padded) and their lengths."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(len(lengths), t_max, 1)
    for i, n in enumerate(lengths):
        x[i, :n, 0] = 0.3 * torch.randn(n, generator=g).clamp(-3, 3)
    return x, torch.tensor(lengths)


# ----------------------------------------------------------------------------- the encoder


def test_shapes_lengths_and_padding_independence(ckpt_dir):
    torch.manual_seed(0)
    enc = PretrainedEncoder(ckpt_dir, d_model=24).eval()
    x, lens = waves([3000, 5200], 6400)
    with torch.no_grad():
        states, out_lens, pad = enc(x, lens)
        alone, alone_lens, _ = enc(x[:1, :3000], lens[:1])
    # conv kernels (10, 8), strides (5, 8): 3000 -> 599 -> 74, 5200 -> 1039 -> 129, 6400 -> 1279 -> 159
    assert out_lens.tolist() == [74, 129] and states.shape == (2, 159, 24)
    assert pad.shape == states.shape[:2] and pad.sum(1).tolist() == (states.shape[1] - out_lens).tolist()
    assert alone_lens.tolist() == out_lens[:1].tolist()
    n = int(out_lens[0])
    assert torch.allclose(states[0, :n], alone[0, :n], atol=1e-5)  # more padding, same states
    # the global scale buffers apply before the per-utterance normalisation: a louder copy gives the same states
    with torch.no_grad():
        loud, _, _ = enc(x[:1, :3000] * 4.0, lens[:1])
    assert torch.allclose(loud, alone, atol=1e-4)


def test_group_norm_checkpoint_runs_without_attention_mask(tmp_path):
    enc = PretrainedEncoder(write_checkpoint(tmp_path / "group", feat_extract_norm="group"), d_model=16).eval()
    assert not enc.use_mask
    assert enc.min_samples == (8 - 1) * 5 + 10  # kernels (10, 8), strides (5, 8): the receptive field, 45 samples
    x, lens = waves([900, 30], 900)  # 30 samples: shorter than the receptive field, padded with silence
    with torch.no_grad():
        states, out_lens, pad = enc(x, lens)
        tiny, tiny_lens, _ = enc(x[1:, :30], lens[1:])  # a whole batch shorter than the receptive field
    assert states.shape == (2, 22, 16) and out_lens.tolist() == [22, 1] and tiny_lens.tolist() == [1]
    assert tiny.shape == (1, 1, 16) and torch.isfinite(tiny).all()


def test_pretrained_weights_are_loaded_and_feature_encoder_frozen(ckpt_dir):
    from safetensors.torch import load_file

    saved = load_file(str(ckpt_dir / "model.safetensors"))
    torch.manual_seed(123)  # another seed: weights that were not loaded would differ
    enc = PretrainedEncoder(ckpt_dir, d_model=24)
    params = dict(enc.model.named_parameters())
    for name in ("encoder.layers.0.attention.q_proj.weight", "feature_extractor.conv_layers.0.conv.weight"):
        assert torch.equal(params[name], saved[name]), name
    assert not any(p.requires_grad for p in enc.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in enc.model.encoder.parameters())
    trainable = PretrainedEncoder(ckpt_dir, 24, freeze_feature_encoder=False)
    assert all(p.requires_grad for p in trainable.model.feature_extractor.parameters())
    copy.deepcopy(enc)  # teachers (LwF, COCONUT) are deep copies of the model


# ----------------------------------------------------------------------------- clear errors


def test_bad_folders_are_one_line_params_errors(tmp_path):
    for folder, needle in [(tmp_path / "nowhere", "not a folder"), (tmp_path, "config.json: missing")]:
        with pytest.raises(ParamsError) as info:
            from_dict(ModelConfig, {"pretrained_encoder": str(folder)}, "model")
        msg = str(info.value)
        assert msg.startswith("params: model.pretrained_encoder: ") and str(folder) in msg and needle in msg
        assert "\n" not in msg


def test_missing_weights_and_non_speech_models(tmp_path, ckpt_dir):
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(ckpt_dir / "config.json", only_config / "config.json")
    with pytest.raises(DataError) as info:
        load_pretrained(only_config)
    assert str(only_config) in str(info.value) and "\n" not in str(info.value)

    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ParamsError, match=r"^params: model.pretrained_encoder: .*'bert' is not a wav2vec2-style"):
        load_pretrained(tmp_path / "bert")


def test_features_of_the_wrong_kind_or_rate(tmp_path, ckpt_dir):
    pre = ModelConfig(pretrained_encoder=str(ckpt_dir))
    fbank = SimpleNamespace(manifest={"features": {"kind": "fbank", "sample_rate": 16000}})
    wave = SimpleNamespace(manifest={"features": {"kind": "waveform", "sample_rate": 16000}})
    needs_waves = r"^params: model.pretrained_encoder: needs raw waveforms .* set features.kind: waveform"
    with pytest.raises(ParamsError, match=needs_waves):
        check_features(pre, fbank)
    with pytest.raises(ParamsError, match=r"^params: features.kind: the prepared data holds waveform"):
        check_features(ModelConfig(), wave)
    check_features(pre, wave)
    check_features(ModelConfig(), fbank)
    check_features(ModelConfig(), SimpleNamespace(manifest={}))  # a folder prepared before the key: fbank
    other = tmp_path / "8k"
    shutil.copytree(ckpt_dir, other)
    (other / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 8000, "do_normalize": True}))
    with pytest.raises(ParamsError, match=r"^params: features.sample_rate: .* 16000 Hz .* expects 8000 Hz"):
        check_features(ModelConfig(pretrained_encoder=str(other)), wave)


class FakeTokenizer:
    pad_id, bos_id, eos_id, sep_id, class_offset, classes = 0, 1, 2, 3, 4, ["a", "b"]

    def __len__(self) -> int:
        return 10


def test_fingerprint_follows_the_checkpoint_content(tmp_path, ckpt_dir):
    folder = shutil.copytree(ckpt_dir, tmp_path / "ckpt")
    prep = SimpleNamespace(tokenizer=FakeTokenizer(), n_mels=1)
    cfg = ModelConfig(pretrained_encoder=str(folder))
    digest, fingerprint = checkpoint_digest(folder), model_fingerprint(cfg, prep)
    assert (checkpoint_digest(folder), model_fingerprint(cfg, prep)) == (digest, fingerprint)
    write_checkpoint(folder, seed=1)  # replaced in place: same path, other weights
    assert checkpoint_digest(folder) != digest and model_fingerprint(cfg, prep) != fingerprint


def test_waveform_features_are_int16_and_cut_like_fbank(tmp_path):
    from pipeline.config import FeaturesConfig, load_prepare
    from pipeline.data.features import waveform

    wave = np.linspace(-1.0, 1.0, 4000, dtype=np.float32)
    out = waveform(wave, FeaturesConfig(kind="waveform", max_frames=10))  # 10 hops of 10 ms = 1600 samples
    assert out.dtype == np.int16 and out.shape == (1600, 1)
    assert out[0, 0] == -32768 and np.array_equal(out[:, 0] / 32768.0, np.round(wave[:1600] * 32768) / 32768)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"features": {"kind": "mfcc"}}))
    with pytest.raises(ParamsError, match=r"^params: features.kind: expected one of 'fbank', 'waveform'"):
        load_prepare(tmp_path / "p.yaml")


# ----------------------------------------------------------------------------- end to end


TINY = {
    "seeds": [0],
    "data": {"source": "synthetic", "synthetic": {"n_speakers": 6, "valid_speakers": 1, "test_speakers": 1,
                                                  "utterances_per_speaker": 31, "workers": 1}},
    "features": {"kind": "waveform"},
    "split": {"preset": None, "n_tasks": 2, "class_order": "paper"},
    "model": {"d_model": 32, "decoder_layers": 1, "heads": 2, "ff_mult": 2, "proj_dim": 16},
    "train": {"first_task_epochs": 1, "epochs": 1, "batch_size": 16, "eval_batch_size": 64, "threads": 1,
              "progress": False, "lr": 0.001},
    "cil": {"strategies": ["finetune"], "tasks": [{"k": 0, "prev": "init"}, {"k": 1, "prev": "task0"}]},
    "recipes": {"finetune": {}},
}


def test_waveform_prepare_then_finetune_two_tasks(tmp_path, ckpt_dir, capsys):
    from safetensors.torch import load_file

    from pipeline.data.audio import read_wav

    ckpt = shutil.copytree(ckpt_dir, tmp_path / "ckpt")
    params = dict(TINY, model=dict(TINY["model"], pretrained_encoder=str(ckpt)))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared, models = tmp_path / "prepared", tmp_path / "models"
    common = ["--params", str(tmp_path / "params.yaml"), "--prepared", str(prepared), "--models", str(models)]
    assert cli(["prepare", "--params", str(tmp_path / "params.yaml"), "--out", str(prepared), "--no-progress"]) == 0

    # the stored samples are the WAV's samples, losslessly (int16), with the int16 scale as mean / std
    manifest = json.loads((prepared / "tasks.json").read_text())
    assert manifest["features"] == {"kind": "waveform", "sample_rate": 16000}
    packed = load_file(str(prepared / "features" / "train.safetensors"))
    assert packed["frames"].dtype == torch.int16 and packed["frames"].shape[1] == 1
    assert packed["mean"].tolist() == [0.0] and packed["std"].tolist() == [32768.0]
    meta = json.loads((prepared / "meta" / "train.json").read_text())
    wav = read_wav(prepared / "corpus" / f"{meta[0]['uid']}.wav", 16000)
    start, end = int(packed["offsets"][0]), int(packed["offsets"][1])
    assert meta[0]["n_frames"] == end - start == wav.shape[0]
    np.testing.assert_array_equal(packed["frames"][start:end, 0].numpy() / 32768.0, wav)

    rows = []
    assert cli(["init", "--strategy", "finetune", "--seed", "0", *common]) == 0
    init = load_file(str(models / "finetune" / "s0" / "init" / "model.safetensors"))
    saved = load_file(str(ckpt / "model.safetensors"))
    assert torch.equal(init["encoder.model.encoder.layers.1.feed_forward.output_dense.weight"],
                       saved["encoder.layers.1.feed_forward.output_dense.weight"])
    for k in (0, 1):
        assert cli(["train", "--strategy", "finetune", "--seed", "0", "--task", str(k), *common]) == 0
        rows.append(json.loads((models / "finetune" / "s0" / f"task{k}" / "eval.json").read_text()))
    assert [len(r["acc_per_task"]) for r in rows] == [1, 2]
    for r in rows:
        assert all(0.0 <= a <= 1.0 for a in r["acc_per_task"]) and 0.0 <= r["acc_seen"] <= 1.0
        assert np.isfinite(r["final_loss"])
    # the frozen feature encoder did not move; the Transformer layers did
    task1 = load_file(str(models / "finetune" / "s0" / "task1" / "model.safetensors"))
    conv = "encoder.model.feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(task1[conv], init[conv])
    q = "encoder.model.encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(task1[q], init[q])

    # a checkpoint replaced in place (same path): the chain refuses the stale init checkpoint, in one line
    write_checkpoint(ckpt, seed=7)
    capsys.readouterr()
    assert cli(["train", "--strategy", "finetune", "--seed", "0", "--task", "0", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other model params" in err[0]

    # a from-scratch model on waveform features: one line naming the key
    (tmp_path / "scratch.yaml").write_text(yaml.safe_dump(dict(TINY)))
    assert cli(["init", "--strategy", "finetune", "--seed", "0", "--params", str(tmp_path / "scratch.yaml"),
                "--prepared", str(prepared), "--models", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "features.kind" in err[0]

