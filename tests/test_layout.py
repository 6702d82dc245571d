"""The package's layering, read from the import statements of every module (including imports inside
functions): the core depends on no track, shared code depends on no track, and tracks do not import each
other's internals or the stages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pipeline"

#: package -> pipeline packages (or top-level modules) it may import
ALLOWED = {
    "core": {"errors", "core"},
    "data": {"errors", "core", "config", "data"},
    "losses": {"errors", "core", "losses"},
    "models": {"errors", "core", "config", "data", "models"},
    "report": {"errors", "core", "config", "report"},
    # the generator GenView and CDvG both build on: shared, so both tracks may import it
    "diffusion": {"errors", "core", "diffusion"},
}
TRACKS = ["cdvg", "continual", "cwcl", "genview", "m3col"]  # a method track may import the shared packages and itself, never another track


def pipeline_imports(path: Path) -> set[str]:
    """The second component of every ``pipeline.X...`` import in ``path`` (X)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {n.split(".")[1] for n in names if n.startswith("pipeline.") and n.count(".") >= 1}
    return found


def modules(package: str) -> list[Path]:
    return sorted((PKG / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_shared_packages_import_no_track(package):
    for f in modules(package):
        extra = pipeline_imports(f) - ALLOWED[package]
        assert not extra, f"{f.relative_to(PKG.parent)} imports pipeline.{sorted(extra)[0]}"


@pytest.mark.parametrize("track", TRACKS)
def test_tracks_import_shared_code_and_themselves_only(track):
    allowed = set().union(*ALLOWED.values()) | {track}
    for f in modules(track):
        extra = pipeline_imports(f) - allowed
        assert not extra, f"{f.relative_to(PKG.parent)} imports pipeline.{sorted(extra)[0]}"


def test_every_package_is_placed():
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED) | set(TRACKS) | {"stages"}, "place a new package in ALLOWED or TRACKS"
