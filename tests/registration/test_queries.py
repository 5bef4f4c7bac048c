"""congeal.registration.queries: forward and reverse maps through a state, and the public map file."""
import numpy as np
import torch

from congeal.registration.mapping import MappingConfig
from congeal.registration.queries import forward_points, reverse_points
from congeal.registration.state import load_image_state
from congeal.run.folder import RunFolder
from helpers.mini_run import make_mini_run


def test_maps_file_format_and_forward_values(tmp_path):
    info = make_mini_run(tmp_path)
    for name, item in info.items():
        w, h = item["size"]
        with np.load(tmp_path / "maps" / f"{name}.npz") as data:
            xyz, valid = data["xyz"], data["valid"]
        assert xyz.shape == (h, w, 3) and xyz.dtype == np.float32
        assert valid.shape == (h, w) and valid.dtype == np.bool_
        assert valid.sum() > 500
        assert np.isnan(xyz[~valid]).all() and np.isfinite(xyz[valid]).all()
        # the object sits where the crop puts it: outside the crop window nothing is valid
        crop = item["crop"]
        ys, xs = np.nonzero(valid)
        assert xs.min() + 0.5 >= crop.x0 and xs.max() + 0.5 <= crop.x0 + crop.side
        # a valid pixel maps to the render's xyz at the warped working pixel
        state = load_image_state(RunFolder(tmp_path).state_path(name))
        p = torch.tensor([[xs[len(xs) // 2] + 0.5, ys[len(ys) // 2] + 0.5]])
        col, row = crop.to_working(p)[0].floor().long().tolist()
        q = item["warp"][row, col]  # render working pixel this pixel is warped to (to within a pixel)
        j, i = (q - 0.5).round().long().tolist()
        got, ok = forward_points(state, p)
        assert ok.all()
        assert (got[0] - item["xyz"][i, j]).norm() < 0.08


def test_reverse_of_forward_returns_to_the_pixel(tmp_path):
    """reverse(forward(p)) lands within 2 % of the object bbox's longer side for >= 95 % of object pixels."""
    make_mini_run(tmp_path)
    for name in ("a", "b"):
        state = load_image_state(RunFolder(tmp_path).state_path(name))
        with np.load(tmp_path / "maps" / f"{name}.npz") as data:
            valid = data["valid"]
        ys, xs = np.nonzero(valid)
        side = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        pts = torch.tensor(np.stack([xs + 0.5, ys + 0.5], -1), dtype=torch.float32)
        xyz, ok = forward_points(state, pts)
        back, ok_back = reverse_points(state, xyz)
        close = ((back - pts).norm(dim=-1) <= 0.02 * side) & ok_back
        assert ok.all()
        assert close.float().mean() >= 0.95


def test_reverse_reports_far_points_invalid(tmp_path):
    make_mini_run(tmp_path)
    state = load_image_state(RunFolder(tmp_path).state_path("a"))
    far = torch.tensor([[5.0, 5.0, 5.0], [float("nan"), 0.0, 0.0]])
    pts, ok = reverse_points(state, far)
    assert not ok.any() and torch.isnan(pts).all()


def test_reverse_takes_the_far_side_of_a_thin_part_at_its_projection():
    """A point on the hidden side of a thin rod maps to where it projects, not to the rod's rim (or invalid)."""
    import math

    from congeal.canonical.bake import canonical_from_sdf
    from congeal.canonical.render import GridRenderer
    from congeal.geometry.cameras import Cameras, c2w_from_spherical, project
    from congeal.registration.mapping import identity_warp
    from congeal.registration.state import ImageState

    def rod(p):  # a rod along y, radius 0.08, half length 0.7
        q = p.clone()
        q[..., 1] = (p[..., 1].abs() - 0.7).clamp_min(0.0)
        return q.norm(dim=-1) - 0.08

    size = 64
    canonical = canonical_from_sdf(rod, lambda p: (p * 0.8 + 0.5).clamp(0, 1), resolution=48, radius=1.0)
    c2w = c2w_from_spherical(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]))  # camera on +x
    fovy = math.radians(40.0)
    cameras = Cameras.centred(c2w, torch.tensor([fovy]), size, size)
    out = GridRenderer(canonical, num_samples=96).render(cameras, size, size)
    op = out["opacity"][0]
    focal = size / (2.0 * math.tan(0.5 * fovy))
    camera = {"c2w": c2w[0].tolist(), "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2,
              "width": size, "height": size}
    state = ImageState(name="rod", warp=identity_warp(size), render_xyz=out["xyz"][0] * (op > 0),
                       render_opacity=op, image_mask=(op[..., 0] > 0.5).float(), scale=torch.ones(2),
                       offset=torch.zeros(2), width=size, height=size, camera=camera)
    # points on the rod's back (x < 0: hidden from the camera on +x), along its length
    ys = torch.linspace(-0.5, 0.5, 9)
    back = torch.stack([torch.full_like(ys, -0.08), ys, torch.zeros_like(ys)], -1)
    truth, _ = project(back[None], cameras)
    got, ok = reverse_points(state, back)
    assert ok.all()
    assert ((got - truth[0]).norm(dim=-1) <= 0.6).all()  # within a working pixel's width of the projection
    # without the projection step (nearest visible point only) they are beyond the 3D threshold: invalid
    old, ok_old = reverse_points(state, back, MappingConfig(reverse_behind=0.0))
    assert not (ok_old & ((old - truth[0]).norm(dim=-1) <= 0.6)).any()
