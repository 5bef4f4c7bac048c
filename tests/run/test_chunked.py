"""Chunked registration: sharded and resumed runs equal the one-shot run (the engine is per-photo independent)."""
import shutil

import numpy as np
import pytest
import torch

from congeal.run.chunked import ChunkedRegistration, done_chunks, merge_chunks, register_in_chunks
from congeal.common.errors import InputError
from congeal.run.outputs import read_poses

KW = dict(preset="fast", features="rgb", device="cpu", seed=0, progress=False)


def _seed_cache(one_shot_run, out):
    """Reuse the one-shot run's candidate bank (same key) so the test does not re-render the grid."""
    (out / "cache").mkdir(parents=True)
    for bank in (one_shot_run / "cache").glob("candidates-*.safetensors"):
        shutil.copy(bank, out / "cache" / bank.name)


def _four_photos(collection_dir):
    """Four of the eight photos: per-photo independence lets a subset stand for the whole (and halves the cost)."""
    from congeal.registration.registration_config import make_config
    from congeal.run.pipeline import load_images

    photos = load_images(collection_dir / "images", make_config("fast", features="rgb"))
    return photos.subset(photos.names[:4])


def _assert_same_run(a, b, pose_tol=1e-4):
    poses_a, poses_b = read_poses(a / "poses.json"), read_poses(b / "poses.json")
    assert list(poses_a) and set(poses_a) <= set(poses_b)
    for name in poses_a:
        np.testing.assert_allclose(poses_a[name]["c2w"], poses_b[name]["c2w"], atol=pose_tol, err_msg=name)
        assert abs(poses_a[name]["fovy_deg"] - poses_b[name]["fovy_deg"]) < 1e-3
        map_a, map_b = np.load(a / "maps" / f"{name}.npz"), np.load(b / "maps" / f"{name}.npz")
        np.testing.assert_array_equal(map_a["valid"], map_b["valid"])
        np.testing.assert_allclose(map_a["xyz"], map_b["xyz"], atol=1e-3, equal_nan=True)


@pytest.mark.slow
def test_two_shards_then_merge_equal_one_shot_run(synthetic_run, tmp_path):
    collection, one_shot = synthetic_run("same")
    out = tmp_path / "sharded"
    _seed_cache(one_shot, out)
    canonical, photos = collection / "canonical.safetensors", _four_photos(collection)
    mine = register_in_chunks(canonical, photos, out, chunk_size=1, rank=1, world_size=2, merge=False, **KW)
    assert mine == [1, 3]
    with pytest.raises(InputError, match="not finished"):
        merge_chunks(out)  # rank 0's chunks are missing: nothing merged
    assert not (out / "poses.json").exists()
    assert register_in_chunks(canonical, photos, out, chunk_size=1, rank=0, world_size=2, merge=False, **KW) == [0, 2]
    merge_chunks(out)
    _assert_same_run(out, one_shot)


@pytest.mark.slow
def test_resume_after_a_kill_registers_only_missing_chunks(synthetic_run, tmp_path):
    collection, one_shot = synthetic_run("same")
    out = tmp_path / "resumed"
    _seed_cache(one_shot, out)
    canonical, photos = collection / "canonical.safetensors", _four_photos(collection)

    class Killed(Exception):
        pass

    def die_after_first(index, folder):
        # what a kill leaves: one committed chunk and the staging folder of the next one
        (folder.parent / ".chunk-0001.rank0.tmp" / "maps").mkdir(parents=True)
        raise Killed

    with pytest.raises(Killed):
        register_in_chunks(canonical, photos, out, chunk_size=2, on_chunk=die_after_first, **KW)
    assert done_chunks(out) == [0]
    first_chunk_mtime = (out / "chunks" / "chunk-0000" / "poses.json").stat().st_mtime_ns
    assert register_in_chunks(canonical, photos, out, chunk_size=2, **KW) == [1]
    assert (out / "chunks" / "chunk-0000" / "poses.json").stat().st_mtime_ns == first_chunk_mtime
    assert not list((out / "chunks").glob(".*tmp"))
    _assert_same_run(out, one_shot)


