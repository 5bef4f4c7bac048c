"""Outputs stay inside the run: `congeal edit --name ../../x` or an absolute path, an `edits` symlink leading out,
a photo name that is a path, a labels file named `...json`; names from strangers become safe, distinct file names.

Before issue 31, `write_edit` joined the name to RUN/edits/ as given (writing edit.json and grid.png two folders
above it), and `congeal propagate` took `Path(labels).stem` as the folder under RUN/labels/ (`...json` -> `..`, the
run folder itself).
"""
import argparse
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from congeal.apps.edits.edit_folder import edit_name, write_edit
from congeal.commands.edit import run as edit_command
from congeal.commands.propagate import default_out
from congeal.common.errors import InputError
from congeal.common.safe_names import ensure_inside, folder_name, safe_file_name, unique_file_names
from congeal.run.folder import RunFolder
from congeal.run.registered_run import RegisteredRun


def _files(root: Path) -> set:
    return {p for p in root.rglob("*") if p.is_file()}


class _StubRun(RegisteredRun):
    """What write_edit asks of a run (its folder, its photo names, each photo's alpha), without registering one."""

    def __init__(self, root: Path, names):  # noqa: D107 - no RegisteredRun.__init__: no run files needed
        self.folder = RunFolder(root)
        self.names = list(names)

    def photo(self, name, required=True):
        return SimpleNamespace(alpha=None)


def _stub_run(root: Path, names=("img_000",)) -> _StubRun:
    root.mkdir(parents=True, exist_ok=True)
    return _StubRun(root, names)


def _edited(names=("img_000",)):
    return {n: (np.full((8, 8, 3), 0.5, np.float32), np.ones((8, 8), np.float32)) for n in names}


@pytest.mark.parametrize("name", ["../../x", "../x", "..", ".", "", "a/b", "/tmp/absolute-edit", ".hidden"])
def test_edit_name_cannot_leave_the_edits_folder(tmp_path, name):
    if name.startswith("/"):
        name = str(tmp_path / "absolute-edit")
    run = _stub_run(tmp_path / "shared" / "run")
    before = _files(tmp_path)
    with pytest.raises(InputError) as caught:
        write_edit(run, name, _edited(), {"kind": "test"})
    assert "Fix:" in str(caught.value) and "\n" not in str(caught.value)
    assert _files(tmp_path) == before  # nothing written anywhere, inside or outside the run


def test_edit_command_refuses_before_any_work(tmp_path, monkeypatch):
    """`congeal edit RUN --name ../../x` stops at the name, before the run is even rendered."""
    run = _stub_run(tmp_path / "run")
    monkeypatch.setattr("congeal.run.registered_run.RegisteredRun", lambda *a, **k: run)
    args = argparse.Namespace(run=str(run.root), device="cpu", decal=None, texture="checker", name="../../x",
                           photo=None, at=None, texture_scale=None, strength=0.85, tile=32)
    with pytest.raises(InputError, match="is a path, not a folder name"):
        edit_command(args)


def test_edits_symlink_out_of_the_run_is_refused(tmp_path):
    run = _stub_run(tmp_path / "run")
    elsewhere = tmp_path / "home-of-the-user"
    elsewhere.mkdir()
    os.symlink(elsewhere, run.folder.edits_dir)  # a shared run folder may hold such a link
    with pytest.raises(InputError, match="outside"):
        write_edit(run, "decal-x", _edited(), {"kind": "test"})
    assert not any(elsewhere.iterdir())


def test_photo_name_from_the_run_cannot_be_a_path(tmp_path):
    """Photo names come from the run's files (someone else's poses.json): `../../x` must not become a path."""
    run = _stub_run(tmp_path / "run", names=("../../../escaped",))
    with pytest.raises(InputError, match="outside"):
        write_edit(run, "decal-x", _edited(run.names), {"kind": "test"})
    assert not (tmp_path / "escaped.png").exists() and not list(tmp_path.rglob("escaped.png"))


def test_a_good_edit_is_written_inside(tmp_path):
    run = _stub_run(tmp_path / "run")
    paths = write_edit(run, edit_name("decal", "my sticker (1).png"), _edited(), {"kind": "test"})
    for path in paths:
        assert (run.root / "edits").resolve() in path.resolve().parents


def test_labels_file_named_dots_never_makes_the_run_the_output(tmp_path):
    run = _stub_run(tmp_path / "run")
    for labels in ("...json", "..json", ".json", "labels.json", "../../evil.json", "a b/c.json"):
        out = default_out(run, labels)
        assert out.resolve() != run.root.resolve()
        assert (run.root / "labels").resolve() in out.resolve().parents, (labels, out)
    assert default_out(run, "labels.json") == run.root / "labels" / "labels"  # the ordinary case is unchanged
    # what the old default was: RUN/labels/<stem>, and the stem of "...json" is ".."
    assert (run.root / "labels" / Path("...json").stem).resolve() == run.root.resolve()


def test_safe_file_names():
    names = ["left wing", "left_wing", "left/wing", "left.wing", "left\\wing", "Left_Wing", "LEFT_WING", "é", "é",
             "CON", "", "..", "x" * 240, "x" * 241, "名前"]
    stems = unique_file_names(names)
    assert len(stems) == len(set(names))
    folded = {s.casefold() for s in stems.values()}
    assert len(folded) == len(stems)  # distinct even on a case-insensitive disk
    for name, stem in stems.items():
        assert stem and stem not in (".", "..") and not stem.startswith(".")
        assert "/" not in stem and "\\" not in stem and len(stem.encode("utf-8")) <= 96
    assert safe_file_name("left_wing") == "left_wing" and safe_file_name("名前") == "名前"
    assert safe_file_name("x" * 240) != safe_file_name("x" * 241)  # shortened, told apart by the hash
    assert safe_file_name("left wing") == safe_file_name("left wing")  # stable across runs


def test_folder_name_and_ensure_inside(tmp_path):
    assert folder_name("my edit", "--name") == "my edit"
    for bad in ("../x", "/abs", "a/b", "..", ".x", "", "a\x00b", "a\nb", "c:x"):
        with pytest.raises(InputError):
            folder_name(bad, "--name")
    assert ensure_inside(tmp_path, tmp_path / "a" / "b", "it") == tmp_path / "a" / "b"
    with pytest.raises(InputError, match="outside"):
        ensure_inside(tmp_path / "a", tmp_path / "a" / ".." / "b", "it")
