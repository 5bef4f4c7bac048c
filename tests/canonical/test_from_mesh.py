"""congeal.canonical.from_mesh: triangle meshes baked onto the grid."""
import pytest
import torch

from congeal.canonical.from_mesh import canonical_from_mesh
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


def test_a_baked_mesh_has_the_meshs_own_size_not_a_voxel_more():
    """A voxelisation marks every voxel the surface touches as filled, which made baked meshes up to a voxel too fat
    (spot's silhouette at 64³: 13 % too large). A sphere's mesh bakes like the sphere's own signed distance (measured:
    density within 0.4 % of the analytic bake at 32³; the voxel-only distance was off by 54 %), whichever way round
    its faces are wound."""
    trimesh = pytest.importorskip("trimesh")
    from congeal.canonical.bake import canonical_from_sdf

    sphere = canonical_from_sdf(lambda p: p.norm(dim=-1) - 0.5, lambda p: torch.full_like(p, 0.5), resolution=32,
                                radius=1.0)
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    inverted = mesh.copy()
    inverted.invert()
    for shape in (mesh, inverted):
        baked = canonical_from_mesh(shape, resolution=32, radius=1.0, colour=(0.5, 0.5, 0.5))
        gap = (baked.density - sphere.density).abs().max() / sphere.density.max()
        print("largest density gap / max density", float(gap))
        assert gap < 0.02
