"""The Fluent Speech Commands intent schema (31 intents = action / object / location).

An intent's name is ``f"{action}_{object}_{location}"`` with FSC's own strings, absent slots being
the literal ``none`` (e.g. ``"activate_lights_kitchen"``, ``"change language_Chinese_none"``).

Class indices: the earlier FSC class-incremental paper (Cappellazzo et al.) gives a fixed class
order as a list of indices but not the index of each intent. We index intents by their position in
the alphabetically sorted list of names, which depends on nothing but the names (documented decision).
"""

from __future__ import annotations

_LIGHTS = ["lights_none", "lights_kitchen", "lights_bedroom", "lights_washroom"]
_HEAT = ["heat_none", "heat_kitchen", "heat_bedroom", "heat_washroom"]

FSC_INTENTS: tuple[str, ...] = tuple(
    sorted(
        [f"change language_{lang}_none" for lang in ("none", "Chinese", "Korean", "English", "German")]
        + [f"{act}_{obj}" for act in ("activate", "deactivate") for obj in ["music_none", "lamp_none", *_LIGHTS]]
        + [f"{act}_{obj}" for act in ("increase", "decrease") for obj in ["volume_none", *_HEAT]]
        + [f"bring_{obj}_none" for obj in ("newspaper", "juice", "socks", "shoes")]
    )
)
assert len(FSC_INTENTS) == 31

# The fixed FSC class order of Cappellazzo et al. (indices into FSC_INTENTS).
FSC_PAPER_ORDER: tuple[int, ...] = (
    19, 27, 30, 28, 15, 4, 2, 9, 10, 22, 11, 7, 1, 25, 16, 14, 5, 8, 29, 12, 21, 17, 3, 20, 23, 6, 18, 24, 26, 0, 13,
)


def fsc_intent(action: str, obj: str, location: str) -> str:
    """The intent name of one FSC row."""
    return f"{action}_{obj}_{location}"


def split_intent(intent: str) -> tuple[str, str, str]:
    """Inverse of :func:`fsc_intent`."""
    action, obj, location = intent.split("_")
    return action, obj, location
