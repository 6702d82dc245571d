"""Building the SLU model from the prepared data; its fingerprint; the untrained checkpoint.

Kept apart from the training code so that the ``init`` stage starts without importing Avalanche.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from pipeline.config import ModelConfig
from pipeline.core import checkpoint as ckpt
from pipeline.core import runtime
from pipeline.data.prepared import Prepared
from pipeline.errors import ParamsError
from pipeline.models.slu import SLUModel, Vocab


def vocab_of(prep: Prepared) -> Vocab:
    tok = prep.tokenizer
    return Vocab(len(tok), tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id, tok.class_offset, len(tok.classes))


def features_kind(prep: Prepared) -> str:
    """What the prepared folder stores: ``fbank`` or ``waveform`` (folders older than the key: fbank)."""
    return prep.manifest.get("features", {}).get("kind", "fbank")


def check_features(cfg: ModelConfig, prep: Prepared) -> None:
    """A pretrained encoder reads raw samples and the from-scratch one log-Mel features: stop with one line
    when the prepared data holds the other kind (it would otherwise fail deep inside the model)."""
    kind = features_kind(prep)
    if cfg.pretrained_encoder is not None and kind != "waveform":
        raise ParamsError(f"params: model.pretrained_encoder: needs raw waveforms but the prepared data holds {kind} "
                          "features; set features.kind: waveform and re-run prepare (dvc repro prepare)")
    if cfg.pretrained_encoder is None and kind != "fbank":
        raise ParamsError(f"params: features.kind: the prepared data holds {kind} features, which only a pretrained "
                          "encoder reads; set model.pretrained_encoder, or features.kind: fbank and re-run prepare")
    if cfg.pretrained_encoder is not None:
        from pipeline.models.pretrained import preprocessor_config

        want = preprocessor_config(cfg.pretrained_encoder).get("sampling_rate")
        have = prep.manifest.get("features", {}).get("sample_rate")
        if want is not None and have is not None and int(want) != int(have):
            raise ParamsError(f"params: features.sample_rate: the prepared audio is at {have} Hz but the pretrained "
                              f"encoder {cfg.pretrained_encoder} expects {want} Hz; set features.sample_rate: {want}")


def build_model(cfg: ModelConfig, prep: Prepared) -> SLUModel:
    check_features(cfg, prep)
    model = SLUModel(cfg, prep.n_mels, vocab_of(prep))
    # greedy decoding never needs more than the longest target of the corpus (+ 2: a runaway hypothesis
    # still shows as insertions); token rows are padded to that length in every split
    model.max_decode_len = min(cfg.max_decode_len, prep.splits["train"].tokens.shape[1] + 2)
    model.encoder.mean.copy_(prep.mean)
    model.encoder.std.copy_(prep.std)
    return model


def model_fingerprint(cfg: ModelConfig, prep: Prepared) -> str:
    info = {"model": asdict(cfg), "vocab": asdict(vocab_of(prep)), "n_mels": prep.n_mels}
    if cfg.pretrained_encoder is not None:  # the checkpoint's content, not only its path
        from pipeline.models.pretrained import checkpoint_digest

        info["pretrained"] = checkpoint_digest(cfg.pretrained_encoder)
    return ckpt.json_digest(info)


def write_init(folder: Path, cfg: ModelConfig, prep: Prepared, seed: int) -> SLUModel:
    """The untrained model every strategy of this seed starts from."""
    torch.manual_seed(seed)
    model = build_model(cfg, prep)
    meta = {"seed": seed, "model_fingerprint": model_fingerprint(cfg, prep),
            "parameters": sum(p.numel() for p in model.parameters())}
    ckpt.write_folder(folder, {"model": model.state_dict()}, {"rng": runtime.rng_state()}, meta)
    return model
