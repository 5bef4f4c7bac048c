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
