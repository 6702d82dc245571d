"""Word-level tokenizer: target layout, <unk>, decoding, save/load, corrupt files."""

from __future__ import annotations

import json

import pytest

from pipeline.data.tokenizer import SPECIALS, Tokenizer, words
from pipeline.errors import DataError

CLASSES = ["activate_lights_none", "bring_socks_none", "decrease_volume_none"]
TRAIN = ["Turn on the lights.", "Bring me my socks, please", "It's too loud", "turn the volume down"]


@pytest.fixture
def tok() -> Tokenizer:
    return Tokenizer.build(CLASSES, TRAIN)


def test_vocabulary_layout(tok):
    assert tok.vocab_words == sorted({w for t in TRAIN for w in words(t)})
    assert "it's" in tok.vocab_words and "lights" in tok.vocab_words and "lights." not in tok.vocab_words
    assert tok.itos[: len(SPECIALS)] == ["<pad>", "<bos>", "<eos>", "<unk>", "<sep>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.sep_id) == (0, 1, 2, 3, 4)
    assert [tok.itos[tok.class_offset + c] for c in range(3)] == [f"<class:{c}>" for c in CLASSES]
    assert len(tok) == 5 + 3 + len(tok.vocab_words) and len(set(tok.itos)) == len(tok)


def test_encode_layout_bos_class_sep_words_eos(tok):
    ids = tok.encode(1, "Bring me my SOCKS!")
    assert [tok.itos[i] for i in ids] == ["<bos>", "<class:bring_socks_none>", "<sep>", "bring", "me", "my", "socks", "<eos>"]
    assert ids[1] == tok.class_offset + 1
    assert tok.encode(0, "") == [tok.bos_id, tok.class_offset, tok.sep_id, tok.eos_id]


def test_unknown_word_maps_to_unk(tok):
    ids = tok.encode(2, "turn the radio down")
    assert [tok.itos[i] for i in ids[3:-1]] == ["turn", "the", "<unk>", "down"]
    assert ids.count(tok.unk_id) == 1


def test_decode_words_round_trip(tok):
    for c, text in enumerate(TRAIN[:3]):
        assert tok.decode_words(tok.encode(c, text)) == words(text)
    ids = tok.encode(0, "turn on the lights")
    # padding after <eos> and anything after it is ignored; nothing before <sep> is a word
    assert tok.decode_words(ids + [tok.pad_id, tok.stoi["socks"]]) == ["turn", "on", "the", "lights"]
    assert tok.decode_words([tok.bos_id, tok.stoi["turn"], tok.sep_id, tok.stoi["on"]]) == ["on"]  # no <eos>: to the end
    # class and special tokens emitted after <sep> are not words; <unk> is kept as a word (see evaluation's WER)
    odd = [tok.bos_id, tok.class_offset, tok.sep_id, tok.stoi["turn"], tok.class_offset + 2, tok.bos_id,
           tok.unk_id, tok.eos_id]  # fmt: skip
    assert tok.decode_words(odd) == ["turn", "<unk>"]
    assert tok.decode_words(tok.encode(2, "turn the radio down")) == ["turn", "the", "<unk>", "down"]


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    back = Tokenizer.load(path)
    assert back.itos == tok.itos and back.classes == CLASSES
    assert back.encode(1, "bring me my socks please") == tok.encode(1, "bring me my socks please")
    assert json.loads(path.read_text()) == {"classes": CLASSES, "words": tok.vocab_words}


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        '{"classes": ["a"]}',
        '{"classes": 5, "words": []}',
        '{"classes": ["a"], "words": [1, 2]}',
        "",
    ],
)
def test_corrupt_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        Tokenizer.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a tokenizer file written by prepare") and "\n" not in msg


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a tokenizer file"):
        Tokenizer.load(tmp_path / "absent.json")
