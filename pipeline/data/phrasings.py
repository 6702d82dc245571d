"""Spoken phrasings of the 31 Fluent Speech Commands intents, written for this project.

The synthetic corpus (:mod:`pipeline.data.synth`) says one of these per utterance. Design rules
(checked by ``tests/test_synth.py``):

- lower case, words and apostrophes only (no other punctuation), single spaces;
- at least 5 phrasings per intent, at least 7 on average, all distinct across the whole table;
- words are shared across intents on purpose, so that the task is compositional rather than a
  keyword lookup: "on"/"off", "up"/"down", "louder"/"quieter", "warmer"/"cooler", "bring", the room
  names and the device names each occur in several intents ("turn the lights on in the kitchen" vs
  "turn the heat up in the kitchen" vs "turn the lights off in the kitchen"; "bring me my socks" vs
  "bring the temperature up"; "that's louder than i'd like" is a *decrease*). The words that
  belong to a single intent are the entities that alone define it (the four languages and the
  four objects that can be brought, plus "glass" and "read" in their phrasings) and "stop" (in
  one of the eight phrasings of deactivate_music); see :func:`exclusive_words`.
"""

from __future__ import annotations

from collections import Counter

from pipeline.data.schema import FSC_INTENTS


def _where(room: str | None, optional: bool) -> str:
    """The location words: "in the kitchen"; with no room, "in here" or nothing when ``optional``."""
    if room is None:
        return "" if optional else " in here"
    return f" in the {room}"


def _lights(on: bool, room: str | None) -> tuple[str, ...]:
    """Phrasings for activate_lights_<room> (``on``) or deactivate_lights_<room>; room None = no location."""
    w = "on" if on else "off"
    pre = "" if room is None else f"{room} "  # "kitchen lights"
    opt, req = _where(room, True), _where(room, False)
    phrases = [
        f"turn the lights {w}{opt}",
        f"switch {w} the {pre}lights",
        f"{pre}lights {w} please",
        f"could you turn {w} the lights{req}",
        f"lights {w}{req} now",
    ]
    if on:
        phrases += [f"put the {pre}lights on", f"it's too dark{req}", f"i need some light{req}", f"i can't see{req}"]
    else:
        phrases += [
            f"shut the {pre}lights off", f"it's too bright{req}", f"i don't need the light{req}", f"kill the lights{opt}",
        ]
    return tuple(phrases)


def _heat(up: bool, room: str | None) -> tuple[str, ...]:
    """Phrasings for increase_heat_<room> (``up``) or decrease_heat_<room>."""
    opt, req = _where(room, True), _where(room, False)
    if up:
        return (
            f"turn the heat up{opt}",
            f"turn up the heating{req}",
            f"increase the heating{opt}",
            f"make it warmer{req}",
            f"it's too cold{req}",
            f"bring the temperature up{opt}",
            f"it's cooler than i'd like{req}",
            f"raise the temperature{opt}",
            f"turn the heat on a bit more{req}",
        )
    return (
        f"turn the heat down{opt}",
        f"turn down the heating{req}",
        f"decrease the heating{opt}",
        f"make it cooler{req}",
        f"it's too warm{req}",
        f"bring the temperature down{opt}",
        f"it's warmer than i'd like{req}",
        f"lower the temperature{opt}",
        f"it's too hot{req}",
    )


def _language(lang: str) -> tuple[str, ...]:
    """Phrasings for change language_<Lang>_none."""
    return (
        f"switch the language to {lang}",
        f"change the language to {lang}",
        f"set my language to {lang}",
        f"i'd like to use {lang}",
        f"{lang} please",
        f"make {lang} the language",
        f"switch to {lang}",
        f"from now on speak {lang}",
    )


def _bring(obj: str, article: str, extra: str) -> tuple[str, ...]:
    """Phrasings for bring_<obj>_none, plus one hand-written ``extra``."""
    return (
        f"bring me {article} {obj}",
        f"fetch {article} {obj}",
        f"get me {article} {obj}",
        f"could you bring {article} {obj} please",
        f"i need {article} {obj}",
        f"go and get {article} {obj}",
        f"{obj} please",
        f"bring {article} {obj} to me",
        extra,
    )


_ROOMS = {"none": None, "kitchen": "kitchen", "bedroom": "bedroom", "washroom": "washroom"}