def test_relaunch_with_other_photos_is_refused(synthetic_collection, tmp_path):
    collection = synthetic_collection("same")
    out = tmp_path / "run"
    out.mkdir()
    (out / "chunks.json").write_text('{"format": "congeal-chunks-v1", "names": ["x", "y"], "chunk_size": 4}')
    with pytest.raises(InputError, match="other photos"):
        register_in_chunks(collection / "canonical.safetensors", collection / "images", out, chunk_size=4, **KW)


# ---- small settings: the tests below are about files and processes, not accuracy ---------------------------------
SMALL = {"grid": {"n_azimuth": 8, "n_elevation": 6}, "search": {"render_size": 48, "render_samples": 16},
         "refine": {"steps": 20}, "mapping": {"steps": 10}}
SMALL_KW = dict(KW, overrides=SMALL)


def _files(folder, skip=("chunk.json", "merged.json")):
    """{relative path: bytes} of every file (the versions of chunk.json/merged.json are fresh per commit)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def test_the_feature_extractor_is_built_once_per_process(synthetic_collection, tmp_path, monkeypatch):
    import congeal.run.chunked as chunked

    collection = synthetic_collection("same")
    photos = _four_photos(collection)
    calls = []
    real = chunked.build_configured_extractor

    def counting(cfg, device):
        calls.append(cfg.features.name)
        return real(cfg, device)

    monkeypatch.setattr(chunked, "build_configured_extractor", counting)
    monkeypatch.setattr(chunked, "_EXTRACTOR", {})
    canonical = collection / "canonical.safetensors"
    assert register_in_chunks(canonical, photos.subset(photos.names[:3]), tmp_path / "a", chunk_size=1,
                              merge=False, **SMALL_KW) == [0, 1, 2]
    assert register_in_chunks(canonical, photos.subset(photos.names[:2]), tmp_path / "b", chunk_size=1,
                              merge=False, **SMALL_KW) == [0, 1]
    assert calls == ["rgb"]  # five chunks, two runs, one build


def test_merge_replaces_the_files_of_a_redone_chunk(synthetic_collection, tmp_path):
    """Register, redo one chunk with other settings, merge: the run's poses, maps and state are the new chunk's."""
    import shutil

    from congeal.common.atomic import same_file
    from congeal.run.folder import RunFolder

    collection = synthetic_collection("same")
    photos = _four_photos(collection)
    photos = photos.subset(photos.names[:2])
    canonical, out = collection / "canonical.safetensors", tmp_path / "run"
    register_in_chunks(canonical, photos, out, chunk_size=1, **SMALL_KW)
    name = photos.names[1]
    old_map = (out / "maps" / f"{name}.npz").read_bytes()
    old_pose = read_poses(out / "poses.json")[name]

    def redone_chunk_equals_the_run(label):
        chunk, run = RunFolder(out / "chunks" / "chunk-0001"), RunFolder(out)
        assert read_poses(run.poses)[name] == read_poses(chunk.poses)[name], label
        assert read_poses(run.poses)[name]["c2w"] != old_pose["c2w"], "the redo must change the pose " + label
        for a, b in ((chunk.map_path(name), run.map_path(name)), (chunk.state_path(name), run.state_path(name))):
            assert a.read_bytes() == b.read_bytes(), f"{label}: {b} is stale"
        assert run.map_path(name).read_bytes() != old_map
        assert same_file(chunk.map_path(name), run.map_path(name))
        first = photos.names[0]  # the other chunk is untouched
        assert same_file(out / "chunks" / "chunk-0000" / "maps" / f"{first}.npz", run.map_path(first))

    # (a) redone in place: the chunk folder removed, the chunk registered again with other settings
    shutil.rmtree(out / "chunks" / "chunk-0001")
    other = dict(SMALL_KW, overrides=dict(SMALL, refine={"steps": 3}, mapping={"steps": 2}))
    assert register_in_chunks(canonical, photos, out, chunk_size=1, **other) == [1]
    redone_chunk_equals_the_run("redone in place")

    # (b) a chunk folder registered elsewhere and moved in (e.g. from another machine); the run still holds the
    # files of (a), which this chunk replaces only through the merge
    old_map, old_pose = (out / "maps" / f"{name}.npz").read_bytes(), read_poses(out / "poses.json")[name]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(out / "chunks.json", elsewhere / "chunks.json")
    third = dict(SMALL_KW, overrides=dict(SMALL, refine={"steps": 8}, mapping={"steps": 4}))
    ChunkedRegistration(canonical, photos, elsewhere, chunk_size=1, **third).run_chunk(1)
    shutil.rmtree(out / "chunks" / "chunk-0001")
    shutil.move(str(elsewhere / "chunks" / "chunk-0001"), str(out / "chunks" / "chunk-0001"))
    assert (out / "maps" / f"{name}.npz").read_bytes() == old_map  # stale until merged
    merge_chunks(out)
    redone_chunk_equals_the_run("moved in")

    # incremental: a merge with no redone chunk publishes nothing
    import congeal.run.chunked as chunked

    published = []
    real = chunked.publish_chunk
    chunked.publish_chunk = lambda out_dir, index: published.append(index) or real(out_dir, index)
    try:
        merge_chunks(out)
    finally:
        chunked.publish_chunk = real
    assert published == []


def test_pending_chunks_are_dealt_to_every_rank_in_turn(tmp_path):
    """A relaunch after rank 1 of 2 died (every even chunk done): both ranks share the odd ones, none idles."""
    from congeal.run.chunked import share_pending

    for index in range(0, 10, 2):
        (tmp_path / "chunks" / f"chunk-{index:04d}").mkdir(parents=True)
    shares = [share_pending(tmp_path, 10, rank, 2) for rank in range(2)]
    assert shares == [[1, 5, 9], [3, 7]]
    assert sorted(shares[0] + shares[1]) == [1, 3, 5, 7, 9]
    assert [share_pending(tmp_path, 10, rank, 3) for rank in range(3)] == [[1, 7], [3, 9], [5]]


def test_two_processes_without_a_bank_then_merge_equal_one_process(synthetic_collection, tmp_path):
    """Two ranks start at once on an empty cache: both build the candidate bank, one publishes it (atomically, the
    other's copy untouched), and the merged run equals a one-process run of the same chunks byte for byte."""
    import subprocess
    import sys

    collection = synthetic_collection("same")
    canonical = collection / "canonical.safetensors"
    photos = _four_photos(collection)
    names = photos.names
    script = (
        "import sys, json\n"
        "from congeal.registration.registration_config import make_config\n"
        "from congeal.run.pipeline import load_images\n"
        "from congeal.run.chunked import register_in_chunks\n"
        "canonical, images, out, rank, world, names = sys.argv[1:7]\n"
        "kw = json.loads(sys.argv[7])\n"
        "photos = load_images(images, make_config('fast', features='rgb'))\n"
        "photos = photos.subset(json.loads(names))\n"
        "register_in_chunks(canonical, photos, out, chunk_size=1, rank=int(rank), world_size=int(world),\n"
        "                   merge=False, **kw)\n"
    )
    import json

    kw = json.dumps({k: v for k, v in SMALL_KW.items()})
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    out = tmp_path / "two"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(canonical), str(collection / "images"), str(out),
                               str(rank), "2", json.dumps(names), kw], env=env) for rank in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    merge_chunks(out)
    one = tmp_path / "one"
    done = subprocess.run([sys.executable, "-c", script, str(canonical), str(collection / "images"), str(one), "0",
                           "1", json.dumps(names), kw], env=env)
    assert done.returncode == 0
    merge_chunks(one)
    banks = list((out / "cache").glob("candidates-*.safetensors"))
    assert len(banks) == 1 and not [p for p in out.rglob(".*") if p.name.endswith(".tmp") or ".tmp." in p.name]
    assert _files(out) == _files(one)
