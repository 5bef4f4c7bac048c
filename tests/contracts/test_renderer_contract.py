"""The renderer seam's contract, run by every implementation (`congeal.canonical.render.Renderer`).

    implementations (`CASES`): the baked grid through `render` (also with `front_level`, as registration's final
    renders) and through `render_rays` (the ray entry that `registration.framing.render_in_frame` prefers), the
    silhouette renderer (`render_rays`, opacity only), and the threestudio adapter `adapters/renderer.py` through
    both entries over a real threestudio `volume-grid` geometry (marked `integration`: it needs THREESTUDIO_ROOT and
    runs in a threestudio environment)

What each promises, for B cameras seen at H×W: every promised key is [B,H,W,C], finite, on the cameras' device, in the
cameras' dtype; opacity in [0,1]; rgb premultiplied (0 <= rgb <= opacity); xyz and t/depth exactly 0 on an empty ray,
xyz inside the canonical's box and on the pixel's ray, depth its distance along the viewing axis (what
`geometry.cameras.project` calls depth: the synthetic ground truth compares the two); the principal point and the
cameras' own frame size honoured; the same output every call; gradients reaching c2w, fovy and the principal point; and
a batch rendering each camera exactly as it renders alone (within BATCH_ATOL).
"""
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import pytest
import torch
from torch import Tensor

from congeal.canonical.grid import Canonical
from congeal.canonical.render import GridRenderer, Renderer
from congeal.canonical.silhouette import SilhouetteRenderer
from congeal.geometry.cameras import Cameras, c2w_from_spherical, get_rays, project
from helpers.canonicals import small_canonical

H, W = 10, 14  # not square, so a swapped height/width cannot pass
CHANNELS = {"rgb": 3, "opacity": 1, "xyz": 3, "depth": 1, "t": 1}
# fp32: every ray is marched on its own, so a batch and its rows differ only by the order of chunked index ops
BATCH_ATOL = 1e-5
EMPTY = 1e-6  # opacity at or under which a ray counts as empty (both renderers' own threshold)


@dataclass
class Case:
    """One implementation behind one entry point."""

    renderer: object
    call: Callable[[Cameras, int, int], Dict[str, Tensor]]
    keys: Tuple[str, ...]
    radius: float
    follows_dtype: bool  # whether float64 cameras give float64 renders (a promise of the grid renderers only)


def _rays_entry(renderer) -> Callable[[Cameras, int, int], Dict[str, Tensor]]:
    """What `framing.render_in_frame` does with a `render_rays` renderer, at any frame size: every pixel's ray of
    `cameras.rescaled(H, W)` through `render_rays`, reshaped to [B,H,W,C]."""

    def call(cameras: Cameras, height: int, width: int) -> Dict[str, Tensor]:
        origins, directions = get_rays(cameras.rescaled(height, width))
        out = renderer.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
        return {k: v.reshape(len(cameras), height, width, -1) for k, v in out.items()}

    return call


def _canonical() -> Canonical:
    return small_canonical(resolution=16)


def _grid(device, entry: str, front_level: float = 0.0) -> Case:
    # front_gap_cells 0.25 (default 2): the first-crossing path is taken on some pixels of this small scene
    renderer = GridRenderer(_canonical(), num_samples=16, front_level=front_level, front_gap_cells=0.25).to(device)
    if entry == "render":
        return Case(renderer, renderer.render, ("rgb", "opacity", "xyz", "depth"), renderer.radius, True)
    return Case(renderer, _rays_entry(renderer), ("rgb", "opacity", "xyz", "t"), renderer.radius, True)


def _silhouette(device, entry: str) -> Case:
    renderer = SilhouetteRenderer(_canonical(), num_samples=16).to(device)
    return Case(renderer, _rays_entry(renderer), ("opacity",), renderer.marcher.radius, True)


def _threestudio_renderer(threestudio, canonical: Canonical, device):
    """A threestudio volume-grid geometry holding `canonical` (density through softplus, colour through
    `no-material`'s sigmoid), rendered by the test-only plain-torch volume renderer (nerfacc is CUDA-only)."""
    r, bias = canonical.resolution, -20.0
    geometry = threestudio.find("volume-grid")({"radius": canonical.radius, "grid_size": [r, r, r],
                                                "n_feature_dims": 3, "density_activation": "softplus",
                                                "density_bias": bias, "normal_type": None})
    material = threestudio.find("no-material")({"n_output_dims": 3, "color_activation": "sigmoid"})
    background = threestudio.find("solid-color-background")({"learned": False})
    # volume-grid reads its grid [1,C,D,H,W] at (x, y, z): x along W, z along D, hence [iz,iy,ix]
    density = canonical.density.permute(2, 1, 0).double().clamp_min(1e-6)
    raw_density = density + torch.log(-torch.expm1(-density)) - bias  # softplus(raw + bias) = density
    rgb = torch.logit(canonical.rgb.permute(3, 2, 1, 0).double().clamp(1e-4, 1 - 1e-4))
    with torch.no_grad():
        geometry.grid.copy_(torch.cat([raw_density[None], rgb])[None].float())
    renderer = threestudio.find("congeal-test-dense-volume-renderer")(
        {"radius": canonical.radius, "num_samples_per_ray": 16}, geometry=geometry, material=material,
        background=background)
    for module in (geometry, material, background, renderer):
        module.to(device).eval()
    return renderer


