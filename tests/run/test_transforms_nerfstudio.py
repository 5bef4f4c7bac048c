"""transforms.json read by nerfstudio's own data parser gives every frame the camera poses.json holds.

nerfstudio (installed `--no-deps` with the few modules its data parser imports, see the Makefile) is the reader
most users point at a registration run; its parser takes top-level intrinsics for *every* frame when they are present.
"""
from pathlib import Path

import numpy as np
import pytest

from congeal.run.folder import RunFolder

nerfstudio_dataparser = pytest.importorskip("nerfstudio.data.dataparsers.nerfstudio_dataparser")


def _parse(transforms: Path):
    config = nerfstudio_dataparser.NerfstudioDataParserConfig(
        data=transforms, scale_factor=1.0, downscale_factor=1, orientation_method="none", center_method="none",
        auto_scale_poses=False, eval_mode="all", load_3D_points=False)
    return config.setup().get_dataparser_outputs(split="train")


def _check_frames_equal_poses(run: RunFolder) -> None:
    outputs = _parse(run.transforms)
    poses = run.read_poses()
    cameras = outputs.cameras
    assert len(outputs.image_filenames) == len(poses)
    for i, filename in enumerate(outputs.image_filenames):
        record = poses[Path(filename).stem]
        got = [float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]), float(cameras.cy[i])]
        assert got == pytest.approx([record["fl_x"], record["fl_y"], record["cx"], record["cy"]], rel=1e-5, abs=1e-3)
        assert (int(cameras.width[i]), int(cameras.height[i])) == (record["width"], record["height"])
        # nerfstudio keeps the OpenGL camera axes threestudio uses: camera_to_worlds is c2w's top three rows
        np.testing.assert_allclose(cameras.camera_to_worlds[i].numpy(), np.asarray(record["c2w"])[:3], atol=1e-5)


def test_nerfstudio_reads_every_frames_own_camera(synthetic_run):
    _collection, run_dir = synthetic_run("same")
    run = RunFolder(run_dir)
    poses = run.read_poses()
    # the photos' cameras differ (focal lengths and principal points), so a shared top level would be wrong
    assert len({(round(p["fl_x"], 3), round(p["cx"], 3)) for p in poses.values()}) > 1
    _check_frames_equal_poses(run)


def test_shared_intrinsics_stay_at_the_top_level(synthetic_run, tmp_path):
    """When every frame shares one camera, the top level holds it (instant-ngp style) and nerfstudio agrees."""
    import json

    from congeal.run.outputs import write_poses, write_transforms

    _collection, run_dir = synthetic_run("same")
    source = RunFolder(run_dir)
    copy = RunFolder(tmp_path / "run")
    copy.root.mkdir()
    first = next(iter(source.read_poses().values()))
    records = [dict(r, **{k: first[k] for k in ("fl_x", "fl_y", "cx", "cy")}) for r in source.read_poses().values()]
    write_poses(copy.poses, records)
    paths = [Path(e["path"]) for e in json.loads(source.register.read_text())["images"]]
    write_transforms(copy.transforms, records, paths)
    doc = json.loads(copy.transforms.read_text())
    assert doc["fl_x"] == first["fl_x"] and doc["cx"] == first["cx"]
    _check_frames_equal_poses(copy)
