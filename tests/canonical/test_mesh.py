"""congeal.canonical.mesh: triangle meshes baked onto the grid."""
import pytest
import torch

from congeal.canonical.mesh import canonical_from_mesh
from congeal.common.errors import InputError


def test_mesh_builder_box_with_vertex_colours(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    mesh.apply_translation((0.2, 0.0, 0.0))
    # +x vertices red, -x vertices blue.
    colours = [[255, 0, 0, 255] if v[0] > 0.2 else [0, 0, 255, 255] for v in mesh.vertices]
    mesh.visual.vertex_colors = colours
    canonical = canonical_from_mesh(mesh, resolution=24)
    assert canonical.radius == pytest.approx(1.05 * 0.7)
    points = canonical.points()
    occupancy = canonical.occupancy(0.5)
    inside = ((points - torch.tensor([0.2, 0.0, 0.0])).abs() < torch.tensor([0.5, 0.3, 0.2]) - canonical.cell_size)
    outside = ((points - torch.tensor([0.2, 0.0, 0.0])).abs() > torch.tensor([0.5, 0.3, 0.2]) + canonical.cell_size)
    assert bool(occupancy[inside.all(-1)].all()) and not bool(occupancy[outside.any(-1)].any())
    right = canonical.rgb[(points[..., 0] > 0.6) & occupancy]
    left = canonical.rgb[(points[..., 0] < -0.2) & occupancy]
    assert bool((right[:, 0] > 0.9).all()) and bool((left[:, 2] > 0.9).all())
    # From a file, with a fixed colour.
    path = tmp_path / "box.ply"
    mesh.export(path)
    baked = canonical_from_mesh(path, resolution=16, radius=1.0, colour=(0.2, 0.4, 0.6))
    assert baked.radius == 1.0 and torch.allclose(baked.rgb[0, 0, 0], torch.tensor([0.2, 0.4, 0.6]))
    with pytest.raises(InputError):
        canonical_from_mesh(tmp_path / "missing.obj")