def _threestudio(device, entry: str, threestudio) -> Case:
    if importlib.util.find_spec("threestudio_congeal") is None:
        pytest.skip("threestudio_congeal is not pip-installed: run `pip install -e .` in the repository")
    adapter = importlib.import_module("threestudio_congeal.adapters.renderer")
    canonical = _canonical()
    renderer = adapter.ThreestudioRenderer(_threestudio_renderer(threestudio, canonical, device), chunk_rays=97)
    if entry == "render":
        return Case(renderer, renderer.render, ("rgb", "opacity", "xyz", "depth"), canonical.radius, False)
    return Case(renderer, _rays_entry(renderer), ("rgb", "opacity", "xyz", "t"), canonical.radius, False)


CASES = [
    "grid.render",
    "grid_front.render",  # xyz/depth at the first crossing of opacity 0.25 (registration's final renders)
    "grid.render_rays",
    "silhouette.render_rays",
    pytest.param("threestudio.render", marks=pytest.mark.integration),
    pytest.param("threestudio.render_rays", marks=pytest.mark.integration),
]
# Contract breaks found by this file: case -> (test name, reason); marked xfail(strict=True) so a fix shows up.
KNOWN_BREAKS: Dict[str, Tuple[str, str]] = {
}


@pytest.fixture(params=CASES)
def case(request, device) -> Case:
    name = request.param
    kind, entry = name.split(".")
    broken = KNOWN_BREAKS.get(name)
    if broken and broken[0] == request.node.originalname:
        request.applymarker(pytest.mark.xfail(strict=True, reason=broken[1]))
    if kind == "grid":
        return _grid(device, entry)
    if kind == "grid_front":
        return _grid(device, entry, front_level=0.25)
    if kind == "silhouette":
        return _silhouette(device, entry)
    return _threestudio(device, entry, request.getfixturevalue("threestudio_for_contracts"))


def _cameras(device, dtype=torch.float32, height: int = H, width: int = W) -> Cameras:
    """Three cameras (threestudio's torch.cross trap fires on a batch of exactly 3) at different poses, FoVs and
    principal points; the object covers part of every frame, so some rays hit and some are empty."""
    c2w = c2w_from_spherical(torch.tensor([30.0, 150.0, 260.0], dtype=torch.float64),
                             torch.tensor([20.0, -10.0, 45.0], dtype=torch.float64),
                             torch.tensor([2.6, 3.0, 2.8], dtype=torch.float64))
    fovy = torch.tensor([0.7, 0.6, 0.8], dtype=torch.float64)
    principal = torch.tensor([[0.5 * width, 0.5 * height], [0.4 * width, 0.55 * height],
                              [0.6 * width, 0.45 * height]], dtype=torch.float64)
    return Cameras(c2w.to(device, dtype), fovy.to(device, dtype), principal.to(device, dtype), height, width)


def _render(case: Case, cameras: Cameras, height: int = H, width: int = W) -> Dict[str, Tensor]:
    torch.manual_seed(0)
    return case.call(cameras, height, width)


def test_is_a_renderer(case):
    if "depth" in case.keys:  # the `render` entry is the protocol
        assert isinstance(case.renderer, Renderer)
    else:
        assert callable(getattr(case.renderer, "render_rays", None))


def test_outputs_have_the_promised_keys_shapes_dtype_and_device(case, device):
    cameras = _cameras(device)
    with torch.no_grad():
        out = _render(case, cameras)
    assert set(case.keys) <= set(out), f"missing {set(case.keys) - set(out)}"
    for key in case.keys:
        assert out[key].shape == (3, H, W, CHANNELS[key]), key
        assert out[key].dtype == torch.float32, key
        assert out[key].device.type == device.type, key


def test_float64_cameras_render_in_float64(case, device):
    if not case.follows_dtype:
        pytest.skip("not promised: this renderer's modules compute in float32")
    with torch.no_grad():
        out = _render(case, _cameras(device, torch.float64))
    assert {out[key].dtype for key in case.keys} == {torch.float64}


