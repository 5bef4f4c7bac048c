"""congeal.canonical.render: the grid ray marcher against geometry we can compute by hand."""
import math

import pytest
import torch

from congeal.canonical.bake import canonical_from_sdf
from congeal.canonical.grid import Canonical
from congeal.geometry.cameras import Cameras, c2w_from_spherical, get_rays, project, so3_exp
from congeal.canonical.render import GridRenderer, Renderer


@pytest.fixture(scope="module")
def sphere():
    return canonical_from_sdf(lambda p: p.norm(dim=-1) - 0.5, lambda p: torch.full_like(p, 0.7), resolution=64)


def _camera(az=30.0, el=20.0, dist=3.0, fovy_deg=40.0, dtype=torch.float32):
    c2w = c2w_from_spherical(torch.tensor([az]), torch.tensor([el]), torch.tensor([dist])).to(dtype)
    return c2w, torch.tensor([math.radians(fovy_deg)], dtype=dtype)


def test_sphere_renders_a_disc_of_the_projected_radius(sphere):
    renderer = GridRenderer(sphere)
    assert isinstance(renderer, Renderer)
    height, width = 128, 160  # not square: fovy must span the height
    c2w, fovy = _camera()
    out = renderer.render(Cameras.centred(c2w, fovy, height, width), height, width)
    assert out["rgb"].shape == (1, height, width, 3) and out["opacity"].shape == (1, height, width, 1)
    assert out["xyz"].shape == (1, height, width, 3) and out["depth"].shape == (1, height, width, 1)
    opacity = out["opacity"][0, ..., 0]
    focal = 0.5 * height / math.tan(0.5 * fovy.item())
    expected = focal * math.tan(math.asin(0.5 / 3.0))  # silhouette radius of a sphere, in pixels
    measured = math.sqrt((opacity > 0.5).sum().item() / math.pi)
    # The baked grid's silhouette sits about half a cell (0.016 world ≈ 1 px here) outside the true surface.
    assert abs(measured - expected) < 1.5, (measured, expected)
    # Centred on the image centre (the sphere is at the origin), opacity ~0 off the object.
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    centre = torch.stack([(opacity * xs).sum(), (opacity * ys).sum()]) / opacity.sum()
    assert torch.allclose(centre, torch.tensor([width / 2, height / 2]), atol=0.05)
    far = (xs - width / 2) ** 2 + (ys - height / 2) ** 2 > (expected + 3) ** 2
    assert opacity[far].max() < 1e-3 and out["rgb"][0][far].abs().max() < 1e-3
    # Premultiplied colour: a solid 0.7 grey times opacity.
    assert torch.allclose(out["rgb"][0], 0.7 * out["opacity"][0].expand(-1, -1, 3), atol=2e-3)


def test_xyz_and_depth_lie_on_the_surface(sphere):
    renderer = GridRenderer(sphere)
    c2w, fovy = _camera(az=-120.0, el=45.0, dist=2.5, fovy_deg=50.0)
    out = renderer.render(Cameras.centred(c2w, fovy, 48, 48), 48, 48)
    solid = out["opacity"][0, ..., 0] > 0.99
    assert solid.sum() > 200
    xyz = out["xyz"][0][solid]
    assert (xyz.norm(dim=-1) - 0.5).abs().max() < 1.5 * sphere.cell_size
    # Facing the camera: the visible hemisphere.
    assert bool(((xyz @ c2w[0, :3, 3]) > 0).all())
    _, depth = project(xyz[None], Cameras.centred(c2w, fovy, 48, 48))
    assert torch.allclose(out["depth"][0][solid][:, 0], depth[0], atol=1e-4)
    empty = out["opacity"][0, ..., 0] < 1e-6
    assert empty.any() and out["xyz"][0][empty].abs().max() == 0 and out["depth"][0][empty].abs().max() == 0


def test_axis_order_with_an_asymmetric_volume():
    # One small blob off every axis: a grid_sample axis mix-up (x,y,z) ↔ (W,H,D) would move it.
    canonical = Canonical(torch.zeros(32, 32, 32), torch.full((32, 32, 32, 3), 0.5), 1.0)
    centre = torch.tensor([0.55, 0.2, -0.35])
    blob = ((canonical.points() - centre).norm(dim=-1) < 0.12).float() * 200.0
    renderer = GridRenderer(Canonical(blob, canonical.rgb, 1.0))
    for az, el in ((70.0, 35.0), (200.0, -10.0)):
        c2w, fovy = _camera(az=az, el=el)
        out = renderer.render(Cameras.centred(c2w, fovy, 64, 64), 64, 64)
        opacity = out["opacity"][0, ..., 0]
        ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        centroid = torch.stack([(opacity * xs).sum(), (opacity * ys).sum()]) / opacity.sum()
        expected, _ = project(centre[None, None], Cameras.centred(c2w, fovy, 64, 64))
        assert torch.allclose(centroid, expected[0, 0], atol=0.3), (centroid, expected)


