"""Baking a triangle mesh onto the canonical grid (trimesh; voxelised occupancy -> signed distance -> density).

    canonical = canonical_from_mesh("chair.obj", resolution=64)          # the mesh's own frame, colours if any
    canonical = canonical_from_mesh(mesh, resolution=32, colour=(0.2, 0.4, 0.6))   # a trimesh.Trimesh, one colour

The signed distance comes from a voxelisation at half the grid's pitch with the interior filled (no ray-tracing
back-end needed) and a Euclidean distance transform, and near the surface from a dense lattice of surface points
(the voxels alone make the shape up to a voxel too fat); the density from it as for SDFs (`congeal.canonical.bake`).
"""
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from congeal.canonical.bake import density_for_grid
from congeal.canonical.grid import Canonical, grid_points
from congeal.common.errors import InputError

__all__ = ["canonical_from_mesh", "barycentric_lattice", "surface_lattice"]


NEAR_BAND_CELLS = 3.0  # cells within this (voxel-estimated) distance of the surface get their exact distance
LATTICE_SPACING_CELLS = 0.125  # surface samples for the exact distance: this many cells apart at most


def barycentric_lattice(n: int) -> np.ndarray:
    """[n², 3] barycentric weights of the centroids of the n² sub-triangles of an n-subdivided triangle (every point
    strictly inside the face)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = (i + j) <= n - 1
    down = (i + j) <= n - 2
    bary_ij = np.concatenate([
        np.stack([i[up] + 1 / 3, j[up] + 1 / 3], -1),
        np.stack([i[down] + 2 / 3, j[down] + 2 / 3], -1),
    ]) / n  # weights of corners 1 and 2
    return np.concatenate([1.0 - bary_ij.sum(-1, keepdims=True), bary_ij], -1)


def surface_lattice(vertices: np.ndarray, faces: np.ndarray, vertex_normals: np.ndarray,
                    spacing: float) -> Tuple[np.ndarray, np.ndarray]:
    """Points on every face (a barycentric lattice fine enough that neighbours are at most `spacing` apart along the
    face's longest edge) and the smooth normal there: ([P,3], [P,3] unit)."""
    corners, normals = vertices[faces], vertex_normals[faces]  # [F,3,3]
    longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1).max(-1)
    counts = np.clip(np.ceil(longest / spacing), 1, 64).astype(int)
    points, point_normals = [], []
    for n in np.unique(counts):
        weights, these = barycentric_lattice(int(n)), counts == n
        points.append(np.einsum("sk,fkd->fsd", weights, corners[these]).reshape(-1, 3))
        point_normals.append(np.einsum("sk,fkd->fsd", weights, normals[these]).reshape(-1, 3))
    normal = np.concatenate(point_normals)
    return np.concatenate(points), normal / np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-12)


