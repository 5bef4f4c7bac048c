"""An export folder is swapped in whole: a new one replaces the old, a failed one leaves the old one as it was."""
import pytest

from congeal.apps.export.export_folder import ensure_folder, staged_folder
from congeal.common.atomic import write_text
from congeal.common.errors import WriteError


def test_a_finished_folder_replaces_the_previous_one_whole(tmp_path):
    destination = tmp_path / "out" / "colmap"
    destination.mkdir(parents=True)
    (destination / "stale.txt").write_text("old")
    with staged_folder(destination) as stage:
        assert stage.parent == destination.parent and not any(stage.iterdir())
        write_text(stage / "sparse" / "0" / "cameras.txt", "new")
    assert sorted(p.name for p in destination.rglob("*")) == ["0", "cameras.txt", "sparse"]
    assert [p.name for p in destination.parent.iterdir()] == ["colmap"]  # no staging or old folder left


def test_a_failed_export_leaves_the_previous_folder_as_it_was(tmp_path):
    destination = tmp_path / "colmap"
    destination.mkdir()
    (destination / "kept.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(destination) as stage:
            write_text(stage / "half.txt", "half")
            raise RuntimeError("killed half way")
    assert [p.name for p in destination.iterdir()] == ["kept.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["colmap"]


def test_a_destination_under_a_file_is_one_write_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(WriteError, match="file.txt"):
        with staged_folder(blocker / "colmap"):
            pass
    with pytest.raises(WriteError, match="is a file"):
        ensure_folder(blocker)
