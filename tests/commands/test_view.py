"""`congeal view RUN`: serves the viewer (and stops when told), `--export FILE` writes a self-contained page."""
import importlib.util
import json
import shutil
import sys

import pytest


pytestmark = pytest.mark.skipif(importlib.util.find_spec("viser") is None,
                                reason="`congeal view` needs the [viewer] extra (pip install viser)")


def cli(*argv) -> int:
    """`congeal <argv>` as the command line runs it."""
    from congeal.cli import main

    return main([str(a) for a in argv])


def test_view_serves_and_exports(synthetic_run, tmp_path, capsys):
    from congeal.apps.viewer.server import free_port

    _, run = synthetic_run("same")
    port = free_port()
    assert cli("view", run, "--port", port, "--stop-after", "0.5", "--mesh-resolution", "32") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    info = json.loads(next(line for line in lines if line.startswith("{")))
    assert info["url"].endswith(f":{port}") and info["photos"] >= 2
    assert any(f"open {info['url']}" in line for line in lines)
    page = tmp_path / "shared" / "run.html"
    assert cli("view", run, "--export", page, "--mesh-resolution", "32") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["export"] == str(page) and page.stat().st_size == summary["bytes"] > 100_000
    html = page.read_text()
    assert "__VISER_EMBED_DATA__" in html and "<html" in html.lower()


def test_view_refuses_foreign_folders(synthetic_run, tmp_path, capsys):
    _, run = synthetic_run("same")
    assert cli("view", tmp_path, "--export", tmp_path / "x.html") == 2
    assert "register.json" in capsys.readouterr().err
    old = shutil.copytree(run, tmp_path / "old", ignore=shutil.ignore_patterns("cache"))
    (old / "canonical.safetensors").write_bytes(b"junk")
    assert cli("view", old, "--export", tmp_path / "x.html") == 2
    assert "canonical.safetensors" in capsys.readouterr().err
