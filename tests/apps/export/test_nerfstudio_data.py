"""The nerfstudio export read by nerfstudio 1.1.5's own data parser: every frame's camera, image and mask."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

nerfstudio_dataparser = pytest.importorskip("nerfstudio.data.dataparsers.nerfstudio_dataparser",
                                            reason="nerfstudio (installed --no-deps, see the Makefile) reads it")


def _parse(folder: Path):
    config = nerfstudio_dataparser.NerfstudioDataParserConfig(
        data=folder / "transforms.json", scale_factor=1.0, downscale_factor=1, orientation_method="none",
        center_method="none", auto_scale_poses=False, eval_mode="all", load_3D_points=False)
    return config.setup().get_dataparser_outputs(split="train")


def test_nerfstudio_reads_a_mask_for_every_frame(exported):
    from nerfstudio.data.utils.data_utils import get_image_mask_tensor_from_path

    flagged, folder = exported.run, exported.out / "nerfstudio"
    poses = {e["name"]: e for e in json.loads((flagged.run / "poses.json").read_text())["images"]}
    outputs = _parse(folder)
    names = [Path(f).stem for f in outputs.image_filenames]
    assert sorted(names) == sorted(n for n in poses if n != flagged.failed)
    assert outputs.mask_filenames is not None and len(outputs.mask_filenames) == len(names)
    for i, (image_file, mask_file) in enumerate(zip(outputs.image_filenames, outputs.mask_filenames)):
        record = poses[Path(image_file).stem]
        mask = get_image_mask_tensor_from_path(mask_file)  # nerfstudio's own reader: [H,W,1] bool
        assert tuple(mask.shape) == (record["height"], record["width"], 1)
        assert Image.open(image_file).size == (record["width"], record["height"])
        fraction = float(mask.float().mean())
        assert 0.02 < fraction < 0.9, (mask_file, fraction)  # the object, not an empty or full mask
        cameras = outputs.cameras
        got = [float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]), float(cameras.cy[i])]
        assert got == pytest.approx([record["fl_x"], record["fl_y"], record["cx"], record["cy"]], rel=1e-5)
        np.testing.assert_allclose(cameras.camera_to_worlds[i].numpy(), np.asarray(record["c2w"])[:3], atol=1e-5)


def test_the_masks_are_the_photos_objects(exported):
    """The mask is the run's mask source (the synthetic photos' alpha), pixel for pixel."""
    folder = exported.out / "nerfstudio"
    doc = json.loads((folder / "transforms.json").read_text())
    for frame in doc["frames"]:
        rgba = np.asarray(Image.open(folder / frame["file_path"]))
        mask = np.asarray(Image.open(folder / frame["mask_path"]))
        assert rgba.shape[-1] == 4
        np.testing.assert_array_equal(mask > 127, rgba[..., 3] >= 128)


def test_failed_photo_is_no_frame_and_is_listed(exported):
    flagged, folder = exported.run, exported.out / "nerfstudio"
    doc = json.loads((folder / "transforms.json").read_text())
    assert flagged.failed not in {f["name"] for f in doc["frames"]}
    assert [e["name"] for e in doc["excluded_frames"]] == [flagged.failed]
    assert not any(flagged.failed in p.name for p in (folder / "images").iterdir())


def test_the_point_cloud_is_the_colmap_models_points(exported):
    """splatfacto starts from points.ply (`ply_file_path`); it holds the COLMAP model's points and colours."""
    pycolmap = pytest.importorskip("pycolmap")
    trimesh = pytest.importorskip("trimesh")
    folder = exported.out / "nerfstudio"
    doc = json.loads((folder / "transforms.json").read_text())
    cloud = trimesh.load(folder / doc["ply_file_path"])
    rec = pycolmap.Reconstruction()
    rec.read_binary(str(exported.out / "colmap" / "sparse" / "0"))
    ids = sorted(rec.points3D)
    xyz = np.stack([rec.points3D[i].xyz for i in ids])
    rgb = np.stack([rec.points3D[i].color for i in ids])
    np.testing.assert_allclose(np.asarray(cloud.vertices), xyz, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], rgb)
