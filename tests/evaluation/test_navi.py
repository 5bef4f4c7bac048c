"""NAVI loader: camera convention (checked by reprojection against congeal.geometry.cameras), EXIF, malformed files."""
import json

import numpy as np
import pytest
import torch

from helpers.benchmark_fixtures import read_synthetic, synthetic_to_navi
from congeal.common.errors import InputError
from congeal.evaluation.metrics import rotation_error_deg
from congeal.evaluation.navi import find_scenes, load_mask, load_navi_scene, load_upright_rgb
from congeal.geometry.conventions import quaternion_to_matrix
from helpers.eval_runs import axis_rotation as _rot
from helpers.eval_runs import make_fake_collection


@pytest.fixture(scope="module")
def navi_scene(tmp_path_factory):
    base = tmp_path_factory.mktemp("navi")
    collection = make_fake_collection(base / "synth", n_images=5)
    G = _rot("x", 35.0) @ _rot("z", -120.0)
    folder = synthetic_to_navi(collection, base / "navi", object_id="toy", rotation=G, scale=40.0,
                               translation=torch.tensor([5.0, -2.0, 7.0], dtype=torch.float64),
                               exif_rotate=["img01"])
    return collection, folder, G


def test_navi_cameras_reproject_known_keypoints(navi_scene):
    collection, folder, G = navi_scene
    scene = load_navi_scene(folder)
    _, entries = read_synthetic(collection)
    assert scene.object_id == "toy" and scene.names == [e["name"] for e in entries]
    R, t = scene.w2c_opencv()
    for k, (image, entry) in enumerate(zip(scene.images, entries)):
        # NAVI projection, written out: x_cam = R (s G x + d) + t; u = f x/z + w/2, v = f y/z + h/2
        xyz = torch.tensor([kp["xyz"] for kp in entry["keypoints"].values()], dtype=torch.float64)
        x_obj = 40.0 * xyz @ G.T + torch.tensor([5.0, -2.0, 7.0], dtype=torch.float64)
        cam = x_obj @ R[k].T + t[k]
        assert (cam[:, 2] > 0).all()  # in front of an OpenCV camera: +z
        uv = image.focal_length * cam[:, :2] / cam[:, 2:] + torch.tensor([image.width / 2, image.height / 2])
        expected = torch.tensor([kp["xy"] for kp in entry["keypoints"].values()], dtype=torch.float64)
        assert torch.allclose(uv, expected, atol=1e-6)
    # the threestudio-convention view of the GT cameras is a rotated/scaled copy of the synthetic c2w
    c2w = scene.c2w_opengl()
    c2w_syn = torch.tensor([e["c2w"] for e in entries], dtype=torch.float64)
    assert rotation_error_deg(c2w[:, :3, :3], G @ c2w_syn[:, :3, :3]).max() < 1e-6
    assert scene.fovy_deg() == pytest.approx([e["fovy_deg"] for e in entries])


def test_quaternions_are_wxyz(navi_scene):
    _, folder, _ = navi_scene
    data = json.loads((folder / "annotations.json").read_text())
    q = torch.tensor(data[0]["camera"]["q"], dtype=torch.float64)
    R = load_navi_scene(folder).w2c_opencv()[0][0]
    assert torch.allclose(quaternion_to_matrix(q), R)
    assert not torch.allclose(quaternion_to_matrix(q[[1, 2, 3, 0]]), R)  # [x,y,z,w] would be wrong


def test_exif_orientation_is_applied(navi_scene):
    collection, folder, _ = navi_scene
    from PIL import Image

    with Image.open(folder / "images" / "img01.jpg") as raw:
        assert raw.size == (48, 64)  # stored sideways
    scene = load_navi_scene(folder)
    image = next(im for im in scene.images if im.name == "img01")
    upright = load_upright_rgb(image.image_path)
    assert (upright.height, upright.width) == (image.height, image.width) == (48, 64)
    with Image.open(collection / "images" / "img01.png") as original:
        ref = np.asarray(original.convert("RGBA")).astype(np.float32)
    got = np.asarray(upright).astype(np.float32)
    inside = ref[..., 3] > 0
    assert np.abs(got[inside] - ref[inside][:, :3]).mean() < 12  # JPEG noise only, not a rotated image
    assert load_mask(image).shape == (48, 64)


def test_find_scenes_accepts_root_object_and_scene(navi_scene):
    _, folder, _ = navi_scene
    assert find_scenes(folder) == [folder]
    assert find_scenes(folder.parent) == [folder]
    assert find_scenes(folder.parent.parent) == [folder]
    with pytest.raises(InputError, match="nope"):
        find_scenes(folder.parent.parent, objects=["nope"])


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: [dict(d[0], camera={"t": [0, 0, 1], "focal_length": 10})], "camera has no 'q'"),
    (lambda d: [dict(d[0], camera=dict(d[0]["camera"], q=[1, 0, 0]))], "camera.q is not a list of 4"),
    (lambda d: [dict(d[0], image_size=[0, 10])], "non-positive"),
    (lambda d: {}, "non-empty list"),
])
def test_malformed_annotations_name_the_file(navi_scene, tmp_path, mutate, problem):
    _, folder, _ = navi_scene
    data = json.loads((folder / "annotations.json").read_text())
    bad = tmp_path / "wild_set"
    bad.mkdir()
    value = mutate(data)
    (bad / "annotations.json").write_text(value if isinstance(value, str) else json.dumps(value))
    with pytest.raises(InputError) as info:
        load_navi_scene(bad)
    assert str(bad / "annotations.json") in str(info.value) and problem in str(info.value)
