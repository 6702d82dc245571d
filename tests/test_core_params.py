"""pipeline.core.params: the section registry, the seeds rule and typed parsing of a track's section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from pipeline.core import params as P
from pipeline.errors import ParamsError


@dataclass
class ToyInner:
    width: int = 8


@dataclass
class ToySection:
    kind: Literal["a", "b"] = "a"
    rate: float = 0.1
    inner: ToyInner = field(default_factory=ToyInner)
    names: list[str] = field(default_factory=list)
    cap: Optional[int] = None

    def validate(self, key: str) -> None:
        P.require(self.rate > 0, f"{key}.rate", "must be > 0")


@pytest.fixture
def toy_registered():
    P.register_section("toy", ToySection)
    yield
    P._SECTIONS.pop("toy", None)


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def error(fn) -> str:
    with pytest.raises(ParamsError) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith("params: ") and "\n" not in msg
    return msg


def test_a_registered_section_is_accepted_and_parsed(tmp_path, toy_registered):
    raw = P.read_yaml(write(tmp_path, {"toy": {"kind": "b", "rate": 1, "inner": {"width": 3}, "cap": 4}, "seeds": [2]}))
    toy = P.section(raw, ToySection, "toy")
    assert toy == ToySection(kind="b", rate=1.0, inner=ToyInner(3), cap=4) and isinstance(toy.rate, float)
    assert P.section({}, ToySection, "toy") == ToySection()  # a missing section takes the defaults
    assert P.parse_seeds(raw) == [2] and P.parse_seeds({}) == [0]


def test_an_unregistered_section_is_an_error(tmp_path):
    msg = error(lambda: P.read_yaml(write(tmp_path, {"toy": {}})))
    assert msg.startswith("params: toy: unknown top-level section; allowed sections: seeds, cdvg, cil, cwcl, data,")


def test_the_class_incremental_sections_are_discovered():
    assert {"seeds", "data", "features", "split", "model", "train", "cil", "recipes", "evaluate"} <= set(P.known_sections())
    assert P.section_modules()[0] == "pipeline.config"


@pytest.mark.parametrize("value, needle", [
    ({"kind": "c"}, "params: toy.kind: expected one of 'a', 'b', got 'c'"),
    ({"rate": "fast"}, "params: toy.rate: expected a number, got 'fast'"),
    ({"rate": -1}, "params: toy.rate: must be > 0"),
    ({"inner": {"width": 2.5}}, "params: toy.inner.width: expected an integer, got 2.5"),
    ({"inner": {"depth": 2}}, "params: toy.inner.depth: unknown key; allowed keys: width"),
    ({"names": ["x", 3]}, "params: toy.names[1]: expected a string, got 3"),
    ({"cap": True}, "params: toy.cap: expected an integer or null, got True"),
    ({"typo": 1}, "params: toy.typo: unknown key"),
])  # fmt: skip
def test_bad_values_name_the_key(value, needle):
    assert error(lambda: P.section({"toy": value}, ToySection, "toy")).startswith(needle)


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], "0", [0.5], [True]])
def test_one_seeds_rule(seeds):
    assert error(lambda: P.parse_seeds({"seeds": seeds})).startswith(("params: seeds: ", "params: seeds[0]: "))


def test_a_section_cannot_be_registered_twice_with_another_schema(toy_registered):
    P.register_section("toy", ToySection)  # the same schema again is fine (a module imported twice)
    with pytest.raises(RuntimeError, match="registered twice"):
        P.register_section("toy", ToyInner)


def test_a_null_mapping_value_is_empty_only_for_mapping_schemas():
    assert P.section({"r": {"a": None}}, dict[str, ToyInner], "r") == {"a": ToyInner()}
    assert error(lambda: P.section({"t": {"a": None}}, dict[str, str], "t")).startswith(
        "params: t.a: expected a string, got None")


@pytest.mark.parametrize("template, needle", [
    ("{action", "not a valid template"),
    ("{name!r}", "plain fields only"),
    ("{name:>10}", "plain fields only"),
    ("a {label}", "use the field {name} only"),
])  # fmt: skip
def test_a_bad_template_is_one_line_naming_the_key(template, needle):
    from pipeline.models.params import EmbedConfig

    key = "embed.intent_template" if template == "{action" else "embed.class_template"
    value = {"intent_template": template} if template == "{action" else {"class_template": template}
    msg = error(lambda: P.section({"embed": value}, EmbedConfig, "embed"))
    assert msg.startswith(f"params: {key}: ") and needle in msg
