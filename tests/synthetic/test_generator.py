"""congeal.synthetic.generator and `congeal synth`: collections whose ground truth reproduces their photos."""
import argparse
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.geometry.cameras import CONVENTION, Cameras, c2w_from_spherical, project
from congeal.canonical.grid import load_canonical
from congeal.common.errors import InputError
from congeal.canonical.render import GridRenderer
from congeal.synthetic.generator import (KEYPOINT_NAMES, _normals, creature_parts, creature_sdf, keypoints_of,
                               make_synthetic_collection)


def _truth(folder):
    return json.loads((folder / "ground_truth.json").read_text())


def _alpha(folder, image):
    return np.asarray(Image.open(folder / image["file"]))[..., 3].astype(np.float32) / 255.0


def _render_at_truth(folder, images, canonical=None):
    """Render the canonical at the stored cameras of `images` (one batch): opacity [N,H,W] as numpy."""
    canonical = canonical or load_canonical(folder / "canonical.safetensors")
    c2w = torch.tensor([image["c2w"] for image in images])
    fovy = torch.tensor([math.radians(image["fovy_deg"]) for image in images])
    with torch.no_grad():
        height, width = images[0]["height"], images[0]["width"]
        out = GridRenderer(canonical).render(Cameras.centred(c2w, fovy, height, width), height, width)
    return out["opacity"][..., 0].numpy()


def test_files_and_schema(synthetic_collection):
    folder = synthetic_collection("same")
    truth = _truth(folder)
    assert truth["format"] == "congeal-synthetic-v2" and truth["mode"] == "same"
    assert truth["convention"] == CONVENTION and truth["canonical"] == "canonical.safetensors"
    assert truth["keypoint_names"] == list(KEYPOINT_NAMES)
    assert [image["name"] for image in truth["images"]] == [f"img_{i:03d}" for i in range(8)]
    canonical = load_canonical(folder / truth["canonical"])
    assert canonical.resolution == 64
    for image in truth["images"]:
        photo = Image.open(folder / image["file"])
        assert photo.mode == "RGBA" and photo.size == (image["width"], image["height"]) == (192, 192)
        assert 25.0 <= image["fovy_deg"] <= 55.0 and -10.0 <= image["elevation_deg"] <= 50.0
        assert 0.0 <= image["azimuth_deg"] < 360.0
        assert set(image["keypoints"]) == set(KEYPOINT_NAMES)
        alpha = _alpha(folder, image)
        # The object is in frame and not clipped: a clear border of background all round.
        assert alpha.max() > 0.99 and alpha[:2].max() < 0.01 and alpha[-2:].max() < 0.01
        assert alpha[:, :2].max() < 0.01 and alpha[:, -2:].max() < 0.01
    # Poses differ: azimuths spread over the circle.
    azimuths = sorted(image["azimuth_deg"] for image in truth["images"])
    assert azimuths[-1] - azimuths[0] > 180.0


def test_ground_truth_cameras_reproduce_the_photos(synthetic_collection):
    folder = synthetic_collection("same")
    truth = _truth(folder)
    canonical = load_canonical(folder / "canonical.safetensors")
    for image in truth["images"][:3]:
        c2w = torch.tensor(image["c2w"])
        spherical = c2w_from_spherical(torch.tensor([image["azimuth_deg"]]), torch.tensor([image["elevation_deg"]]),
                                       torch.tensor([image["distance"]]))[0]
        # Same rotation as the look-at-origin camera; position shifted only within the image plane.
        assert torch.allclose(c2w[:3, :3], spherical[:3, :3], atol=1e-5)
        shift = c2w[:3, 3] - spherical[:3, 3]
        assert torch.allclose(shift, image["image_offset"][0] * c2w[:3, 0] + image["image_offset"][1] * c2w[:3, 1],
                              atol=1e-5)
    # Rendering the canonical at the stored cameras gives the photos' alpha (PNG quantisation aside).
    opacity = _render_at_truth(folder, truth["images"][:3], canonical)
    for image, rendered in zip(truth["images"][:3], opacity):
        assert np.abs(rendered - _alpha(folder, image)).max() < 1.5 / 255


def test_keypoints_project_and_visibility(synthetic_collection):
    folder = synthetic_collection("same")
    truth = _truth(folder)
    mean = keypoints_of(creature_parts())
    seen, hidden_count = set(), 0
    for image in truth["images"]:
        names = list(image["keypoints"])
        xyz = torch.tensor([image["keypoints"][n]["xyz"] for n in names])
        xy = torch.tensor([image["keypoints"][n]["xy"] for n in names])
        assert np.allclose(xyz.numpy(), np.stack([mean[n] for n in names]), atol=1e-6)  # same instance
        camera = Cameras.centred(torch.tensor(image["c2w"])[None], torch.tensor([math.radians(image["fovy_deg"])]), 192, 192)
        projected, _ = project(xyz[None], camera)
        assert torch.allclose(projected[0], xy, atol=1e-3)
        alpha = _alpha(folder, image)
        normals = _normals(creature_sdf(creature_parts()), xyz)
        to_camera = torch.tensor(image["c2w"])[:3, 3] - xyz
        for k, (name, (x, y)) in enumerate(zip(names, xy.tolist())):
            if image["keypoints"][name]["visible"]:
                seen.add(name)
                assert alpha[int(y), int(x)] > 0.5, (image["name"], name)
                assert (normals[k] @ to_camera[k]) > 0, (image["name"], name)  # faces the camera
            else:
                hidden_count += 1
    # Every keypoint is seen in some view and some keypoints are hidden (behind the body or facing away).
    assert seen == set(KEYPOINT_NAMES) and hidden_count > 0


