"""Which classes never reach training: held-out intents (or image classes) and colour x shape combinations.

Both are drawn by a seed (``cwcl.heldout_seed``, default the run's seed) with numpy's PCG64, so the draw
depends on nothing but the seed and the class list, or given as a list of names in params.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.params import require


def pick_classes(spec: int | float | list[str], names: list[str], seed: int, key: str, noun: str = "intent") -> list[str]:
    """Held-out classes among ``names``: a count (int) or a fraction (float) drawn by ``seed``, or the listed
    ones; returned in the order of ``names``. An unknown name, a repeat or fewer than 2 classes left for
    training is a params error."""
    if isinstance(spec, (int, float)):
        count = spec if isinstance(spec, int) else max(1, round(spec * len(names)))
        require(1 <= count <= len(names) - 2, key, f"hold out 1 to {len(names) - 2} of the {len(names)} {noun}s")
        chosen = set(np.random.default_rng(seed).choice(len(names), size=count, replace=False).tolist())
        return [name for i, name in enumerate(names) if i in chosen]
    for i, name in enumerate(spec):
        require(name in names, f"{key}[{i}]", f"{name!r} is not an {noun} of the prepared data (e.g. {names[0]!r})"
                if noun[0] in "aeiou" else f"{name!r} is not a {noun} of the prepared data (e.g. {names[0]!r})")
    require(len(set(spec)) == len(spec), key, f"an {noun} is listed twice" if noun[0] in "aeiou" else f"a {noun} is listed twice")
    require(len(spec) <= len(names) - 2, key, f"at least 2 of the {len(names)} {noun}s must stay for training")
    return [name for name in names if name in set(spec)]


def pick_combos(spec: float | list[str], shapes: list[str], colours: list[str], seed: int, key: str) -> list[str]:
    """Held-out ``"colour shape"`` combinations: a fraction of all of them, drawn by ``seed`` so that every
    colour and every shape keeps at least one combination in training and the held-out ones spread evenly
    (each shape and each colour loses at most ceil(n / |shapes|) resp. ceil(n / |colours|)); or the listed ones
    (checked for the same coverage). Returned in (shape, colour) order of the given lists."""
    every = [f"{c} {s}" for s in shapes for c in colours]
    if isinstance(spec, float):
        n = max(1, round(spec * len(every)))
        cap_s, cap_c = -(-n // len(shapes)), -(-n // len(colours))
        require(cap_s < len(colours) and cap_c < len(shapes), key,
                f"{spec}: too many combinations to keep every colour and shape in training")
        rng = np.random.default_rng(seed)
        for _ in range(1000):  # a greedy pass over a random order; a rare dead end redraws the order
            per_s, per_c, chosen = dict.fromkeys(shapes, 0), dict.fromkeys(colours, 0), set()
            for i in rng.permutation(len(every)):
                c, s = every[i].split(" ", 1)
                if per_s[s] < cap_s and per_c[c] < cap_c:
                    chosen.add(every[i])
                    per_s[s] += 1
                    per_c[c] += 1
                    if len(chosen) == n:
                        return [x for x in every if x in chosen]
        raise AssertionError("no balanced draw found")  # pragma: no cover - caps above make one exist
    for i, name in enumerate(spec):
        require(name in every, f"{key}[{i}]", f"{name!r}: expected \"<colour> <shape>\" from the source's "
                f"colours ({', '.join(colours)}) and shapes ({', '.join(shapes)})")
    require(len(set(spec)) == len(spec), key, "a combination is listed twice")
    for s in shapes:
        require(any(f"{c} {s}" not in spec for c in colours), key, f"every {s} would be held out; keep one in training")
    for c in colours:
        require(any(f"{c} {s}" not in spec for s in shapes), key, f"every {c} shape would be held out; keep one")
    return [x for x in every if x in set(spec)]
