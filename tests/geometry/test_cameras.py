"""congeal.geometry.cameras: the Cameras object, threestudio-convention poses, rays, projection, rotations."""
import math

import pytest
import torch

from congeal.geometry.cameras import (
    Cameras,
    c2w_from_spherical,
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


def test_rays_and_projection_round_trip():
    c2w = c2w_from_spherical(_t(40.0, 200.0), _t(10.0, 50.0), _t(3.0, 2.5))
    fovy = _t(0.6, 1.0)
    h, w = 6, 10
    origins, dirs = get_rays(Cameras.centred(c2w, fovy, h, w))
    assert origins.shape == dirs.shape == (2, h, w, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, h, w, dtype=torch.float64))
    points = (origins + 1.7 * dirs).reshape(2, -1, 3)
    xy, depth = project(points, Cameras.centred(c2w, fovy, h, w))
    cols, rows = torch.meshgrid(torch.arange(w) + 0.5, torch.arange(h) + 0.5, indexing="xy")
    expected = torch.stack([cols, rows], -1).reshape(1, -1, 2).double().expand(2, -1, -1)
    assert torch.allclose(xy, expected, atol=1e-9)
    assert bool((depth > 0).all())
    # fovy spans the height: the top edge of the frame is fovy/2 above the optical axis.
    forward, up = -c2w[:, :3, 2], c2w[:, :3, 1]
    top = c2w[:, :3, 3] + forward + up * torch.tan(0.5 * fovy)[:, None]
    xy_top, _ = project(top[:, None], Cameras.centred(c2w, fovy, h, w))
    assert torch.allclose(xy_top[:, 0], torch.tensor([[w / 2, 0.0]] * 2, dtype=torch.float64), atol=1e-9)
    # A point behind the camera has negative depth.
    _, behind = project((c2w[:, :3, 3] - forward)[:, None], Cameras.centred(c2w, fovy, h, w))
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


def test_so3_exp_matches_the_matrix_exponential_and_ignores_the_rest_of_the_batch():
    """Rodrigues equals the matrix exponential of the skew matrix; its gradient at ω = 0 (where refinement starts)
    is finite and right; and each rotation is bit-equal whatever batch it is in (a batch of one included: refinement's
    batch shrinks to one as hypotheses freeze, and matrix_exp's single-matrix path differed by an ulp)."""
    torch.manual_seed(0)
    omega = torch.randn(9, 3) * torch.tensor([1e-5, 1e-3, 0.01, 0.1, 0.5, 1.0, 2.0, 3.0, 3.1]).unsqueeze(-1)
    skew = torch.zeros(9, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -omega[:, 2], omega[:, 1], -omega[:, 0]
    skew = skew - skew.transpose(-1, -2)
    assert torch.allclose(so3_exp(omega), torch.linalg.matrix_exp(skew), atol=2e-6)
    for size in (1, 2, 5):
        for start in range(0, 9 - size):
            assert torch.equal(so3_exp(omega[start:start + size]), so3_exp(omega)[start:start + size])
    zero = torch.zeros(3, requires_grad=True)
    target = so3_exp(torch.tensor([0.0, 0.0, 0.2]))
    (so3_exp(zero) - target).square().sum().backward()
    assert torch.isfinite(zero.grad).all() and zero.grad[2] < 0 and zero.grad[:2].abs().max() < 1e-6


def test_cameras_index_split_cat_and_centred_principal():
    cameras = Cameras.from_spherical(_t(10.0, 80.0, 200.0), _t(5.0, 20.0, 40.0), _t(2.0, 2.5, 3.0), fovy=0.6,
                                     height=6, width=10)
    assert len(cameras) == 3 and cameras.c2w.dtype == cameras.fovy.dtype == torch.float64
    assert torch.equal(cameras.principal, torch.tensor([[5.0, 3.0]] * 3, dtype=torch.float64))
    assert torch.allclose(cameras.focal, 3.0 / torch.tan(torch.full((3,), 0.3, dtype=torch.float64)))
    one = cameras[1]  # an int keeps the batch dimension
    assert len(one) == 1 and torch.equal(one.c2w, cameras.c2w[1:2]) and (one.height, one.width) == (6, 10)
    assert torch.equal(cameras[-1].c2w, cameras.c2w[2:])
    assert torch.equal(cameras[torch.tensor([2, 0])].fovy, cameras.fovy[[2, 0]])
    parts = cameras.split(2)
    assert [len(p) for p in parts] == [2, 1]
    assert torch.equal(Cameras.cat(parts).c2w, cameras.c2w)
    with pytest.raises(ValueError):
        Cameras.cat([cameras, cameras.rescaled(12, 20)])
    # a single [4,4] and a scalar fovy are batched
    single = Cameras.centred(cameras.c2w[0], 0.6, 6, 10)
    assert single.c2w.shape == (1, 4, 4) and single.fovy.shape == (1,)


def test_off_centre_principal_and_rescaling():
    c2w = c2w_from_spherical(_t(40.0, 200.0), _t(10.0, 50.0), _t(3.0, 2.5))
    principal = torch.tensor([[3.0, 2.0], [7.5, 4.0]], dtype=torch.float64)
    cameras = Cameras(c2w, _t(0.6, 1.0), principal, 8, 12)
    origins, dirs = get_rays(cameras)
    xy, depth = project((origins + 2.0 * dirs).reshape(2, -1, 3), cameras)
    cols, rows = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(8) + 0.5, indexing="xy")
    assert torch.allclose(xy, torch.stack([cols, rows], -1).reshape(1, -1, 2).double().expand(2, -1, -1), atol=1e-9)
    # The camera's own axis lands on the principal point.
    ahead = c2w[:, :3, 3] - c2w[:, :3, 2]
    assert torch.allclose(project(ahead[:, None], cameras)[0][:, 0], principal, atol=1e-9)
    # Rescaling keeps the view: the principal point scales, fovy still spans the height, rays stay put.
    double = cameras.rescaled(16, 24)
    assert torch.equal(double.principal, 2 * principal) and torch.equal(double.fovy, cameras.fovy)
    assert torch.allclose(project(ahead[:, None], double)[0][:, 0], 2 * principal, atol=1e-9)
    assert cameras.rescaled(8, 12) is cameras


def test_rotation_between_takes_a_to_b_and_each_row_ignores_the_rest_of_the_batch():
    """A rotation taking a to b (orthonormal, det 1, smallest: b's angle to a), and each row's result bit-equal
    whatever batch it is in: a sharded registration must start every hypothesis exactly where the one-shot run does
    (an ulp there became 0.06° after refinement)."""
    from congeal.geometry.cameras import rotation_between

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(37, 3), dim=-1)
    b = torch.nn.functional.normalize(a + 0.4 * torch.randn(37, 3), dim=-1)
    rotation = rotation_between(a, b)
    assert torch.allclose(torch.einsum("bij,bj->bi", rotation, a), b, atol=1e-5)
    assert torch.allclose(rotation @ rotation.transpose(-1, -2), torch.eye(3).expand(37, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(37), atol=1e-5)
    # smallest rotation: its angle is the angle between a and b
    angle = torch.rad2deg(torch.acos(((rotation.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))
    expected = torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1, 1)))
    assert torch.allclose(angle, expected, atol=0.05)
    for size in (1, 3, 5, 11):
        for start in range(0, 37 - size, 7):
            part = slice(start, start + size)
            assert torch.equal(rotation_between(a[part], b[part]), rotation[part])
