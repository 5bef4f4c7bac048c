"""congeal.synthetic.photo_framing: centred square photos and off-centre photos from a turned pinhole camera."""
import math

import numpy as np
import pytest
import torch

from congeal.common.errors import InputError
from congeal.geometry.cameras import c2w_from_spherical, focal_from_fovy, project
from congeal.synthetic.photo_framing import FRAMINGS, _sphere_fits, frame_size, off_axis_deg, sample_view


def test_frame_sizes():
    assert frame_size(FRAMINGS["centred"], 192) == (192, 192)
    assert frame_size(FRAMINGS["offcentre43"], 192) == (144, 192)  # (height, width): landscape
    assert frame_size(FRAMINGS["offcentre34"], 192) == (192, 144)  # portrait


@pytest.mark.parametrize("name", ["offcentre43", "offcentre34"])
def test_off_centre_views_are_turned_real_pinhole_cameras(name):
    framing = FRAMINGS[name]
    rng = np.random.default_rng(0)
    angles = []
    for _ in range(40):
        view = sample_view(framing, rng, bound=0.8, long_side=192)
        record, c2w = view.record, view.c2w[0].double()
        assert (view.height, view.width) == frame_size(framing, 192)
        # A proper rotation, a camera centre on the sphere the record names, principal point at the photo centre.
        rotation = c2w[:3, :3]
        assert torch.allclose(rotation.T @ rotation, torch.eye(3, dtype=torch.float64), atol=1e-5)
        assert torch.det(rotation).item() == pytest.approx(1.0, abs=1e-5)
        centre = c2w_from_spherical(torch.tensor([record["azimuth_deg"]]), torch.tensor([record["elevation_deg"]]),
                                    torch.tensor([record["distance"]]))[0, :3, 3]
        assert torch.allclose(c2w[:3, 3].float(), centre, atol=1e-4)
        assert record["principal_point"] == [0.5 * view.width, 0.5 * view.height]
        assert framing.fovy_deg[0] <= view.fovy_deg <= framing.fovy_deg[1]
        # The camera is turned away from the object by the recorded angle; the object sits off-centre by f·tan θ,
        # in the recorded direction (0 = right, 90 = up; pixel y points down).
        theta = record["off_axis_deg"]
        assert theta <= framing.off_axis_deg[1] + 1e-6
        assert off_axis_deg(c2w[None])[0].item() == pytest.approx(theta, abs=1e-6)
        xy, _ = project(torch.zeros(1, 1, 3), view.cameras)
        assert xy[0, 0].tolist() == pytest.approx(record["object_xy"], abs=1e-3)
        shift = xy[0, 0].double() - torch.tensor([0.5 * view.width, 0.5 * view.height], dtype=torch.float64)
        focal = focal_from_fovy(torch.tensor(math.radians(view.fovy_deg), dtype=torch.float64), view.height)
        assert shift.norm().item() == pytest.approx(focal.item() * math.tan(math.radians(theta)), rel=1e-3)
        direction = math.degrees(math.atan2(-shift[1].item(), shift[0].item())) % 360.0
        assert abs((direction - record["off_axis_direction_deg"] + 180.0) % 360.0 - 180.0) < 1e-3
        assert record["focal_px"] == pytest.approx(focal.item(), rel=1e-6)
        # The object's bounding sphere is in frame.
        assert _sphere_fits(view.c2w, view.fovy, 0.8, view.height, view.width)
        angles.append(theta)
    # Off-axis angles spread over the 3°–12° range (a turn is reduced only when nothing else fits).
    assert min(angles) < 5.0 and max(angles) > 10.0
    assert np.mean(np.asarray(angles) >= 3.0) > 0.9


def test_centred_view_looks_at_the_object_up_to_a_small_shift():
    rng = np.random.default_rng(1)
    for _ in range(20):
        view = sample_view(FRAMINGS["centred"], rng, bound=0.8, long_side=96)
        record = view.record
        assert (view.height, view.width) == (96, 96) and record["off_axis_direction_deg"] is None
        look = c2w_from_spherical(torch.tensor([record["azimuth_deg"]]), torch.tensor([record["elevation_deg"]]),
                                  torch.tensor([record["distance"]]))[0]
        # Same rotation as the look-at camera; the centre moved only within the image plane.
        assert torch.allclose(view.c2w[0, :3, :3], look[:3, :3], atol=1e-6)
        shift = view.c2w[0, :3, 3] - look[:3, 3]
        expected = record["image_offset"][0] * look[:3, 0] + record["image_offset"][1] * look[:3, 1]
        assert torch.allclose(shift, expected, atol=1e-5)
        assert record["off_axis_deg"] < 5.0


def test_sphere_fit_check():
    c2w = c2w_from_spherical(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]))
    fovy = torch.tensor([math.radians(40.0)])
    assert _sphere_fits(c2w, fovy, 0.5, 64, 64)
    assert not _sphere_fits(c2w, fovy, 1.2, 64, 64)  # fills more than the frame
    assert not _sphere_fits(c2w, fovy, 3.5, 64, 64)  # camera inside the sphere


def test_bad_photo_size():
    with pytest.raises(InputError):
        sample_view(FRAMINGS["centred"], np.random.default_rng(0), 0.8, 4)
