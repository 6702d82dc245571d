"""Word-level tokenizer for the seq2seq decoder: class tokens first, then the transcript.

A target sequence is ``<bos> <class:NAME> <sep> w_1 ... w_n <eos>`` (the code of COCONUT, Cappellazzo et al.,
"Continual Contrastive Spoken Language Understanding", Findings of ACL 2024, arXiv:2310.02699, emits the
intent first and then the transcript). The intent is read from the first decoding
step, restricted to the class tokens, so it is a proper classifier over classes.

Why word level: spoken-command corpora have small closed vocabularies (FSC: ~100 words), so words are
short sequences and exact tokens for WER; a sentencepiece model would add a training step for no gain
here. Words never seen in training map to ``<unk>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError

PAD, BOS, EOS, UNK, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<sep>"
SPECIALS = (PAD, BOS, EOS, UNK, SEP)

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lower-case words of a transcript (punctuation dropped, apostrophes kept)."""
    return _WORD.findall(text.lower())


@dataclass
class Tokenizer:
    classes: list[str]  # class names, index = class id
    vocab_words: list[str]  # transcript words, sorted

    def __post_init__(self) -> None:
        self.itos = list(SPECIALS) + [f"<class:{c}>" for c in self.classes] + list(self.vocab_words)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id, self.sep_id = (self.stoi[s] for s in SPECIALS)
        self.class_offset = len(SPECIALS)  # token id of class c = class_offset + c

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, classes: list[str], transcripts: list[str]) -> "Tokenizer":
        vocab = sorted({w for t in transcripts for w in words(t)})
        return cls(classes=list(classes), vocab_words=vocab)

    def encode(self, class_id: int, transcript: str) -> list[int]:
        body = [self.stoi.get(w, self.unk_id) for w in words(transcript)]
        return [self.bos_id, self.class_offset + class_id, self.sep_id, *body, self.eos_id]

    def decode_words(self, ids: list[int]) -> list[str]:
        """The transcript words of a decoded sequence (after <sep>, up to <eos>).

        ``<unk>`` is kept as the word ``"<unk>"``: the evaluation maps out-of-vocabulary reference
        words to ``"<unk>"`` too, so dropping it would turn a correct ``<unk>`` into a deletion and
        hide a spurious one (an insertion). Other special and class tokens are skipped.
        """
        out: list[str] = []
        started = False
        for i in ids:
            if i == self.eos_id:
                break
            if i == self.sep_id:
                started = True
                continue
            if started and (i == self.unk_id or i >= self.class_offset + len(self.classes)):
                out.append(self.itos[i])
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"classes": self.classes, "words": self.vocab_words}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        try:
            raw = json.loads(Path(path).read_text())
            classes, vocab = raw["classes"], raw["words"]
            if not all(isinstance(x, list) and all(isinstance(w, str) for w in x) for x in (classes, vocab)):
                raise ValueError("'classes' and 'words' must be lists of strings")
            return cls(classes=list(classes), vocab_words=list(vocab))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a tokenizer file written by prepare ({exc})") from None
