"""congeal.canonical.bake: signed distance functions baked onto the grid."""
import torch

from congeal.canonical.bake import canonical_from_sdf, density_from_sdf


def _sphere(resolution=16, radius=1.0, centre=(0.0, 0.0, 0.0), size=0.5):
    c = torch.tensor(centre)
    return canonical_from_sdf(lambda p: (p - c).norm(dim=-1) - size, lambda p: (p * 0.5 + 0.5).clamp(0, 1),
                              resolution=resolution, radius=radius)


def test_sdf_builder_surface_and_axis_order():
    canonical = _sphere(resolution=32, centre=(0.3, -0.1, 0.0), size=0.4)
    dist = (canonical.points() - torch.tensor([0.3, -0.1, 0.0])).norm(dim=-1)
    occupancy = canonical.occupancy(0.5)
    cell = canonical.cell_size
    assert bool(occupancy[dist < 0.4 - cell].all()) and not bool(occupancy[dist > 0.4 + cell].any())
    # indexed [ix, iy, iz]: the density's centroid sits at the sphere's centre, x first.
    weights = canonical.density / canonical.density.sum()
    centroid = (weights[..., None] * canonical.points()).sum((0, 1, 2))
    assert torch.allclose(centroid, torch.tensor([0.3, -0.1, 0.0]), atol=0.02)
    assert bool((canonical.density >= 0).all()) and canonical.rgb.min() >= 0 and canonical.rgb.max() <= 1
    assert 0.4 < canonical.bounding_radius() < 0.4 + 0.3 + 2 * cell


def test_density_from_sdf_is_a_laplace_cdf():
    sigma = density_from_sdf(torch.tensor([-1.0, 0.0, 1.0]), beta=0.01, max_density=100.0)
    assert torch.allclose(sigma, torch.tensor([100.0, 50.0, 0.0]), atol=1e-6)
