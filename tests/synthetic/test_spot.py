"""congeal.synthetic.spot: Keenan Crane's spot cow as a same-instance family (needs the mesh files).

The mesh is not in the repository. These tests run when CONGEAL_SPOT_DIR holds
spot_triangulated.obj and spot_texture.png from alecjacobson/common-3d-test-models (data/spot.zip), and are skipped
otherwise.
"""
import json

import numpy as np
import pytest
import torch

from congeal.common.errors import InputError
from congeal.synthetic.family_collection import make_family_collection
from congeal.synthetic.spot import REACH, SPOT_KEYPOINT_NAMES, load_spot, spot_dir, spot_family, spot_keypoints

needs_spot = pytest.mark.skipif(
    spot_dir() is None,
    reason="spot's mesh files are absent: unpack data/spot.zip of alecjacobson/common-3d-test-models and set "
           "CONGEAL_SPOT_DIR to the folder")


def test_missing_files_are_an_input_error(tmp_path):
    assert spot_dir(tmp_path) is None
    with pytest.raises(InputError, match="spot_triangulated.obj"):
        load_spot(tmp_path)


@pytest.fixture(scope="module")
def spot():
    return load_spot()


@needs_spot
def test_spot_stands_in_the_canonical_frame(spot):
    v = spot.vertices
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(REACH, rel=1e-6)
    extent = v.max(0) - v.min(0)
    assert extent[0] > extent[1] and extent[2] > extent[1]  # long along x (front-back), narrow in y
    assert np.allclose(v.max(0) + v.min(0), 0.0, atol=1e-9)  # centred on its bounding box
    assert spot.geometry().is_watertight


@needs_spot
def test_keypoints_follow_the_anatomy(spot):
    points = spot_keypoints(spot)
    assert tuple(points) == SPOT_KEYPOINT_NAMES
    assert points["nose"][0] > 0.6 and points["tail_tip"][0] < -0.6  # faces +x
    assert points["horn_left"][2] > 0.6 and points["horn_left"][1] > 0  # horns on top, left one at +y
    for pair in (("horn_left", "horn_right"), ("ear_left", "ear_right"), ("hoof_fl", "hoof_fr"),
                 ("hoof_bl", "hoof_br")):
        left, right = points[pair[0]], points[pair[1]]
        assert np.allclose(left * [1, -1, 1], right, atol=1e-6), pair  # the mesh is mirror-symmetric
    for hoof in ("hoof_fl", "hoof_fr", "hoof_bl", "hoof_br"):
        assert points[hoof][2] < -0.6
    assert points["hoof_fl"][0] > 0 > points["hoof_bl"][0]
    # Every keypoint is a mesh vertex.
    for point in points.values():
        assert np.linalg.norm(spot.vertices - point, axis=1).min() < 1e-12


@needs_spot
def test_the_baked_canonical_is_textured(spot):
    family = spot_family()
    assert family.deform is None and "texture" in family.symmetry
    subject = family.mean()
    canonical = subject.bake(32)
    colours = canonical.rgb[canonical.occupancy()]
    assert colours.std(0).mean() > 0.05  # black patches on pale skin, not one colour
    nose = torch.tensor(subject.keypoints()["nose"], dtype=torch.float32)
    # The muzzle is pink: red well above blue near the nose.
    cell = ((nose + 1.0) / canonical.cell_size).long().clamp(0, 31)
    r, g, b = canonical.rgb[cell[0], cell[1], cell[2]].tolist()
    assert r > b + 0.1


@needs_spot
def test_spot_collection(tmp_path):
    folder = make_family_collection(tmp_path, "spot", framing="offcentre43", n_images=2, image_size=48, resolution=24,
                                    photo_resolution=32)
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert truth["family"] == "spot" and truth["mode"] == "same" and truth["photo_resolution"] == 32
    assert truth["keypoint_names"] == list(SPOT_KEYPOINT_NAMES)
    assert [(im["width"], im["height"]) for im in truth["images"]] == [(48, 36), (48, 36)]
    assert any(kp["visible"] for im in truth["images"] for kp in im["keypoints"].values())
    with pytest.raises(InputError, match="cross-instance"):
        spot_family().deformed(np.random.default_rng(0), 0.2)