def _mesh_sdf_on_grid(mesh, resolution: int, radius: float) -> np.ndarray:
    """Signed distance (world units) of a watertight-ish mesh at the grid's cell centres: [R,R,R].

    Far from the surface: inside/outside from a voxelisation at half the grid's pitch with the interior filled (no
    ray-tracing back-end needed), the distance from a Euclidean distance transform of that occupancy. A voxelisation
    marks every voxel the surface touches as filled, so that shape is up to a voxel too fat (spot at 64³: its
    silhouette 13 % too large); within `NEAR_BAND_CELLS` of the surface, where the rendered edge is decided, the
    distance is therefore the distance to a dense lattice of surface points, signed by the smooth normal there.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    cell = 2.0 * radius / resolution
    voxels = mesh.voxelized(pitch=cell * 0.5).fill()
    centres = grid_points(resolution, radius).reshape(-1, 3).numpy()
    inside = np.asarray(voxels.is_filled(centres), dtype=bool).reshape(resolution, resolution, resolution)
    outside_dist = ndimage.distance_transform_edt(~inside)
    inside_dist = ndimage.distance_transform_edt(inside)
    # Boundary sits half a cell between an inside and an outside centre.
    sdf = (np.where(inside, -(inside_dist - 0.5), outside_dist - 0.5) * cell).reshape(-1)
    near = np.abs(sdf) <= NEAR_BAND_CELLS * cell
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces)
    points, normals = surface_lattice(vertices, faces, np.asarray(mesh.vertex_normals, dtype=np.float64),
                                      LATTICE_SPACING_CELLS * cell)
    distance, index = cKDTree(points).query(centres[near], workers=-1)
    outward = np.einsum("nd,nd->n", centres[near] - points[index], normals[index]) >= 0
    # the voxels' side is right a voxel away from the surface: there it tells whether the normals point outwards
    # (a mesh wound the other way round has them inwards)
    sure = np.abs(sdf[near]) >= 1.5 * cell
    if sure.any() and np.mean(outward[sure] == (sdf[near][sure] > 0)) < 0.5:
        outward = ~outward
    sdf[near] = np.where(outward, distance, -distance)
    return sdf.reshape(resolution, resolution, resolution).astype(np.float32)


def _mesh_colours(mesh, points: np.ndarray) -> Optional[np.ndarray]:
    """Colour of the nearest vertex (vertex colours) or face centroid (face colours): [N,3] in [0,1], or None."""
    from scipy.spatial import cKDTree

    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        try:
            visual = visual.to_color()
            kind = visual.kind
        except Exception:
            return None
    if kind == "vertex":
        colours, anchors = np.asarray(visual.vertex_colors)[:, :3], np.asarray(mesh.vertices)
    elif kind == "face":
        colours, anchors = np.asarray(visual.face_colors)[:, :3], np.asarray(mesh.triangles_center)
    else:
        return None
    _, nearest = cKDTree(anchors).query(points)
    return colours[nearest].astype(np.float32) / 255.0


def canonical_from_mesh(
    mesh_or_path,
    resolution: int = 64,
    radius: Optional[float] = None,
    colour: Optional[Sequence[float]] = None,
    sharpness: float = 2.0,
) -> Canonical:
    """Bake a triangle mesh (trimesh object or a file trimesh can read) onto a grid.

    The mesh keeps its own coordinates (the canonical frame is the mesh's frame; nothing is recentred).

    Args:
        mesh_or_path: a `trimesh.Trimesh` or a path (.obj, .ply, .glb, ...).
        resolution: cells per side.
        radius: grid half-side; default 1.05 × the largest absolute vertex coordinate.
        colour: rgb in [0,1] used everywhere; default the mesh's vertex/face colours, else mid grey.
        sharpness: as in `canonical_from_sdf`.
    Returns:
        Canonical.
    """
    try:
        import trimesh
    except ImportError:
        raise InputError(None, "baking a mesh needs the 'trimesh' package", "pip install trimesh") from None
    path = None
    mesh = mesh_or_path
    if not isinstance(mesh_or_path, trimesh.Trimesh):
        path = Path(mesh_or_path)
        if not path.exists():
            raise InputError(path, "no such mesh file", "pass an existing .obj/.ply/.glb/.stl file")
        try:
            mesh = trimesh.load(str(path), force="mesh")
        except Exception as error:
            raise InputError(path, f"trimesh cannot read it ({type(error).__name__}: {error})",
                             "pass a triangle mesh file trimesh can load") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(path, "is not a triangle mesh with faces", "pass a triangle mesh")
    vertices = np.asarray(mesh.vertices)
    if not np.isfinite(vertices).all():
        raise InputError(path, "mesh vertices contain NaN or Inf", "repair the mesh")
    if radius is None:
        radius = 1.05 * float(np.abs(vertices).max())
    sdf = torch.from_numpy(_mesh_sdf_on_grid(mesh, resolution, radius))
    density = density_for_grid(sdf, resolution, radius, sharpness)
    centres = grid_points(resolution, radius).reshape(-1, 3)
    if colour is not None:
        rgb = torch.tensor(colour, dtype=torch.float32).clamp(0, 1).expand(centres.shape[0], 3)
    else:
        colours = _mesh_colours(mesh, centres.numpy())
        rgb = torch.full((centres.shape[0], 3), 0.5) if colours is None else torch.from_numpy(colours)
    r = resolution
    return Canonical(density.reshape(r, r, r).contiguous(), rgb.reshape(r, r, r, 3).contiguous(), float(radius))
