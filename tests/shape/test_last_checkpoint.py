"""A resume from the first step checkpoint keeps writing the trial's last.ckpt (not last-v1.ckpt)."""
import os
from types import SimpleNamespace

from congeal.shape.last_checkpoint import keep_writing_last_checkpoint


class Callback:
    """ModelCheckpoint's surface that the function reads."""

    CHECKPOINT_NAME_LAST = "last"

    def __init__(self, dirpath, save_last=True, last_model_path=""):
        self.dirpath, self.save_last, self.last_model_path = dirpath, save_last, last_model_path

    def format_checkpoint_name(self, metrics, name):
        return os.path.join(self.dirpath, f"{name}.ckpt")

    def file_exists(self, path, trainer):
        return os.path.exists(path)


def test_the_same_trials_last_checkpoint_is_adopted(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"killed run")
    callback = Callback(str(tmp_path))
    keep_writing_last_checkpoint(SimpleNamespace(ckpt_path=str(tmp_path / "epoch=0-step=1.ckpt"),
                                                 checkpoint_callbacks=[callback]))
    assert callback.last_model_path == str(tmp_path / "last.ckpt")


def test_fresh_runs_other_folders_and_missing_files_keep_lightnings_versioning(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "last.ckpt").write_bytes(b"")
    cases = [
        (None, Callback(str(tmp_path / "a"))),                                      # fresh run
        (str(tmp_path / "b" / "x.ckpt"), Callback(str(tmp_path / "a"))),            # another trial's checkpoint
        (str(tmp_path / "b" / "x.ckpt"), Callback(str(tmp_path / "b"))),            # no last.ckpt there
        (str(tmp_path / "a" / "x.ckpt"), Callback(str(tmp_path / "a"), save_last=False)),
        (str(tmp_path / "a" / "x.ckpt"), Callback(str(tmp_path / "a"), last_model_path="/known")),
    ]
    for ckpt_path, callback in cases:
        before = callback.last_model_path
        keep_writing_last_checkpoint(SimpleNamespace(ckpt_path=ckpt_path, checkpoint_callbacks=[callback]))
        assert callback.last_model_path == before