def test_values_are_finite_and_in_the_promised_ranges(case, device):
    with torch.no_grad():
        out = _render(case, _cameras(device))
    for key in case.keys:
        assert torch.isfinite(out[key]).all(), key
    opacity = out["opacity"]
    assert float(opacity.min()) >= 0.0 and float(opacity.max()) <= 1.0
    empty = opacity <= EMPTY
    # every camera sees the object and some empty space (else the checks below are vacuous)
    assert bool((opacity.flatten(1).amax(1) > 0.5).all()) and bool(empty.flatten(1).any(1).all())
    if "rgb" in out:
        rgb = out["rgb"]
        assert float(rgb.min()) >= 0.0
        assert bool((rgb <= opacity + 1e-5).all()), "rgb is not premultiplied by opacity"
    for key in ("xyz", "depth", "t"):
        if key in case.keys:
            assert bool((out[key][empty.expand_as(out[key])] == 0).all()), f"{key} is not 0 on empty rays"
    if "xyz" in out:
        assert float(out["xyz"].abs().max()) <= case.radius + 1e-4, "xyz outside the canonical's box"
    for key in ("depth", "t"):
        if key in out:
            assert float(out[key].min()) >= 0.0, key


def _hits(case: Case, device) -> Tuple[Cameras, Dict[str, Tensor], Tensor]:
    """(cameras, their render, the pixels [3,H,W] with some opacity: xyz is normalised by opacity, so it is
    meaningful there)."""
    cameras = _cameras(device)
    with torch.no_grad():
        out = _render(case, cameras)
    return cameras, out, out["opacity"][..., 0] > 0.05


def test_xyz_is_on_the_pixel_ray(case, device):
    if "xyz" not in case.keys:
        pytest.skip("no xyz promised (opacity only)")
    cameras, out, hit = _hits(case, device)
    xy, _ = project(out["xyz"].reshape(3, -1, 3), cameras)
    rows, cols = torch.meshgrid(torch.arange(H, device=device) + 0.5, torch.arange(W, device=device) + 0.5,
                                indexing="ij")
    centres = torch.stack([cols, rows], dim=-1).expand(3, H, W, 2)
    assert torch.allclose(xy.reshape(3, H, W, 2)[hit], centres[hit], atol=2e-3), "xyz is off its pixel's ray"
    if "t" in out:
        distance = (out["xyz"] - cameras.c2w[:, None, None, :3, 3]).norm(dim=-1)
        assert torch.allclose(out["t"][..., 0][hit], distance[hit], atol=1e-4), "t is not the distance along the ray"


def test_depth_is_the_distance_along_the_viewing_axis(case, device):
    """`depth`, where promised, is `geometry.cameras.project`'s depth of xyz (what the synthetic ground truth's
    visibility test compares it with), not the distance along the ray."""
    if "depth" not in case.keys:
        pytest.skip("no depth promised")
    cameras, out, hit = _hits(case, device)
    _, depth = project(out["xyz"].reshape(3, -1, 3), cameras)
    assert torch.allclose(out["depth"][..., 0][hit], depth.reshape(3, H, W)[hit], atol=1e-4), \
        "depth is not the distance along the viewing axis (geometry.cameras.project's depth)"


def test_the_principal_point_is_honoured(case, device):
    """A principal point moved right by 2 px and down by 1 px moves the picture by exactly that."""
    cameras = _cameras(device)
    moved = Cameras(cameras.c2w, cameras.fovy, cameras.principal + torch.tensor([2.0, 1.0], device=device), H, W)
    with torch.no_grad():
        base, shifted = _render(case, cameras), _render(case, moved)
    for key in case.keys:
        assert torch.allclose(shifted[key][:, 1:, 2:], base[key][:, :-1, :-2], atol=BATCH_ATOL), key


def test_cameras_of_another_frame_size_are_seen_at_the_render_size(case, device):
    """Cameras described at 2H×2W (principal point in that frame) render at H×W as the same cameras at H×W."""
    with torch.no_grad():
        small = _render(case, _cameras(device))
        large = _render(case, _cameras(device, height=2 * H, width=2 * W))
    for key in case.keys:
        assert torch.allclose(large[key], small[key], atol=BATCH_ATOL), key


def test_rendering_is_deterministic(case, device):
    with torch.no_grad():
        first, second = _render(case, _cameras(device)), _render(case, _cameras(device))
    for key in case.keys:
        assert torch.equal(first[key], second[key]), key


def test_gradients_reach_every_camera_tensor(case, device):
    cameras = _cameras(device)
    for tensor in (cameras.c2w, cameras.fovy, cameras.principal):
        tensor.requires_grad_(True)
    out = _render(case, cameras)
    generator = torch.Generator().manual_seed(1)
    loss = sum((out[key] * torch.rand(out[key].shape, generator=generator).to(device)).sum()
               for key in ("rgb", "opacity") if key in out)
    loss.backward()
    for name in ("c2w", "fovy", "principal"):
        grad = getattr(cameras, name).grad
        assert grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(grad).all(), name
        assert float(grad.abs().sum()) > 0, f"zero gradient on {name}"


def test_a_batch_renders_each_camera_as_it_renders_alone(case, device):
    cameras = _cameras(device)
    with torch.no_grad():
        batch = _render(case, cameras)
        alone = [_render(case, cameras[i]) for i in range(len(cameras))]
    for key in case.keys:
        for i, single in enumerate(alone):
            assert torch.allclose(batch[key][i:i + 1], single[key], atol=BATCH_ATOL), (key, i)
