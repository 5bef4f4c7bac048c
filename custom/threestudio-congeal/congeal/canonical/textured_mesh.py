"""Baking a UV-textured triangle mesh onto the canonical grid: colour from the texture image, not vertex colours.

    mesh = TexturedMesh.load("spot_triangulated.obj", "spot_texture.png")
    canonical = canonical_from_textured_mesh(mesh, resolution=64, radius=1.0)
    samples = mesh.surface_samples(spacing=0.005)
    samples.colour_at(points), samples.normal_at(points)          # [N,3] each: the nearest surface sample's

Shape as in `congeal.canonical.from_mesh` (signed distance: voxelised occupancy far from the surface, exact near it → density).
Colour: the surface is sampled densely on a barycentric lattice in every triangle (spacing well under a grid cell),
each sample reads the texture bilinearly at its interpolated UV (OBJ convention: v up, the texture's bottom row at
v = 0), and every grid cell within 3 cells of the surface takes the colour of its nearest sample (cells farther
away, which no render reads, copy the nearest such cell). Deterministic: no random sampling, so equal
inputs give byte-equal canonicals. No ray-tracing back-end (rtree, embree) is needed: nearest neighbours come from
scipy's cKDTree.

An OBJ with texture coordinates repeats a vertex wherever a UV seam runs through it; `TexturedMesh` keeps that
split (every vertex has one UV) and `geometry()` merges positions back for the watertight shape and smooth normals.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from congeal.canonical.bake import density_for_grid
from congeal.canonical.grid import Canonical, grid_points
from congeal.canonical.from_mesh import _mesh_sdf_on_grid, barycentric_lattice
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["TexturedMesh", "SurfaceSamples", "canonical_from_textured_mesh", "sample_texture"]

NEAR_CELLS = 3.0  # cells within this distance of the surface read the texture; the rest copy their nearest one


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture read: texture [H,W,3] in [0,1], uv [N,2] (u right, v up, [0,1]², clamped) -> [N,3]."""
    height, width = texture.shape[:2]
    u = np.clip(uv[:, 0], 0.0, 1.0) * width - 0.5
    v = (1.0 - np.clip(uv[:, 1], 0.0, 1.0)) * height - 0.5  # texel (row i, col j) centre at ((j+.5)/W, 1-(i+.5)/H)
    x0 = np.clip(np.floor(u), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(v), 0, height - 1).astype(np.int64)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx = np.clip(u - x0, 0.0, 1.0)[:, None]
    fy = np.clip(v - y0, 0.0, 1.0)[:, None]
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class SurfaceSamples:
    """Dense points on a mesh's surface with their texture colour and smooth normal; nearest-sample lookups."""

    points: np.ndarray
    """[M,3] positions."""
    colours: np.ndarray
    """[M,3] rgb in [0,1]."""
    normals: np.ndarray
    """[M,3] unit smooth (vertex-interpolated) normals."""

    def __post_init__(self):
        from scipy.spatial import cKDTree

        self._tree = cKDTree(self.points)

    def nearest(self, points: np.ndarray) -> np.ndarray:
        """Index [N] of the nearest sample of every query point [N,3]."""
        _, index = self._tree.query(np.asarray(points, dtype=np.float64), workers=-1)
        return index

    def colour_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The nearest sample's colour, as a tensor like `points`."""
        index = self.nearest(points.detach().cpu().numpy())
        return torch.from_numpy(self.colours[index]).to(points)

    def normal_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The nearest sample's unit normal, as a tensor like `points` (for shading photos)."""
        index = self.nearest(points.detach().cpu().numpy())
        return torch.from_numpy(self.normals[index]).to(points)


