"""congeal.canonical.textured_mesh: texture reads, OBJ loading, and a textured bake whose colours come from UVs."""
import numpy as np
import pytest
import torch
from PIL import Image

from congeal.canonical.textured_mesh import TexturedMesh, canonical_from_textured_mesh, sample_texture
from congeal.common.errors import InputError

RED, BLUE, GREEN, WHITE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 1.0)


def _texture():
    """2×2 texture: top row red | blue, bottom row green | white (row 0 is the top, at v = 1)."""
    return np.array([[RED, BLUE], [GREEN, WHITE]], dtype=np.float32)


def test_sample_texture_is_bilinear_with_v_up():
    texture = _texture()
    uv = np.array([[0.25, 0.75], [0.75, 0.75], [0.25, 0.25], [0.75, 0.25], [0.5, 0.75], [0.0, 1.0], [1.2, -0.3]])
    out = sample_texture(texture, uv)
    assert np.allclose(out[:4], [RED, BLUE, GREEN, WHITE])
    assert np.allclose(out[4], [0.5, 0.0, 0.5])  # halfway between red and blue
    assert np.allclose(out[5], RED) and np.allclose(out[6], WHITE)  # clamped


def _box_mesh(half=0.5):
    """A cube with its vertices split per triangle; triangles whose centroid has x < 0 map to the red texel,
    the others to the blue one."""
    import trimesh

    box = trimesh.creation.box(extents=(2 * half, 2 * half, 2 * half))
    vertices = np.asarray(box.vertices)[np.asarray(box.faces)].reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    left = vertices[faces].mean(1)[:, 0] < 0
    uv = np.repeat(np.where(left[:, None], [[0.25, 0.75]], [[0.75, 0.75]]), 3, axis=0)
    return TexturedMesh(vertices.astype(np.float64), faces.astype(np.int64), uv.astype(np.float64), _texture())


def test_welding_and_normals_of_a_split_mesh():
    mesh = _box_mesh()
    positions, index = mesh.welded()
    assert len(positions) == 8 and index.shape == (36,)
    assert mesh.geometry().is_watertight
    normals = mesh.vertex_normals()
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert (np.sum(normals * mesh.vertices, axis=1) > 0).all()  # outward at every corner


def test_textured_bake_takes_colour_from_the_texture():
    mesh = _box_mesh()
    canonical = canonical_from_textured_mesh(mesh, resolution=24, radius=1.0)
    assert canonical.resolution == 24 and canonical.radius == 1.0
    points = canonical.points()
    occupied = canonical.occupancy()
    inside = (points.abs() < 0.45).all(-1)
    outside = (points.abs() > 0.6).any(-1)
    assert occupied[inside].float().mean() > 0.99 and occupied[outside].float().mean() < 0.01
    # Cells at the x = -0.5 face are red, at the x = +0.5 face blue (whatever their depth in the surface band).
    near_left = (points[..., 0] + 0.5).abs() < 0.05
    near_right = (points[..., 0] - 0.5).abs() < 0.05
    central = (points[..., 1:].abs() < 0.3).all(-1)
    assert torch.allclose(canonical.rgb[near_left & central], torch.tensor(RED), atol=1e-5)
    assert torch.allclose(canonical.rgb[near_right & central], torch.tensor(BLUE), atol=1e-5)


def test_load_an_obj_with_uvs_and_its_texture(tmp_path):
    obj = tmp_path / "tri.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0.25 0.75\nvt 0.75 0.75\nvt 0.25 0.25\nf 1/1 2/2 3/3\n")
    Image.fromarray((_texture() * 255).astype(np.uint8)).save(tmp_path / "tex.png")
    mesh = TexturedMesh.load(obj, tmp_path / "tex.png")
    assert mesh.vertices.shape == (3, 3) and mesh.faces.tolist() == [[0, 1, 2]]
    assert np.allclose(mesh.uv, [[0.25, 0.75], [0.75, 0.75], [0.25, 0.25]])
    assert np.allclose(mesh.texture[0, 0], RED)
    samples = mesh.surface_samples(0.1)
    assert len(samples.points) >= 100 and np.allclose(samples.points[:, 2], 0.0)
    corner = samples.colour_at(torch.tensor([[0.02, 0.02, 0.0]]))  # near the red-texel corner
    assert corner[0, 0] > 0.8 and corner[0, 2] < 0.2
    moved = mesh.transformed(np.eye(3), np.array([1.0, 0.0, 0.0]), 2.0)
    assert np.allclose(moved.vertices[1], [4.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        mesh.transformed(np.diag([1.0, 1.0, -1.0]), np.zeros(3), 1.0)  # a mirror would flip the winding


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        TexturedMesh.load(tmp_path / "missing.obj", tmp_path / "missing.png")
    obj = tmp_path / "plain.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tex.png")
    with pytest.raises(InputError, match="texture coordinate"):
        TexturedMesh.load(obj, tmp_path / "tex.png")
