"""Chunked registration: sharded and resumed runs equal the one-shot run (the engine is per-photo independent)."""
import shutil

import numpy as np
import pytest
import torch

from congeal.run.chunked import done_chunks, merge_chunks, register_in_chunks
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
    from congeal.registration.config import make_config
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
