"""`congeal export RUN --format ... --out DIR`: writes the formats, prints what it left out and how to open each,
and turns a bad run or destination into one error line (exit 2)."""
import json
import shutil


def cli(*argv) -> int:
    """`congeal <argv>` as the command line runs it."""
    from congeal.cli import main

    return main([str(a) for a in argv])


def test_export_prints_the_left_out_photo_and_the_command_that_opens_the_export(synthetic_run, tmp_path, capsys):
    _, source = synthetic_run("same")
    run = tmp_path / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("cache", "pictures"))
    doc = json.loads((run / "poses.json").read_text())
    failed = doc["images"][0]["name"]
    doc["images"][0].update(status="failed", status_reason="a test says so")
    (run / "poses.json").write_text(json.dumps(doc))
    out = tmp_path / "export"
    assert cli("export", run, "--format", "glb", "--format", "mesh", "--out", out, "--mesh-resolution", "32") == 0
    printed = capsys.readouterr().out
    assert f"left out {failed}: failed: a test says so" in printed
    assert "import_scene.gltf" in printed and str(out / "scene.glb") in printed
    assert (out / "scene.glb").is_file() and (out / "mesh" / "canonical.obj").is_file()
    info = json.loads(next(line for line in printed.splitlines() if line.startswith("{")))
    assert info["formats"] == ["glb", "mesh"] and info["excluded"] == [failed]


def test_export_errors_are_one_line(synthetic_run, tmp_path, capsys):
    _, run = synthetic_run("same")
    assert cli("export", tmp_path / "missing", "--format", "glb", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: no such run folder" in err[0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli("export", run, "--format", "glb", "--out", blocker / "export") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker) in err[0] and "Fix:" in err[0]
