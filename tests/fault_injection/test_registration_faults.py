"""Stage 3 under faults: kills at random points (a real subprocess, SIGKILL) and full disks (ENOSPC).

The kill sweep is `registration_faults.py` (here with a few trials; run the script for more). Full disks are
injected where a real one reports them under delayed allocation: the fsync of the atomic writer's temporary file.
"""
import errno
import importlib.util
import os
from pathlib import Path

import pytest

from congeal.common.atomic import is_temporary
from congeal.common.errors import WriteError

HERE = Path(__file__).resolve().parent
SMALL = {"grid": {"n_azimuth": 8, "n_elevation": 6}, "search": {"render_size": 48, "render_samples": 16},
         "refine": {"steps": 20}, "mapping": {"steps": 10}}
KW = dict(preset="fast", features="rgb", device="cpu", seed=0, progress=False, overrides=SMALL)


def _faults_script():
    spec = importlib.util.spec_from_file_location("registration_faults", HERE / "registration_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kills_at_random_points_then_rerun_equal_an_uninterrupted_run(tmp_path, capsys):
    """SIGKILL at a random time, while a map is written and while a picture is written; each rerun's folder equals
    the uninterrupted run's byte for byte, with no staging folder or temporary file left."""
    faults = _faults_script()
    code = faults.main(["--kills", "3", "--modes", "time,maps,pictures", "--work", str(tmp_path), "--seed", "1"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert '"killed": true' in lines[1] and '"killed": true' in lines[2], out  # the write-time kills did fire


# ---- full disks ------------------------------------------------------------------------------------------------
def _fill_disk_at(monkeypatch, wanted):
    """fsync of a temporary file whose destination satisfies `wanted` fails with ENOSPC."""
    real = os.fsync
    hits = []

    def fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if is_temporary(path) and wanted(path):
            hits.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a descriptor's file")
    monkeypatch.setattr(os, "fsync", fsync)
    return hits


def _snapshot(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder: Path):
    return [p for p in folder.rglob(".*") if is_temporary(p) or p.name.startswith(".chunk-")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished chunked run of two photos (two chunks), and the collection."""
    from congeal.run.chunked import register_in_chunks
    from congeal.synthetic.generator import make_synthetic_collection

    root = tmp_path_factory.mktemp("full-disk")
    collection = Path(make_synthetic_collection(root / "collection", mode="same", n_images=3, seed=3))
    photos = root / "photos"
    photos.mkdir()
    for path in sorted((collection / "images").glob("*.png"))[:2]:
        os.link(path, photos / path.name)
    run = root / "run"
    register_in_chunks(collection / "canonical.safetensors", photos, run, chunk_size=1, **KW)
    return {"collection": collection, "photos": photos, "run": run, "root": root}


def _copy_run(finished, tmp_path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished["run"], out)
    return out


def test_a_full_disk_while_a_chunk_writes_its_map_names_the_file_and_keeps_the_run(finished, tmp_path,
                                                                                  monkeypatch):
    """Redoing a chunk on a full disk: a WriteError naming the map, the published run untouched, no half chunk."""
    import shutil

    from congeal.run.chunked import register_in_chunks

    out = _copy_run(finished, tmp_path)
    shutil.rmtree(out / "chunks" / "chunk-0001")  # redo this chunk
    before = _snapshot(out)
    hits = _fill_disk_at(monkeypatch, lambda p: p.suffix == ".npz" and p.parent.name == "maps")
    with pytest.raises(WriteError) as caught:
        register_in_chunks(finished["collection"] / "canonical.safetensors", finished["photos"], out, chunk_size=1,
                           **dict(KW, overrides=dict(SMALL, mapping={"steps": 3})))
    message = str(caught.value)
    assert hits and "No space left on device" in message and "Fix:" in message
    assert ".npz" in message and str(out) in message  # names the file it could not write
    assert _snapshot(out) == before  # poses.json, maps/, state/, the other chunk: byte for byte
    assert _leftovers(out) == []


def test_a_full_disk_while_the_merge_writes_poses_json_keeps_the_previous_one(finished, tmp_path, monkeypatch):
    from congeal.run.chunked import merge_chunks

    out = _copy_run(finished, tmp_path)
    before = _snapshot(out)
    _fill_disk_at(monkeypatch, lambda p: p.name.startswith(".poses.json."))
    with pytest.raises(WriteError, match="poses.json"):
        merge_chunks(out)
    assert _snapshot(out) == before and _leftovers(out) == []


def test_a_full_disk_while_photos_are_added_keeps_every_earlier_file(finished, tmp_path, monkeypatch):
    """`--add` on a full disk: the error names poses.json, every earlier file is byte for byte as it was, and the
    same command run again (disk freed) gives what an undisturbed `--add` gives."""
    import shutil

    from congeal.run.pipeline import add_images, register_collection

    base = tmp_path / "base"
    register_collection(finished["collection"] / "canonical.safetensors", finished["photos"], base, **KW)
    new = tmp_path / "new"
    new.mkdir()
    third = sorted((finished["collection"] / "images").glob("*.png"))[2]
    os.link(third, new / third.name)
    out, clean = tmp_path / "full", tmp_path / "clean"
    shutil.copytree(base, out)
    shutil.copytree(base, clean)
    before = _snapshot(out)
    with monkeypatch.context() as patch:
        _fill_disk_at(patch, lambda p: p.name.startswith(".poses.json."))
        with pytest.raises(WriteError, match="poses.json"):
            add_images(out, new, device="cpu", progress=False)
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before and _leftovers(out) == []
    add_images(out, new, device="cpu", progress=False)  # the disk has room again
    add_images(clean, new, device="cpu", progress=False)
    assert _snapshot(out) == _snapshot(clean)


def test_congeal_register_on_a_full_disk_prints_one_line_naming_the_file(finished, tmp_path, monkeypatch, capsys):
    from congeal.cli import main

    _fill_disk_at(monkeypatch, lambda p: p.name.startswith(".poses.json."))
    out = tmp_path / "cli-run"
    code = main(["register", "--canonical", str(finished["collection"] / "canonical.safetensors"),
                 "--images", str(finished["photos"]), "--out", str(out), "--preset", "fast", "--features", "rgb",
                 "--device", "cpu", "--quiet", *[f"--set={g}.{k}={v}" for g, d in SMALL.items() for k, v in d.items()]])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and str(out / "poses.json") in lines[0] and "No space left on device" in lines[0], err
    assert "Traceback" not in err
    assert not (out / "poses.json").exists() and _leftovers(out) == []
