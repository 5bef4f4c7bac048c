"""Atomic writes: a reader (or a relaunch after kill -9) never sees a half-written file."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from congeal.common.atomic import atomic_path, write_json, write_npz


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "poses.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": [1, 2, 3]})
    assert json.loads(path.read_text()) == {"b": [1, 2, 3]}
    assert [p.name for p in path.parent.iterdir()] == ["poses.json"]


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    path = tmp_path / "maps.npz"
    write_npz(path, xyz=np.zeros((2, 2, 3), np.float32))
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert np.load(path)["xyz"].shape == (2, 2, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["maps.npz"]


WRITER = r"""
import sys, numpy as np
from congeal.common.atomic import write_npz
i = 0
while True:
    write_npz(sys.argv[1] + f"/f{i % 5}.npz", data=np.full((256, 256), i, np.float32))
    i += 1
"""


def test_kill_minus_nine_during_a_write_loop_leaves_only_whole_files(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    try:
        deadline = time.time() + 30
        while len(list(tmp_path.glob("f*.npz"))) < 5 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finals = sorted(tmp_path.glob("f*.npz"))
    assert len(finals) == 5
    for path in finals:  # each is a complete, loadable archive with one constant value
        data = np.load(path)["data"]
        assert data.shape == (256, 256) and (data == data.flat[0]).all()


def test_written_files_get_the_umask_mode_not_mkstemps(tmp_path):
    """Outputs are readable by the group/others the umask allows (mkstemp alone would leave 0600)."""
    import os
    import stat

    from congeal.common.atomic import write_json

    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o027)
        write_json(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o640
    finally:
        os.umask(previous)


# ---- full disks: a clear error naming the file, the old file intact, nothing left behind -------------------------
def _enospc(*_args, **_kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_the_rename_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from congeal.common.errors import InputError, WriteError

    path = tmp_path / "poses.json"
    write_json(path, {"old": True})
    monkeypatch.setattr("congeal.common.atomic.os.replace", _enospc)
    with pytest.raises(WriteError) as caught:
        write_json(path, {"old": False})
    assert str(path) in str(caught.value) and "No space left on device" in str(caught.value)
    assert "Fix:" in str(caught.value) and isinstance(caught.value, InputError)  # the commands print it as one line
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["poses.json"]


def test_a_full_disk_in_the_middle_of_a_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from congeal.common.errors import WriteError

    path = tmp_path / "maps" / "cat.npz"
    write_npz(path, xyz=np.zeros((4, 4, 3), np.float32))
    before = path.read_bytes()

    def half_then_full(handle, **arrays):  # what a disk filling up mid-archive does
        handle.write(b"PK\x03\x04 partial archive")
        _enospc()

    monkeypatch.setattr("congeal.common.atomic.np.savez_compressed", half_then_full)
    with pytest.raises(WriteError, match="cat.npz"):
        write_npz(path, xyz=np.ones((4, 4, 3), np.float32))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["cat.npz"]


def test_a_library_that_reports_a_full_disk_in_words_is_recognised(tmp_path, monkeypatch):
    """safetensors writes the file itself and reports `No space left on device (os error 28)` in its message."""
    import torch

    from congeal.common.atomic import write_safetensors
    from congeal.common.errors import WriteError

    def save_file(tensors, filename, metadata=None):
        open(filename, "wb").write(b"\x00" * 10)
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                           "message: \"No space left on device\" })")

    monkeypatch.setattr("safetensors.torch.save_file", save_file)
    with pytest.raises(WriteError, match="bank.safetensors"):
        write_safetensors(tmp_path / "bank.safetensors", {"x": torch.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_other_failures_are_not_disguised_as_full_disks(tmp_path):
    from congeal.common.errors import WriteError

    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
            1 / 0
    with pytest.raises(FileNotFoundError) as caught:  # a missing source is not the destination's fault
        from congeal.common.atomic import copy_file

        copy_file(tmp_path / "missing", tmp_path / "b.txt")
    assert not isinstance(caught.value, WriteError)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_a_write_error_naming_the_file(tmp_path):
    import os

    from congeal.common.errors import WriteError

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="poses.json"):
            write_json(folder / "poses.json", {})
    finally:
        folder.chmod(0o755)


# ---- temporary files a kill leaves behind ------------------------------------------------------------------------
def test_temporaries_of_a_killed_writer_are_recognised_and_removed(tmp_path):
    from congeal.common.atomic import _temporary, is_temporary, remove_temporaries

    tmp = _temporary(tmp_path / "maps" / "cat.npz")  # what a kill between create and rename leaves
    assert is_temporary(tmp) and not is_temporary(tmp_path / "maps" / "cat.npz")
    assert not is_temporary(tmp_path / ".hidden") and not is_temporary(tmp_path / ".chunk-0001.rank0.tmp")
    write_json(tmp_path / "poses.json", {})
    assert remove_temporaries(tmp_path) == [tmp]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["maps", "poses.json"]


# ---- publish: link-then-rename, first writer wins ----------------------------------------------------------------
def test_publish_replaces_atomically_and_never_writes_into_the_source(tmp_path):
    from congeal.common.atomic import publish, same_file

    old, new, dst = tmp_path / "old.bin", tmp_path / "new.bin", tmp_path / "run" / "maps" / "a.bin"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    assert publish(old, dst) and same_file(old, dst)
    assert publish(new, dst) and same_file(new, dst)
    assert old.read_bytes() == b"old"  # the earlier source (still linked elsewhere) is untouched
    assert [p.name for p in dst.parent.iterdir()] == ["a.bin"]


def test_publish_falls_back_to_an_atomic_copy_without_hard_links(tmp_path, monkeypatch):
    import errno

    from congeal.common.atomic import publish, same_file

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    src, dst = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    src.write_bytes(b"bank")
    monkeypatch.setattr("congeal.common.atomic.os.link", no_links)
    assert publish(src, dst) and dst.read_bytes() == b"bank" and not same_file(src, dst)
    src.write_bytes(b"other")
    assert not publish(src, dst, only_if_absent=True) and dst.read_bytes() == b"bank"
    assert [p.name for p in dst.parent.iterdir()] == ["dst.bin"]


def _race_publish(args):
    from congeal.common.atomic import publish

    src, dst, wait_until = args
    while time.time() < wait_until:
        pass
    return publish(src, dst, only_if_absent=True)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_two_writers_of_the_shared_bank_one_wins_whole_and_the_other_is_untouched(tmp_path, kind):
    """The shared candidate bank: whoever finishes first publishes it; the other keeps its own file unchanged and
    the shared file is whole, byte for byte one writer's (the old code copied the loser's file over a hard link)."""
    import concurrent.futures
    import multiprocessing

    from congeal.common.atomic import same_file

    for attempt in range(20 if kind == "threads" else 3):
        sources = []
        for rank in range(2):
            src = tmp_path / f"rank{rank}-{attempt}" / "cache" / "bank.safetensors"
            write_npz(src, data=np.full((64, 64), rank, np.float32))  # different bytes per writer
            sources.append(src)
        snapshots = [s.read_bytes() for s in sources]
        shared = tmp_path / f"shared-{attempt}" / "cache" / "bank.safetensors"
        start = time.time() + 0.2
        if kind == "threads":
            pool = concurrent.futures.ThreadPoolExecutor(2)
        else:
            pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        with pool:
            wins = list(pool.map(_race_publish, [(s, shared, start) for s in sources]))
        assert sorted(wins) == [False, True], wins
        winner = sources[wins.index(True)]
        assert same_file(winner, shared)
        assert [s.read_bytes() for s in sources] == snapshots
        assert [p.name for p in shared.parent.iterdir()] == ["bank.safetensors"]