_table: dict[str, tuple[str, ...]] = {
    "change language_none_none": (
        "change the language",
        "switch the language",
        "i'd like to change the language",
        "i want to switch the language",
        "could you change the language please",
        "switch to another language",
        "set a different language",
        "change my language now",
    ),
    "change language_Chinese_none": _language("chinese"),
    "change language_Korean_none": _language("korean"),
    "change language_English_none": _language("english"),
    "change language_German_none": _language("german"),
    "activate_music_none": (
        "play some music",
        "put some music on",
        "turn the music on",
        "switch on the music",
        "turn on some music",
        "i'd like to hear some music",
        "music on please",
        "could you put the music on",
    ),
    "deactivate_music_none": (
        "stop the music",
        "turn the music off",
        "switch off the music",
        "shut the music off",
        "that's enough music",
        "music off please",
        "i don't want to hear any music",
        "turn off the music now",
    ),
    "activate_lamp_none": (
        "turn the lamp on",
        "switch on the lamp",
        "lamp on please",
        "could you turn on the lamp",
        "put the lamp on",
        "i need the lamp on",
        "switch the lamp on now",
    ),
    "deactivate_lamp_none": (
        "turn the lamp off",
        "switch off the lamp",
        "lamp off please",
        "could you turn off the lamp",
        "shut the lamp off",
        "i don't need the lamp on",
        "switch the lamp off now",
    ),
    "increase_volume_none": (
        "turn the volume up",
        "increase the volume",
        "make it louder",
        "louder please",
        "turn the music up",
        "i can't hear any music turn it up",
        "bring the volume up",
        "raise the volume",
        "that's quieter than i'd like",
        "the music is too quiet",
        "that's not loud enough",
        "play the music louder",
    ),
    "decrease_volume_none": (
        "turn the volume down",
        "decrease the volume",
        "make it quieter",
        "quieter please",
        "turn the music down",
        "the music is too loud turn it down",
        "bring the volume down",
        "lower the volume",
        "that's louder than i'd like",
        "it's not quiet enough",
        "make the music less loud",
        "play the music quieter",
    ),
    "bring_newspaper_none": _bring("newspaper", "the", "i'd like to read the newspaper"),
    "bring_juice_none": _bring("juice", "some", "i'd like a glass of juice"),
    "bring_socks_none": _bring("socks", "my", "bring me another pair of socks"),
    "bring_shoes_none": _bring("shoes", "my", "get me a different pair of shoes"),
}
for _loc, _room in _ROOMS.items():
    _table[f"activate_lights_{_loc}"] = _lights(True, _room)
    _table[f"deactivate_lights_{_loc}"] = _lights(False, _room)
    _table[f"increase_heat_{_loc}"] = _heat(True, _room)
    _table[f"decrease_heat_{_loc}"] = _heat(False, _room)
# The washroom is also called the bathroom: extra phrasings for the washroom intents.
_table["activate_lights_washroom"] += ("switch on the bathroom lights",)
_table["deactivate_lights_washroom"] += ("switch off the bathroom lights",)
_table["increase_heat_washroom"] += ("the bathroom needs more heat",)
_table["decrease_heat_washroom"] += ("the bathroom needs less heat",)

#: intent name (FSC's ``action_object_location``) -> its phrasings, in FSC_INTENTS order
PHRASINGS: dict[str, tuple[str, ...]] = {intent: _table[intent] for intent in FSC_INTENTS}
assert set(_table) == set(FSC_INTENTS), sorted(set(_table) ^ set(FSC_INTENTS))


def exclusive_words() -> dict[str, set[str]]:
    """intent -> the words that occur in this intent's phrasings and in no other intent's."""
    owners: dict[str, set[str]] = {}
    for intent, phrases in PHRASINGS.items():
        for phrase in phrases:
            for word in phrase.split():
                owners.setdefault(word, set()).add(intent)
    out: dict[str, set[str]] = {intent: set() for intent in PHRASINGS}
    for word, intents in owners.items():
        if len(intents) == 1:
            out[next(iter(intents))].add(word)
    return out


def phrasing_stats() -> dict:
    """Counts of the table: intents, phrasings (total, min/mean/max per intent), distinct phrasings,
    vocabulary size, and how many intents own at least one exclusive word."""
    counts = Counter({intent: len(p) for intent, p in PHRASINGS.items()})
    all_phrases = [p for ps in PHRASINGS.values() for p in ps]
    vocab = {w for p in all_phrases for w in p.split()}
    excl = exclusive_words()
    return {
        "intents": len(PHRASINGS),
        "phrasings": len(all_phrases),
        "distinct_phrasings": len(set(all_phrases)),
        "min_per_intent": min(counts.values()),
        "mean_per_intent": len(all_phrases) / len(PHRASINGS),
        "max_per_intent": max(counts.values()),
        "vocabulary": len(vocab),
        "intents_with_exclusive_word": sum(1 for words in excl.values() if words),
    }