def test_a_visible_keypoint_is_what_its_pixel_shows(synthetic_collection):
    """The surface point rendered at a visible keypoint's pixel is the keypoint, within the grid's blur (2 cells).

    This is what makes keypoint transfer through pixel maps fair: a perfect registration can score 1.0.
    """
    folder = synthetic_collection("same")
    truth, canonical = _truth(folder), load_canonical(folder / "canonical.safetensors")
    images = truth["images"]
    with torch.no_grad():
        cameras = Cameras.centred(torch.tensor([image["c2w"] for image in images]),
                                  torch.tensor([math.radians(image["fovy_deg"]) for image in images]), 192, 192)
        xyz = GridRenderer(canonical).render(cameras, 192, 192)["xyz"]
    gaps = [float((xyz[i, int(kp["xy"][1]), int(kp["xy"][0])] - torch.tensor(kp["xyz"])).norm())
            for i, image in enumerate(images) for kp in image["keypoints"].values() if kp["visible"]]
    assert len(gaps) >= 20 and max(gaps) < 2 * canonical.cell_size


@pytest.mark.parametrize("mode", ["mean", "deformed"])
def test_keypoints_lie_on_the_surface(mode):
    """Keypoints are surface points (a pixel shows the surface; v1 put them half a part-radius inside)."""
    parts = creature_parts(np.random.default_rng(3) if mode == "deformed" else None)
    points = keypoints_of(parts)
    sdf = creature_sdf(parts)(torch.tensor(np.stack(list(points.values()))))
    assert sdf.abs().max() < 1e-6
    mean = keypoints_of(creature_parts())
    assert mean["snout_tip"][0] == max(p[0] for p in mean.values())  # the snout is the front-most keypoint
    assert mean["head_top"][2] == max(p[2] for n, p in mean.items() if n != "horn_tip")  # only the horn is higher


def test_same_seed_same_files_and_new_seed_new_files(tmp_path):
    kwargs = dict(n_images=2, image_size=32, resolution=20)
    a = make_synthetic_collection(tmp_path / "a", seed=3, **kwargs)
    b = make_synthetic_collection(tmp_path / "b", seed=3, **kwargs)
    c = make_synthetic_collection(tmp_path / "c", seed=4, **kwargs)
    assert (a / "ground_truth.json").read_text() == (b / "ground_truth.json").read_text()
    for name in ("images/img_000.png", "images/img_001.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert _truth(a)["images"][0]["c2w"] != _truth(c)["images"][0]["c2w"]
    # The canonical (the mean shape) does not depend on the seed.
    assert load_canonical(a / "canonical.safetensors").content_hash() == \
        load_canonical(c / "canonical.safetensors").content_hash()


def test_cross_instances_differ_from_the_mean(synthetic_collection):
    folder = synthetic_collection("cross")
    truth = _truth(folder)
    assert truth["mode"] == "cross"
    mean = keypoints_of(creature_parts())
    canonical = load_canonical(folder / "canonical.safetensors")
    ious = []
    opacity = _render_at_truth(folder, truth["images"][:3], canonical)
    for image, rendered in zip(truth["images"][:3], opacity):
        moved = [np.linalg.norm(np.asarray(kp["xyz"]) - mean[name]) for name, kp in image["keypoints"].items()]
        assert max(moved) > 0.01 and max(moved) < 0.3
        mean_mask = rendered > 0.5
        photo_mask = _alpha(folder, image) > 0.5
        ious.append((mean_mask & photo_mask).sum() / (mean_mask | photo_mask).sum())
    # Deformed, yet recognisably the same creature at the same pose.
    assert 0.45 < min(ious) and max(ious) < 0.97, ious


def test_creature_is_not_mirror_symmetric(synthetic_collection):
    # A view and its mirror view (azimuth → −azimuth, image flipped left-right) must look different in colour,
    # or colour features could not tell a pose from its mirror.
    canonical = load_canonical(synthetic_collection("same") / "canonical.safetensors")
    renderer = GridRenderer(canonical, num_samples=48)
    azimuth = torch.tensor([40.0, -40.0, 110.0, -110.0])
    c2w = c2w_from_spherical(azimuth, torch.full((4,), 20.0), torch.full((4,), 3.0))
    with torch.no_grad():
        rgb = renderer.render(Cameras.centred(c2w, torch.full((4,), 0.7), 48, 48), 48, 48)["rgb"]
    for i in (0, 2):
        difference = (rgb[i] - rgb[i + 1].flip(1)).abs().sum(-1)
        assert (difference > 0.3).float().mean() > 0.03, i


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="mode"):
        make_synthetic_collection(tmp_path, mode="mirror")
    with pytest.raises(InputError):
        make_synthetic_collection(tmp_path, n_images=0)


def test_synth_command(tmp_path):
    from congeal.commands import synth

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "out"), "--mode", "cross", "--images", "2", "--seed", "1",
                              "--size", "32", "--resolution", "20"])
    printed = io.StringIO()
    assert synth.run(args, out=printed) == 0
    text = printed.getvalue()
    assert "cross-instance" in text and "ground_truth.json" in text and "2 RGBA photos, 32x32" in text
    truth = _truth(tmp_path / "out")
    assert truth["mode"] == "cross" and truth["seed"] == 1 and len(truth["images"]) == 2
    assert (tmp_path / "out" / "images" / "img_001.png").exists()
