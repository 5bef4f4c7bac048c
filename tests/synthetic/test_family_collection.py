"""congeal.synthetic.family_collection: collections of any family / framing / strength with exact ground truth."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.canonical.grid import load_canonical
from congeal.canonical.render import GridRenderer
from congeal.common.errors import InputError
from congeal.evaluation.synthetic_harness import load_ground_truth
from congeal.geometry.cameras import Cameras, project
from congeal.synthetic.family_collection import make_family_collection
from congeal.synthetic.generator import make_synthetic_collection

SMALL = dict(n_images=3, image_size=48, resolution=24)


def _truth(folder):
    return json.loads((folder / "ground_truth.json").read_text())


def _alpha(folder, image):
    return np.asarray(Image.open(folder / image["file"]))[..., 3].astype(np.float32) / 255.0


@pytest.mark.parametrize("mode", ["same", "cross"])
def test_creature_centred_is_congeal_synth_draw_for_draw(tmp_path, mode):
    """Creature, centred framing, strength 0.2: the photos of `make_synthetic_collection`, byte for byte, and its
    ground truth (plus the new fields)."""
    old = make_synthetic_collection(tmp_path / "old", mode=mode, seed=5, **SMALL)
    new = make_family_collection(tmp_path / "new", "creature", mode=mode, seed=5, **SMALL)
    for k in range(SMALL["n_images"]):
        assert (old / f"images/img_{k:03d}.png").read_bytes() == (new / f"images/img_{k:03d}.png").read_bytes()
    assert load_canonical(old / "canonical.safetensors").content_hash() == \
        load_canonical(new / "canonical.safetensors").content_hash()
    a, b = _truth(old), _truth(new)
    assert {k: v for k, v in a.items() if k not in ("images", "notes")}.items() <= b.items()
    for image_a, image_b in zip(a["images"], b["images"]):
        assert image_a.items() <= image_b.items()
    assert b["family"] == "creature" and b["framing"] == "centred"
    assert b["deformation_strength"] == (0.2 if mode == "cross" else 0.0)


@pytest.fixture(scope="module")
def chair_offcentre(tmp_path_factory):
    return make_family_collection(tmp_path_factory.mktemp("chair"), "chair", mode="same", framing="offcentre43",
                                  seed=1, n_images=3, image_size=64, resolution=32)


def test_off_centre_photos_are_reproduced_by_their_ground_truth_cameras(chair_offcentre):
    folder = chair_offcentre
    truth = _truth(folder)
    assert truth["family"] == "chair" and truth["framing"] == "offcentre43"
    assert truth["keypoint_names"][0] == "seat_front_left"
    canonical = load_canonical(folder / "canonical.safetensors")
    renderer = GridRenderer(canonical)
    for image in truth["images"]:
        photo = Image.open(folder / image["file"])
        assert photo.mode == "RGBA" and photo.size == (64, 48) == (image["width"], image["height"])
        assert image["principal_point"] == [32.0, 24.0] and 0.0 < image["off_axis_deg"] <= 12.0
        cameras = Cameras.centred(torch.tensor(image["c2w"])[None], torch.tensor([math.radians(image["fovy_deg"])]),
                                  image["height"], image["width"])
        with torch.no_grad():
            opacity = renderer.render(cameras, image["height"], image["width"])["opacity"][0, ..., 0].numpy()
        alpha = _alpha(folder, image)
        assert np.abs(opacity - alpha).max() < 1.5 / 255
        ys, xs = np.nonzero(alpha > 0.5)
        assert alpha[:1].max() < 0.01 and alpha[-1:].max() < 0.01 and alpha[:, :1].max() < 0.01
        assert alpha[:, -1:].max() < 0.01  # not clipped
        # Keypoints: the stored pixel is the projection through the same camera.
        xyz = torch.tensor([kp["xyz"] for kp in image["keypoints"].values()])
        xy, _ = project(xyz[None], cameras)
        assert torch.allclose(xy[0], torch.tensor([kp["xy"] for kp in image["keypoints"].values()]), atol=1e-3)
        for kp in image["keypoints"].values():
            if kp["visible"]:
                assert alpha[int(kp["xy"][1]), int(kp["xy"][0])] > 0.5
        assert len(xs) > 50


def test_the_evaluation_reads_the_new_ground_truth(chair_offcentre):
    folder, entries = load_ground_truth(chair_offcentre)
    assert folder == chair_offcentre and list(entries) == ["img_000", "img_001", "img_002"]


def test_cross_instance_at_strength_three_tenths(tmp_path):
    folder = make_family_collection(tmp_path, "teapot", mode="cross", framing="offcentre34", strength=0.3, seed=2,
                                    n_images=2, image_size=48, resolution=24)
    truth = _truth(folder)
    assert truth["deformation_strength"] == 0.3 and truth["mode"] == "cross"
    assert "badge" in truth["symmetry"]
    first = truth["images"][0]
    assert (first["width"], first["height"]) == (36, 48)
    moved = [np.linalg.norm(np.asarray(a["xyz"]) - np.asarray(b["xyz"]))
             for a, b in zip(truth["images"][0]["keypoints"].values(), truth["images"][1]["keypoints"].values())]
    assert max(moved) > 0.02  # two instances differ


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="framing"):
        make_family_collection(tmp_path, "chair", framing="fisheye")
    with pytest.raises(InputError, match="mode"):
        make_family_collection(tmp_path, "chair", mode="mirror")
    with pytest.raises(InputError):
        make_family_collection(tmp_path, "chair", strength=1.5)
    with pytest.raises(InputError, match="family"):
        make_family_collection(tmp_path, "dragon")
