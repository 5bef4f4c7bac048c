"""congeal.canonical.silhouette: the opacity-only ray marcher agrees with the grid renderer."""
import torch

from congeal.canonical.render import GridRenderer
from congeal.canonical.silhouette import SilhouetteRenderer
from congeal.geometry.cameras import Cameras, c2w_from_spherical
from congeal.registration.framing import render_in_frame
from helpers.canonicals import small_canonical


def test_silhouette_renderer_matches_grid_renderer_opacity():
    canonical = small_canonical()
    c2w = c2w_from_spherical(torch.tensor([30.0, 200.0]), torch.tensor([20.0, 0.0]), torch.tensor([2.5, 3.0]))
    fovy = torch.tensor([0.7, 0.5])
    cameras = Cameras.centred(c2w, fovy, 24, 24)
    grid = GridRenderer(canonical, num_samples=24).render(cameras, 24, 24)["opacity"]
    fast = render_in_frame(SilhouetteRenderer(canonical, num_samples=24), cameras, 24)["opacity"]
    assert torch.allclose(fast, grid, atol=1e-4)
