"""The one table of attribute names, their values, synonyms and caption templates.

Everything a caption or a prompt can say comes from :data:`VOCAB`: the shapes corpus draws its captions from
it, the digits corpus its colours, and later stages build prompts with ``VOCAB["prompt"]`` ("a {colour}
{shape}") and the canonical value names (the first synonym of each value). ``attributes.json`` in every
prepared source folder is this table as JSON (plus the RGB values used).

A template is a string with ``{attribute}`` slots; a slot is filled with one synonym of the image's value
of that attribute. ``{position_name}`` is the bare position word ("left", "centre"), for the "left: a red
triangle" order. "a" before a vowel becomes "an" after filling.
"""

from __future__ import annotations

import re

# attribute -> value (canonical name, also the class name) -> synonyms (the first is the canonical word)
ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "shape": {
        "circle": ["circle", "disc", "round shape"],
        "square": ["square", "box", "block"],
        "triangle": ["triangle", "trigon", "three-sided shape"],
        "diamond": ["diamond", "rhombus", "lozenge"],
        "star": ["star", "five-pointed star", "pentagram"],
        "cross": ["cross", "plus sign", "plus"],
        "hexagon": ["hexagon", "six-sided shape", "hex"],
        "heart": ["heart", "love heart", "heart shape"],
    },
    "colour": {
        "red": ["red", "crimson", "scarlet"],
        "orange": ["orange", "amber", "tangerine"],
        "yellow": ["yellow", "golden", "lemon"],
        "green": ["green", "emerald", "lime"],
        "cyan": ["cyan", "turquoise", "aqua"],
        "blue": ["blue", "azure", "cobalt"],
        "purple": ["purple", "violet", "plum"],
        "pink": ["pink", "rose", "fuchsia"],
        "white": ["white", "ivory", "snowy"],
        "brown": ["brown", "chocolate", "bronze"],
    },
    "size": {
        "small": ["small", "tiny", "little"],
        "medium": ["medium", "medium-sized", "mid-sized"],
        "large": ["large", "big", "huge"],
    },
    "position": {  # phrases; {position_name} gives the bare canonical word
        "left": ["on the left", "at the left", "to the left"],
        "right": ["on the right", "at the right", "to the right"],
        "top": ["at the top", "near the top", "up top"],
        "bottom": ["at the bottom", "near the bottom", "down low"],
        "centre": ["in the centre", "in the middle", "at the center"],
    },
    "background": {
        "plain": ["plain", "flat", "uniform"],
        "gradient": ["gradient", "shaded", "fading"],
        "noise": ["noisy", "textured", "speckled"],
    },
    "digit": {
        "zero": ["zero", "0", "nought"],
        "one": ["one", "1"],
        "two": ["two", "2"],
        "three": ["three", "3"],
        "four": ["four", "4"],
        "five": ["five", "5"],
        "six": ["six", "6"],
        "seven": ["seven", "7"],
        "eight": ["eight", "8"],
        "nine": ["nine", "9"],
    },
}

# RGB of each colour value (what the renderer paints before jitter); bright, so they stand out on the
# dark backgrounds (every background channel is <= 130, every colour has a channel >= 200)
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35), "orange": (245, 140, 25), "yellow": (240, 225, 40), "green": (45, 200, 60),
    "cyan": (40, 215, 225), "blue": (55, 95, 245), "purple": (165, 70, 225), "pink": (250, 125, 195),
    "white": (240, 240, 240), "brown": (205, 125, 60),
}

# templates mentioning shape, colour, size and position (some the background too): the "full" captions
FULL_TEMPLATES = [
    "a {size} {colour} {shape} {position}",
    "{position_name}: a {size} {colour} {shape}",
    "{position}, a {size} {colour} {shape}",
    "there is a {size} {colour} {shape} {position}",
    "a {colour} {shape}, {size}, {position}",
    "a {size} {shape} in {colour} {position}",
    "a picture of a {size} {colour} {shape} {position} on a {background} background",
    "{position_name} of the image: one {size} {colour} {shape}",
    "the {shape} is {colour} and {size} and sits {position}",
    "a {size} {colour} {shape} {position} against a {background} backdrop",
]
# templates mentioning only some attributes: the "partial" captions
PARTIAL_TEMPLATES = [
    "a {colour} {shape}",
    "a {shape}",
    "a {size} {shape}",
    "a {shape} {position}",
    "something {colour} {position}",
    "a {colour} {shape} on a {background} background",
    "the image shows a {shape}",
]
TEMPLATES = FULL_TEMPLATES + PARTIAL_TEMPLATES
DIGIT_TEMPLATES = ["a {colour} {digit}", "the digit {digit} in {colour}", "a handwritten {colour} {digit}"]

VOCAB: dict = {
    "attributes": ATTRIBUTES,
    "colour_rgb": COLOUR_RGB,
    "full_templates": FULL_TEMPLATES,
    "partial_templates": PARTIAL_TEMPLATES,
    "digit_templates": DIGIT_TEMPLATES,
    "prompt": "a {colour} {shape}",
}

SLOT_RE = re.compile(r"\{(\w+)\}")
_AN_RE = re.compile(r"\ba (?=[aeiou])")


def values(attribute: str) -> list[str]:
    """The canonical values of ``attribute`` in table order (index = the value's id)."""
    return list(ATTRIBUTES[attribute])


def synonym(attribute: str, value: str, pick: int) -> str:
    """Synonym number ``pick`` (modulo their count) of ``value``."""
    syns = ATTRIBUTES[attribute][value]
    return syns[pick % len(syns)]


def fill(template: str, words: dict[str, str]) -> str:
    """``template`` with its slots filled from ``words`` and "a" before a vowel turned into "an"."""
    return _AN_RE.sub("an ", template.format(**words))


def tokens(caption: str) -> list[str]:
    """A caption's words as the vocabulary check sees them: lower case, split on spaces, ``,:.`` stripped."""
    return [w.strip(",:.") for w in caption.lower().split() if w.strip(",:.")]


def vocabulary() -> set[str]:
    """Every word a caption may contain: the synonyms' words, the value names and the templates' words."""
    words = {"an"}
    for table in ATTRIBUTES.values():
        for name, syns in table.items():
            words.add(name)
            for s in syns:
                words.update(tokens(s))
    for t in TEMPLATES + DIGIT_TEMPLATES:
        words.update(tokens(SLOT_RE.sub(" ", t)))
    return words