def test_chunked_equals_unchunked_and_batched_equals_single(sphere):
    c2w = c2w_from_spherical(torch.tensor([10.0, 100.0, 250.0]), torch.tensor([0.0, 30.0, -10.0]),
                             torch.tensor([2.0, 2.5, 3.0]))
    fovy = torch.tensor([0.5, 0.7, 0.9])
    cameras = Cameras.centred(c2w, fovy, 20, 24)
    reference = GridRenderer(sphere, num_samples=32, chunk_rays=2**20).render(cameras, 20, 24)
    out = GridRenderer(sphere, num_samples=32, chunk_rays=37).render(cameras, 20, 24)
    for key in ("rgb", "opacity", "xyz", "depth"):
        assert torch.allclose(out[key], reference[key], atol=1e-6), key
    assert reference["opacity"].max() > 0.99 and reference["opacity"].min() < 1e-6
    # The opacity-only path marches the same samples.
    origins, directions = get_rays(cameras)
    fast = GridRenderer(sphere, num_samples=32).render_opacity_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
    assert torch.allclose(fast["opacity"].reshape(3, 20, 24, 1), reference["opacity"], atol=1e-5)
    # Batched == one camera at a time.
    single = GridRenderer(sphere, num_samples=32).render(cameras[1], 20, 24)
    assert torch.allclose(single["opacity"], reference["opacity"][1:2], atol=1e-6)


def test_gradients_match_finite_differences():
    # Small, soft, asymmetric volume in double precision; omega rotates the camera, fovy zooms.
    ellipsoid = canonical_from_sdf(
        lambda p: (p / torch.tensor([0.5, 0.35, 0.3])).norm(dim=-1) * 0.3 - 0.3,
        lambda p: p * 0.5 + 0.5, resolution=16, sharpness=0.3,
    )
    renderer = GridRenderer(ellipsoid, num_samples=24, colour_weight_threshold=0.0)
    base, _ = _camera(az=30.0, el=20.0, dist=2.5, dtype=torch.float64)
    weights = torch.linspace(-1, 1, 6 * 6 * 3, dtype=torch.float64).reshape(1, 6, 6, 3)

    def loss(omega, fovy):
        rotation = so3_exp(omega) @ base[:, :3, :3]
        c2w = torch.cat([torch.cat([rotation, base[:, :3, 3:]], -1), base[:, 3:]], 1)
        out = renderer.render(Cameras.centred(c2w, fovy, 6, 6), 6, 6)
        return ((out["rgb"] * weights).sum() + (out["opacity"] * weights[..., :1]).sum()
                + (out["xyz"] * weights).sum() + out["depth"].sum())

    omega = torch.tensor([[0.01, -0.02, 0.03]], dtype=torch.float64, requires_grad=True)
    fovy = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (omega, fovy), eps=1e-6, atol=1e-5, rtol=1e-3)
    out = renderer.render(Cameras.centred(base, fovy, 6, 6), 6, 6)
    assert out["rgb"].dtype == torch.float64


def test_translation_gradient_and_empty_grid(sphere):
    renderer = GridRenderer(sphere, num_samples=16)
    c2w, fovy = _camera(dist=2.0)
    c2w = c2w.clone().requires_grad_(True)
    # Moving the camera along its right axis moves the sphere left: the right half loses coverage.
    out = renderer.render(Cameras.centred(c2w, fovy, 16, 16), 16, 16)
    out["opacity"][..., 8:, :].sum().backward()
    right = c2w.detach()[0, :3, 0]
    assert (c2w.grad[0, :3, 3] @ right).item() < 0
    empty = GridRenderer(Canonical(torch.zeros(8, 8, 8), torch.zeros(8, 8, 8, 3), 1.0))
    blank = empty.render(Cameras.centred(c2w.detach(), fovy, 8, 8), 8, 8)
    assert all(bool((blank[key] == 0).all()) for key in ("rgb", "opacity", "xyz", "depth"))


def test_a_thin_part_in_front_of_a_surface_keeps_its_own_point_with_front_level():
    """A ray through a thin, half-transparent part and then a solid one: its expected termination point falls in
    the empty space between them (a keypoint on spot's ear mapped onto its head). With `front_level` the point is
    where the opacity first reaches that level, on the thin part; rays that meet one surface keep the expected point."""
    def sdf(p):
        # a plate about a cell thick at 32³ (alone it renders at opacity 0.33), then a block whose face is at x = 0.1
        plate = torch.maximum((p[:, 0] - 0.5).abs() - 0.03, p[:, 1:].abs().amax(-1) - 0.2)
        block = (p - torch.tensor([-0.2, 0.0, 0.0])).abs().amax(-1) - 0.3
        return torch.minimum(plate, block)

    canonical = canonical_from_sdf(sdf, lambda p: torch.full_like(p, 0.5), resolution=32, radius=1.0)
    origins = torch.tensor([[3.0, 0.0, 0.0], [3.0, 0.1, 0.25]])  # through plate and block; above the plate: block only
    directions = torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    plain = GridRenderer(canonical, num_samples=256).render_rays(origins, directions)
    front = GridRenderer(canonical, num_samples=256, front_level=0.25).render_rays(origins, directions)
    cell = canonical.cell_size
    print("expected x", plain["xyz"][:, 0].tolist(), "front x", front["xyz"][:, 0].tolist())
    assert plain["xyz"][0, 0] < 0.5 - 3 * cell  # the expected point lies behind the plate, between the two
    assert abs(float(front["xyz"][0, 0]) - 0.5) < 1.5 * cell  # on the plate
    assert torch.equal(front["xyz"][1], plain["xyz"][1]) and torch.equal(front["opacity"], plain["opacity"])
