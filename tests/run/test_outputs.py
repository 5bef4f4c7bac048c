"""poses.json / transforms.json: camera records on the original grid, round trips, validation."""
import json
import math

import pytest
import torch

from congeal.geometry.cameras import Cameras, c2w_from_spherical, get_rays, project
from congeal.io.crop import Crop
from congeal.common.errors import InputError
from congeal.run.outputs import (camera_record, read_poses, read_transforms, working_camera, write_poses,
                             write_transforms)


def example():
    c2w = c2w_from_spherical(torch.tensor([40.0]), torch.tensor([20.0]), torch.tensor([3.0]))[0]
    crop = Crop(x0=30.0, y0=-10.0, side=120.0, size=64)
    return c2w, math.radians(30.0), torch.tensor([35.0, 29.0]), crop


def test_record_is_the_original_grid_camera():
    c2w, fovy_w, principal, crop = example()
    record = camera_record("a", c2w, fovy_w, principal, crop, (200, 300), {"iou": 0.9})
    assert record["width"] == 300 and record["height"] == 200 and record["iou"] == 0.9
    assert record["fl_x"] == pytest.approx(120.0 / (2 * math.tan(fovy_w / 2)))
    assert record["fovy_deg"] == pytest.approx(math.degrees(2 * math.atan(200 / (2 * record["fl_y"]))))
    assert record["azimuth_deg"] == pytest.approx(40.0, abs=1e-4)
    assert record["elevation_deg"] == pytest.approx(20.0, abs=1e-4)
    assert record["distance"] == pytest.approx(3.0, abs=1e-5)
    # a world point seen through working pixel p is seen through original pixel crop.to_original(p)
    origins, dirs = get_rays(Cameras(c2w[None], torch.tensor([fovy_w]), principal[None], 64, 64))
    point = origins[0, 10, 50] + 2.5 * dirs[0, 10, 50]
    local = c2w[:3, :3].T @ (point - c2w[:3, 3])
    x = record["cx"] + record["fl_x"] * local[0] / -local[2]
    y = record["cy"] - record["fl_y"] * local[1] / -local[2]
    expected = crop.to_original(torch.tensor([[50.5, 10.5]]))[0]
    assert torch.allclose(torch.tensor([float(x), float(y)]), expected.float(), atol=1e-3)
    back_c2w, back_fovy, back_principal = working_camera(record, crop)
    assert torch.allclose(back_c2w, c2w, atol=1e-6) and back_fovy == pytest.approx(fovy_w)
    assert torch.allclose(back_principal, principal, atol=1e-4)


def test_poses_round_trip_and_validation(tmp_path):
    c2w, fovy_w, principal, crop = example()
    records = [camera_record(n, c2w, fovy_w, principal, crop, (200, 300)) for n in ("a", "b")]
    records[0]["alternatives"] = [camera_record(None, c2w, fovy_w, principal, crop, (200, 300), {"score": 1.0})]
    write_poses(tmp_path / "poses.json", records)
    poses = read_poses(tmp_path / "poses.json")
    assert list(poses) == ["a", "b"] and poses["a"]["alternatives"][0]["score"] == 1.0
    doc = json.loads((tmp_path / "poses.json").read_text())
    assert doc["format"] == "congeal-poses-v4" and "OpenGL" in doc["convention"]
    with pytest.raises(ValueError):
        write_poses(tmp_path / "dup.json", [records[0], records[0]])
    with pytest.raises(InputError, match="not found"):
        read_poses(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_poses(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x", "images": []}))
    with pytest.raises(InputError, match="congeal-poses-v1"):
        read_poses(tmp_path / "other.json")
    broken = dict(doc)
    broken["images"] = [dict(doc["images"][0], c2w=[[1, 0, 0]])]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(InputError, match="bad c2w"):
        read_poses(tmp_path / "broken.json")


def test_transforms_json(tmp_path):
    c2w, fovy_w, principal, crop = example()
    records = [camera_record("a", c2w, fovy_w, principal, crop, (200, 300))]
    image = tmp_path / "photos" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"")
    write_transforms(tmp_path / "run" / "transforms.json", records, [image])
    doc = read_transforms(tmp_path / "run" / "transforms.json")
    frame = doc["frames"][0]
    assert frame["file_path"] == "../photos/a.png"
    assert frame["transform_matrix"] == records[0]["c2w"]
    assert (frame["w"], frame["h"]) == (300, 200) and frame["fl_x"] == records[0]["fl_x"]
    assert doc["cx"] == records[0]["cx"]
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(InputError):
        read_transforms(tmp_path / "t.json")
