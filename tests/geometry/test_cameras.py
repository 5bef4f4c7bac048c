"""congeal.geometry.cameras: threestudio-convention poses, the candidate grid, rays, projection, rotations."""
import math

import pytest
import torch

from congeal.geometry.cameras import (
    CandidateGridConfig,
    c2w_from_spherical,
    candidate_cameras,
    candidate_index,
    get_rays,
    look_at,
    project,
    rotation_angle_deg,
    so3_exp,
)


def _t(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def test_spherical_known_pose():
    # azimuth 0, elevation 0: camera on +x looking at the origin; right = +y, up = +z, backwards = +x.
    c2w = c2w_from_spherical(_t(0.0), _t(0.0), _t(2.0))[0]
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 2.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
    )
    assert torch.allclose(c2w, expected, atol=1e-12)


def test_spherical_properties_and_batch_of_three():
    az, el, d = _t(10.0, 135.0, -100.0), _t(-15.0, 40.0, 70.0), _t(1.5, 2.0, 3.0)
    c2w = c2w_from_spherical(az, el, d)
    rot, pos = c2w[:, :3, :3], c2w[:, :3, 3]
    a, e = torch.deg2rad(az), torch.deg2rad(el)
    expected_pos = torch.stack([d * e.cos() * a.cos(), d * e.cos() * a.sin(), d * e.sin()], -1)
    assert torch.allclose(pos, expected_pos, atol=1e-12)
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, dtype=torch.float64))
    # Looks at the origin (-z axis towards it); camera x stays horizontal; camera up has positive world z.
    assert torch.allclose(-rot[:, :, 2], -pos / d[:, None], atol=1e-12)
    assert torch.allclose(rot[:, 2, 0], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert bool((rot[:, 2, 1] > 0).all())
    # A batch of exactly 3 must not cross along the batch axis (threestudio's torch.cross trap).
    single = torch.cat([c2w_from_spherical(az[i : i + 1], el[i : i + 1], d[i : i + 1]) for i in range(3)])
    assert torch.allclose(c2w, single, atol=1e-12)


def test_look_at_matches_spherical():
    c2w = c2w_from_spherical(_t(33.0, 250.0), _t(25.0, -5.0), _t(2.0, 4.0))
    up = torch.tensor([[0.0, 0.0, 1.0]] * 2, dtype=torch.float64)
    assert torch.allclose(look_at(c2w[:, :3, 3], torch.zeros(2, 3, dtype=torch.float64), up), c2w, atol=1e-12)


def test_candidate_grid_layout_and_fill():
    cfg = CandidateGridConfig()
    cams = candidate_cameras(cfg, radius=0.8)
    assert cfg.size == 768
    for key in ("c2w", "fovy", "fovy_deg", "azimuth_deg", "elevation_deg", "distance"):
        assert cams[key].shape[0] == 768, key
    assert cams["c2w"].shape == (768, 4, 4)
    assert torch.allclose(cams["fovy"], torch.deg2rad(cams["fovy_deg"]))
    table = cams["elevation_deg"].reshape(3, 16, 16)
    assert torch.allclose(table[:, :, 0], table[:, :, 5])  # azimuth varies fastest
    assert table[0, 0, 0] == cfg.elevation_range_deg[0] and table[0, -1, 0] == cfg.elevation_range_deg[1]
    k = candidate_index(cfg, torch.tensor(2), torch.tensor(7), torch.tensor(11))
    assert cams["fovy_deg"][k] == cfg.fovy_deg[2]
    assert cams["azimuth_deg"][k] == pytest.approx(11 * 22.5)
    assert cams["elevation_deg"][k] == pytest.approx(torch.linspace(-15, 60, 16)[7].item())
    # The bounding sphere's silhouette spans `fill` of the frame height at every FoV.
    half_angle = torch.asin(0.8 / cams["distance"])
    projected = torch.tan(half_angle) / torch.tan(0.5 * cams["fovy"])
    assert torch.allclose(projected, torch.full_like(projected, cfg.fill), atol=1e-5)
    # Closer for wide FoVs, farther for narrow ones.
    assert cams["distance"][0] > cams["distance"][-1]


def test_rays_and_projection_round_trip():
    c2w = c2w_from_spherical(_t(40.0, 200.0), _t(10.0, 50.0), _t(3.0, 2.5))
    fovy = _t(0.6, 1.0)
    h, w = 6, 10
    origins, dirs = get_rays(c2w, fovy, h, w)
    assert origins.shape == dirs.shape == (2, h, w, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, h, w, dtype=torch.float64))
    points = (origins + 1.7 * dirs).reshape(2, -1, 3)
    xy, depth = project(points, c2w, fovy, h, w)
    cols, rows = torch.meshgrid(torch.arange(w) + 0.5, torch.arange(h) + 0.5, indexing="xy")
    expected = torch.stack([cols, rows], -1).reshape(1, -1, 2).double().expand(2, -1, -1)
    assert torch.allclose(xy, expected, atol=1e-9)
    assert bool((depth > 0).all())
    # fovy spans the height: the top edge of the frame is fovy/2 above the optical axis.
    forward, up = -c2w[:, :3, 2], c2w[:, :3, 1]
    top = c2w[:, :3, 3] + forward + up * torch.tan(0.5 * fovy)[:, None]
    xy_top, _ = project(top[:, None], c2w, fovy, h, w)
    assert torch.allclose(xy_top[:, 0], torch.tensor([[w / 2, 0.0]] * 2, dtype=torch.float64), atol=1e-9)
    # A point behind the camera has negative depth.
    _, behind = project((c2w[:, :3, 3] - forward)[:, None], c2w, fovy, h, w)
    assert bool((behind < 0).all())


def test_rotation_angle_and_so3_exp():
    axis = torch.nn.functional.normalize(_t(0.3, -0.5, 0.8), dim=0)
    for degrees in (0.001, 0.5, 37.0, 179.9):
        rotation = so3_exp(axis * math.radians(degrees))
        assert torch.allclose(rotation.T @ rotation, torch.eye(3, dtype=torch.float64), atol=1e-12)
        angle = rotation_angle_deg(torch.eye(3, dtype=torch.float64), rotation)
        assert angle.item() == pytest.approx(degrees, abs=1e-7)
    batch = so3_exp(torch.randn(5, 4, 3, dtype=torch.float64))
    assert rotation_angle_deg(batch, batch).shape == (5, 4)
    assert torch.allclose(rotation_angle_deg(batch, batch), torch.zeros(5, 4, dtype=torch.float64), atol=1e-6)
    # Differentiable: the gradient of the angle w.r.t. omega points along omega.
    omega = (axis * 0.3).clone().requires_grad_(True)
    rotation_angle_deg(torch.eye(3, dtype=torch.float64), so3_exp(omega)).backward()
    assert torch.allclose(torch.nn.functional.normalize(omega.grad, dim=0), axis, atol=1e-8)