@dataclass
class TexturedMesh:
    """A triangle mesh with per-vertex UVs and a texture image (vertices split at UV seams, as OBJ stores them)."""

    vertices: np.ndarray
    """[V,3] float64 positions."""
    faces: np.ndarray
    """[F,3] int64 vertex indices (counter-clockwise seen from outside)."""
    uv: np.ndarray
    """[V,2] texture coordinates (u right, v up)."""
    texture: np.ndarray
    """[H,W,3] float32 rgb in [0,1]."""

    @classmethod
    def load(cls, mesh_path: PathLike, texture_path: PathLike) -> "TexturedMesh":
        """Read an OBJ with texture coordinates and its texture image (any format PIL reads).

        Raises:
            InputError naming the file: missing, unreadable, or a mesh without faces or UVs.
        """
        import trimesh
        from PIL import Image

        mesh_path, texture_path = Path(mesh_path), Path(texture_path)
        for path in (mesh_path, texture_path):
            if not path.is_file():
                raise InputError(path, "no such file", "pass the mesh (.obj) and its texture image")
        try:
            mesh = trimesh.load(str(mesh_path), force="mesh", process=False)
        except Exception as error:
            raise InputError(mesh_path, f"trimesh cannot read it ({type(error).__name__}: {error})",
                             "pass an OBJ file with texture coordinates") from None
        uv = getattr(getattr(mesh, "visual", None), "uv", None)
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or uv is None or len(uv) != len(mesh.vertices):
            raise InputError(mesh_path, "is not a triangle mesh with one texture coordinate per vertex",
                             "pass an OBJ with `vt` entries on every face")
        try:
            with Image.open(texture_path) as image:
                texture = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        except Exception as error:
            raise InputError(texture_path, f"cannot read the texture ({type(error).__name__}: {error})",
                             "pass a PNG/JPEG texture image") from None
        return cls(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64),
                   np.asarray(uv, dtype=np.float64), texture)

    def transformed(self, rotation: np.ndarray, translation: np.ndarray, scale: float) -> "TexturedMesh":
        """The mesh moved by p → scale · (rotation @ p + translation) (rotation proper: faces keep their winding)."""
        if abs(np.linalg.det(rotation) - 1.0) > 1e-6:
            raise ValueError("rotation must be a proper rotation (det +1)")
        vertices = scale * (self.vertices @ np.asarray(rotation, dtype=np.float64).T + np.asarray(translation))
        return TexturedMesh(vertices, self.faces, self.uv, self.texture)

    def welded(self) -> Tuple[np.ndarray, np.ndarray]:
        """(positions [P,3], index [V] of each vertex's position): vertices split at UV seams merged back."""
        positions, index = np.unique(np.round(self.vertices, 9), axis=0, return_inverse=True)
        return positions, index.reshape(-1)

    def geometry(self):
        """The watertight shape as a `trimesh.Trimesh` (positions welded, no texture)."""
        import trimesh

        positions, index = self.welded()
        return trimesh.Trimesh(positions, index[self.faces], process=False)

    def vertex_normals(self) -> np.ndarray:
        """[V,3] unit area-weighted smooth normals, equal on both sides of a UV seam."""
        positions, index = self.welded()
        corners = self.vertices[self.faces]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2·area
        summed = np.zeros_like(positions)
        for k in range(3):
            np.add.at(summed, index[self.faces[:, k]], face_normals)
        summed /= np.linalg.norm(summed, axis=1, keepdims=True).clip(1e-12)
        return summed[index]

    def surface_samples(self, spacing: float) -> SurfaceSamples:
        """Samples on a barycentric lattice in every triangle, at most `spacing` apart along the longest edge."""
        corners = self.vertices[self.faces]  # [F,3,3]
        longest = float(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1).max())
        n = int(min(64, max(1, math.ceil(longest / spacing))))
        weights = barycentric_lattice(n)  # [S,3]
        points = np.einsum("sk,fkd->fsd", weights, corners).reshape(-1, 3)
        uv = np.einsum("sk,fkd->fsd", weights, self.uv[self.faces]).reshape(-1, 2)
        normals = np.einsum("sk,fkd->fsd", weights, self.vertex_normals()[self.faces]).reshape(-1, 3)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
        colours = sample_texture(self.texture, uv).astype(np.float32)
        return SurfaceSamples(points, colours, normals.astype(np.float32))


def canonical_from_textured_mesh(mesh: TexturedMesh, resolution: int = 64, radius: Optional[float] = None,
                                 sharpness: float = 2.0, samples: Optional[SurfaceSamples] = None) -> Canonical:
    """Bake a textured mesh onto a grid (the mesh's own frame; nothing is recentred).

    Args:
        mesh: the textured mesh.
        resolution: cells per side.
        radius: grid half-side; default 1.05 × the largest absolute vertex coordinate.
        sharpness: as in `canonical_from_sdf`.
        samples: surface samples to colour from (default: spacing half a cell).
    Returns:
        Canonical whose colour at every cell is the texture at the nearest surface point.
    """
    if radius is None:
        radius = 1.05 * float(np.abs(mesh.vertices).max())
    from scipy import ndimage

    cell = 2.0 * radius / resolution
    sdf = _mesh_sdf_on_grid(mesh.geometry(), resolution, radius)
    density = density_for_grid(torch.from_numpy(sdf), resolution, radius, sharpness)
    samples = samples or mesh.surface_samples(0.5 * cell)
    # Colour is read only near the surface (the renderer reads it where the compositing weight is): look up the
    # cells within NEAR_CELLS of it (nearest-neighbour queries far from a surface are slow), and give every other
    # cell its nearest looked-up cell's colour.
    near = np.abs(sdf) <= NEAR_CELLS * cell
    centres = grid_points(resolution, radius)
    rgb = torch.zeros(resolution, resolution, resolution, 3)
    rgb[torch.from_numpy(near)] = samples.colour_at(centres[torch.from_numpy(near)])
    if not near.all():
        index = ndimage.distance_transform_edt(~near, return_distances=False, return_indices=True)
        rgb = rgb[tuple(torch.from_numpy(i) for i in index)]
    return Canonical(density.contiguous(), rgb.clamp(0.0, 1.0).contiguous(), float(radius))
