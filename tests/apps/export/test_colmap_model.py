"""The COLMAP export read by pycolmap (the real client): cameras, poses, points and tracks agree with the run."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from congeal.apps.export.colmap_model import colmap_pose

pycolmap = pytest.importorskip("pycolmap", reason="the COLMAP export's tests read it with pycolmap")


def _c2w_cv(record) -> np.ndarray:
    return np.asarray(record["c2w"], np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])


def _cam_from_world(image) -> np.ndarray:
    pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
    return np.asarray(pose.matrix(), np.float64)


def _reconstruction(folder: Path, kind: str):
    rec = pycolmap.Reconstruction()
    getattr(rec, f"read_{kind}")(str(folder))
    return rec


def test_colmap_pose_puts_what_the_camera_looks_at_in_front_of_it():
    # a threestudio camera at (0, -3, 0) looking at the origin, z up: OpenGL axes x right, y up (= world z), -z ahead
    c2w = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -3.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    qvec, tvec = colmap_pose(c2w)
    rigid = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([*qvec[1:], qvec[0]])), tvec)  # Eigen order: x y z w
    origin = rigid * np.zeros(3)
    up = rigid * np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(origin, [0.0, 0.0, 3.0], atol=1e-12)  # OpenCV: +z ahead, 3 units away
    assert up[1] < 0  # world up is image up: OpenCV's y points down


def test_pycolmap_reads_every_camera_and_pose_as_poses_json_holds_them(exported):
    flagged, out = exported.run, exported.out
    poses = {e["name"]: e for e in json.loads((flagged.run / "poses.json").read_text())["images"]}
    model = out / "colmap" / "sparse" / "0"
    for kind in ("binary", "text"):
        rec = _reconstruction(model, kind)
        names = sorted(Path(image.name).stem for image in rec.images.values())
        assert names == sorted(n for n in poses if n != flagged.failed), kind
        assert rec.num_cameras() == len(names)
        for image in rec.images.values():
            record = poses[Path(image.name).stem]
            camera = rec.cameras[image.camera_id]
            assert camera.model_name == "PINHOLE"
            assert (camera.width, camera.height) == (record["width"], record["height"])
            np.testing.assert_allclose(camera.params, [record["fl_x"], record["fl_y"], record["cx"], record["cy"]],
                                       rtol=1e-12)
            expected = np.linalg.inv(_c2w_cv(record))[:3]
            # poses.json's rotations are orthonormal to ~1e-7 (float32 renders); a quaternion is exactly a rotation
            np.testing.assert_allclose(_cam_from_world(image), expected, atol=1e-6)
            assert (out / "colmap" / "images" / image.name).is_file()


def test_the_failed_photo_is_left_out_and_listed(exported):
    flagged, out = exported.run, exported.out
    files = {p.stem for folder in ("images", "masks") for p in (out / "colmap" / folder).iterdir()}
    assert flagged.failed not in files and flagged.undecided in files
    reason = {e["name"]: e for e in json.loads((flagged.run / "poses.json").read_text())["images"]}[
        flagged.failed]["status_reason"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["excluded"] == [{"name": flagged.failed, "reason": f"failed: {reason}"}]
    assert summary["undecided"] == [flagged.undecided]


def test_points_project_inside_the_masks_of_the_photos_that_see_them(exported):
    out = exported.out / "colmap"
    rec = _reconstruction(out / "sparse" / "0", "binary")
    assert rec.num_points3D() >= 500
    masks = {image_id: np.asarray(Image.open(out / "masks" / f"{Path(image.name).stem}.png")) > 127
             for image_id, image in rec.images.items()}
    inside, total, per_image = 0, 0, {image_id: 0 for image_id in rec.images}
    for point_id, point in rec.points3D.items():
        assert len(point.track.elements) >= 1
        for element in point.track.elements:
            image = rec.images[element.image_id]
            camera = rec.cameras[image.camera_id]
            local = _cam_from_world(image) @ np.append(point.xyz, 1.0)
            assert local[2] > 0  # in front of the camera
            xy = np.asarray(camera.img_from_cam(local), np.float64).reshape(-1)[:2]
            mask = masks[element.image_id]
            col, row = int(np.floor(xy[0])), int(np.floor(xy[1]))
            ok = 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and bool(mask[row, col])
            inside += ok
            total += 1
            per_image[element.image_id] += 1
            # the observation the track points at lies on the object too
            observed = image.points2D[element.point2D_idx]
            assert observed.point3D_id == point_id
            assert mask[int(observed.xy[1]), int(observed.xy[0])]
    assert min(per_image.values()) >= 50, per_image  # every photo sees a fair share of the points
    assert inside / total >= 0.95, f"{inside}/{total} projections inside their observations' masks"


def test_masks_are_single_channel_and_of_the_photos_size(exported):
    out = exported.out / "colmap"
    for image_file in (out / "images").iterdir():
        mask = Image.open(out / "masks" / f"{image_file.stem}.png")
        assert mask.mode == "L" and mask.size == Image.open(image_file).size
        values = np.unique(np.asarray(mask))
        assert set(values.tolist()) == {0, 255}
