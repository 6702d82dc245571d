"""The one atomic-output helper (pipeline.core.atomic) and the stages that replace folders through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.core.atomic import MARKER, atomic_dir, owner_of
from pipeline.errors import UserError

PARAMS = str(Path(__file__).resolve().parents[1] / "params.yaml")


def test_success_replaces_the_folder_and_marks_its_owner(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "x.txt").write_text("one")
    assert (out / "x.txt").read_text() == "one" and owner_of(out) == "stage-a"
    (out / ".gitignore").write_text("/x.txt\n")  # DVC keeps one inside cached output folders
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "y.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, ".gitignore", "y.txt"])
    assert not out.with_name("out.tmp").exists() and not out.with_name("out.old").exists()


def test_failure_leaves_the_previous_output_untouched(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "x.txt").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, owner="stage-a") as tmp:
            (tmp / "x.txt").write_text("half")
            raise RuntimeError("killed")
    assert (out / "x.txt").read_text() == "one"
    assert not out.with_name("out.tmp").exists()


@pytest.mark.parametrize("content", ["foreign", "other-owner", "file"])
def test_a_folder_it_did_not_write_is_refused_not_deleted(tmp_path, content):
    out = tmp_path / "out"
    if content == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        (out / "precious.txt").write_text("keep me")
        if content == "other-owner":
            (out / MARKER).write_text("stage-b\n")
    with pytest.raises(UserError, match="is not an output of stage-a|is not a folder written by stage-a"):
        with atomic_dir(out, owner="stage-a"):
            pytest.fail("the block must not run")
    assert (out.read_text() if content == "file" else (out / "precious.txt").read_text()) in ("precious", "keep me")


def test_legacy_folders_of_known_entries_are_replaceable(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tasks.json").write_text("{}")
    with atomic_dir(out, owner="prepare", legacy=("tasks.json",)) as tmp:
        (tmp / "tasks.json").write_text("[]")
    assert (out / "tasks.json").read_text() == "[]"


def test_prepare_refuses_an_out_folder_it_did_not_write(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    assert cli(["prepare", "--params", PARAMS, "--out", str(home), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {home}: exists and is not an output of prepare") and "\n" not in err
    assert (home / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_users_old_and_tmp_folders_beside_the_output_are_never_deleted(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "x.txt").write_text("one")
    backup = tmp_path / "out.old"  # e.g. `mv out out.old` before a re-run
    backup.mkdir()
    (backup / "precious.txt").write_text("keep")
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "x.txt").write_text("two")
    assert (backup / "precious.txt").read_text() == "keep" and (out / "x.txt").read_text() == "two"
    mine = tmp_path / "out.tmp"  # a folder of that name that a killed run of this stage did not leave
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not a temporary folder of stage-a"):
        with atomic_dir(out, owner="stage-a"):
            pytest.fail("the block must not run")
    assert (mine / "notes.txt").read_text() == "mine" and (out / "x.txt").read_text() == "two"
    (mine / "notes.txt").unlink()
    (mine / MARKER).write_text("stage-a\n")  # a stale one of ours is cleared
    with atomic_dir(out, owner="stage-a") as tmp:
        (tmp / "x.txt").write_text("three")
    assert (out / "x.txt").read_text() == "three" and not mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.old"]
