"""Test helpers: a fake Hugging Face hub cache and a socket guard.

    snapshot = put_in_hub_cache(tmp_path / "hub", "facebook/dinov2-giant", saved_model_dir)
    forbid_network(monkeypatch)          # any socket connect raises for the rest of the test
    from helpers.hub_cache import offline  # noqa: F401  (fixture: no threestudio, empty cache, no network)
"""
import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import Union

import pytest


def put_in_hub_cache(cache: Union[str, Path], repo_id: str, source: Union[str, Path], revision: str = "main",
                     commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Copy the files under `source` into `cache` in the hub layout: blobs/<sha256>, snapshots/<commit>/<file> as
    relative symlinks to the blobs, and refs/<revision> holding the commit. Returns the snapshot folder."""
    cache, source = Path(cache), Path(source)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


class NetworkUsed(AssertionError):
    pass


def forbid_network(monkeypatch) -> None:
    """Make every socket connect raise `NetworkUsed` for the rest of the test (and set HF_HUB_OFFLINE=1)."""
    def refuse(self, *args, **kwargs):
        raise NetworkUsed(f"a test opened a network connection to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No threestudio, an empty HF cache, HF_HUB_OFFLINE=1 and no sockets (the doctor's tests)."""
    monkeypatch.delenv("THREESTUDIO_ROOT", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    forbid_network(monkeypatch)
    with pytest.raises(NetworkUsed):  # the guard is live
        socket.create_connection(("huggingface.co", 443))
    return tmp_path
