"""Strict typed params: dataclasses parsed from params.yaml, one registry of top-level sections.

Each track declares its sections where it lives (``register_section("cwcl", CwclConfig)`` in a module
``params.py`` of its package, or in :mod:`pipeline.config` for the prepare and class-incremental
sections); :func:`known_sections` imports those modules (and nothing else), so adding a track never means
editing a closed list here. Keep a track's ``params.py`` and its package ``__init__`` light: every stage
imports them to know which top-level sections exist. Parsing is strict: an unknown key, a wrong type or an impossible value raises
:class:`ParamsError` naming the dotted key and what is allowed, before any work starts.

Also here: the one ``seeds`` rule and the one rule for names that become paths (strategies, runs).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from pipeline.errors import ParamsError

# ----------------------------------------------------------------------------- generic parsing


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {type_name(inner)}"
    if origin is dict:
        return f"a mapping of names to {type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (ints to floats, dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return convert(value, arg, key)
            except ParamsError:
                continue
    elif origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, list):
            return [convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        _, inner = typing.get_args(tp)
        if isinstance(value, dict):
            # ``recipes: {finetune: }``: a null mapping value is an empty mapping (only for mapping schemas)
            empty = {} if dataclasses.is_dataclass(inner) else None
            return {str(k): convert(empty if v is None else v, inner, f"{key}.{k}") for k, v in value.items()}
    elif tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, key)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported annotation {tp!r} for {key}")
    raise ParamsError(f"params: {key}: expected {type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict, prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys; ``prefix`` is the dotted key for messages.

    After construction, ``obj.validate(prefix)`` runs if the class defines it.
    """
    if not isinstance(data, dict):
        raise ParamsError(f"params: {prefix}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in set(data) - set(names))
    if unknown:
        raise ParamsError(f"params: {prefix}.{unknown[0]}: unknown key; allowed keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ParamsError(f"params: {prefix}.{missing[0]}: missing; required keys: {', '.join(required)}")
    kwargs = {k: convert(v, hints[k], f"{prefix}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(prefix)
    return obj


def require(cond: bool, key: str, message: str) -> None:
    """Raise ``ParamsError("params: <key>: <message>")`` unless ``cond``."""
    if not cond:
        raise ParamsError(f"params: {key}: {message}")


# ----------------------------------------------------------------------------- names and seeds

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+_.-]{0,63}")


def check_name(name: Any, key: str) -> str:
    """A name that becomes a folder (a strategy, a run): letters, digits and ``+ - _ .``, starting with a
    letter or digit, at most 64 characters, so it can never be ``.``, ``..``, absolute or contain a slash."""
    require(isinstance(name, str) and NAME_RE.fullmatch(name) is not None and ".." not in name, key,
            f"{name!r}: use letters, digits and + - _ . (starting with a letter or digit, no '..', at most 64)")
    return name


def parse_seeds(raw: dict) -> list[int]:
    """The top-level ``seeds``: one or more distinct integers >= 0 (default [0])."""
    seeds = convert(raw.get("seeds", [0]), list[int], "seeds")
    require(len(seeds) >= 1 and len(set(seeds)) == len(seeds) and min(seeds) >= 0, "seeds",
            f"list one or more distinct integers >= 0, got {seeds!r}")
    return seeds


def set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``dotted = "a.b.c"`` in a params mapping, creating the missing levels
    (``--set key=value`` overrides of the benchmarks, like ``dvc exp run -S``)."""
    node = raw
    *path, last = dotted.split(".")
    for k in path:
        node = node.setdefault(k, {})
    node[last] = value


# ----------------------------------------------------------------------------- sections

_SECTIONS: dict[str, Any] = {"seeds": list[int]}


def register_section(name: str, schema: Any) -> None:
    """Declare a top-level section of params.yaml and its schema (a dataclass or a type annotation)."""
    if _SECTIONS.get(name, schema) != schema:
        raise RuntimeError(f"params section {name!r} registered twice with different schemas")
    _SECTIONS[name] = schema


def section_modules() -> list[str]:
    """The modules that declare sections: pipeline.config and every ``pipeline/<package>/params.py`` on disk
    (found by file, so discovering them imports no other package)."""
    import pipeline

    root = Path(pipeline.__path__[0])
    tracks = sorted(p.parent.name for p in root.glob("*/params.py")
                    if p.parent.name != "core" and (p.parent / "__init__.py").is_file())
    return ["pipeline.config", *(f"pipeline.{name}.params" for name in tracks)]


def _discover() -> None:
    for name in section_modules():
        importlib.import_module(name)


def known_sections() -> dict[str, Any]:
    """Every registered top-level section and its schema."""
    _discover()
    return dict(_SECTIONS)


def read_yaml(path: str | Path) -> dict:
    """params.yaml as a mapping; a top-level section no track declares is an error (a typo'd section would
    otherwise be ignored silently and its stage run on defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params: {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"params: {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params: {path}: expected a mapping at the top level")
    allowed = known_sections()
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        names = ["seeds", *sorted(n for n in allowed if n != "seeds")]  # the same order whatever imported first
        raise ParamsError(f"params: {unknown[0]}: unknown top-level section; allowed sections: {', '.join(names)}")
    return data


def section(raw: dict, cls: Any, name: str) -> Any:
    """Parse the top-level section ``name`` with schema ``cls``; a missing section takes the defaults."""
    value = raw.get(name)
    if dataclasses.is_dataclass(cls):
        return from_dict(cls, value or {}, name)
    return convert(value if value is not None else {}, cls, name)
