"""One row of the accuracy matrix: after task k, accuracy on each seen task's test data, per class, WER."""

from __future__ import annotations

import torch

from pipeline.data.prepared import Prepared, to_inputs
from pipeline.models.slu import SLUModel


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two word sequences."""
    prev = list(range(len(b) + 1))
    for i, wa in enumerate(a, 1):
        cur = [i]
        for j, wb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wa != wb)))
        prev = cur
    return prev[-1]


def word_error_rate(refs: list[list[str]], hyps: list[list[str]]) -> float:
    """Corpus WER: total edits / total reference words."""
    words = sum(len(r) for r in refs)
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / max(words, 1)


@torch.no_grad()
def evaluate_row(model: SLUModel, prep: Prepared, split: str, task: int, device, batch_size: int, decode: bool, autocast) -> dict:
    """Accuracy on the ``split`` data of tasks 0..task (prediction among the classes seen so far)."""
    tasks = prep.manifest["tasks"][: task + 1]
    seen = sorted(c for t in tasks for c in t)
    allowed = torch.tensor(seen, device=device)
    ds = prep.splits[split]
    seen_set = set(seen)
    index = [i for i, y in enumerate(ds.targets) if y in seen_set]
    was_training = model.training
    model.eval()
    preds, hyps = [], []
    for start in range(0, len(index), batch_size):
        items = [ds[i] for i in index[start : start + batch_size]]
        feats, lens = to_inputs(items, device)
        with autocast():
            classes, seq = model.predict(feats, lens, allowed, decode=decode)
        preds += classes.cpu().tolist()
        if decode:
            hyps += [prep.tokenizer.decode_words(s) for s in seq.cpu().tolist()]
    model.train(was_training)
    labels = [ds.targets[i] for i in index]
    correct = [p == y for p, y in zip(preds, labels)]
    classes = prep.manifest["classes"]
    per_task, n_per_task = [], []
    for t in map(set, tasks):
        hits = [c for c, y in zip(correct, labels) if y in t]
        per_task.append(sum(hits) / max(len(hits), 1))
        n_per_task.append(len(hits))
    per_class = {}
    for c in seen:
        hits = [ok for ok, y in zip(correct, labels) if y == c]
        per_class[classes[c]] = sum(hits) / max(len(hits), 1)
    wer = None
    if decode:
        from pipeline.data.tokenizer import words

        refs = [words(prep.meta[split][i]["transcript"]) for i in index]
        refs = [[w if w in prep.tokenizer.stoi else "<unk>" for w in r] for r in refs]
        wer = word_error_rate(refs, hyps)
    return {
        "acc_per_task": per_task,
        "acc_seen": sum(correct) / max(len(correct), 1),
        "acc_per_class": per_class,
        "n_test_per_task": n_per_task,
        "wer_seen": wer,
    }
