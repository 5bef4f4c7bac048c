"""Baking a triangle mesh onto the canonical grid (trimesh; voxelised occupancy -> signed distance -> density).

    canonical = canonical_from_mesh("chair.obj", resolution=64)          # the mesh's own frame, colours if any
    canonical = canonical_from_mesh(mesh, resolution=32, colour=(0.2, 0.4, 0.6))   # a trimesh.Trimesh, one colour

The signed distance comes from a voxelisation at the grid's own pitch with the interior filled (no ray-tracing
back-end needed) and a Euclidean distance transform; the density from it as for SDFs (`congeal.canonical.bake`).
"""
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from congeal.canonical.bake import density_for_grid
from congeal.canonical.grid import Canonical, grid_points
from congeal.common.errors import InputError

__all__ = ["canonical_from_mesh"]


def _mesh_sdf_on_grid(mesh, resolution: int, radius: float) -> np.ndarray:
    """Approximate signed distance (world units) of a watertight-ish mesh at the grid's cell centres: [R,R,R].

    Inside/outside comes from a voxelisation at the grid's own pitch with the interior filled (no ray-tracing
    back-end needed); the distance from a Euclidean distance transform of that occupancy, in cell units.
    """
    from scipy import ndimage

    cell = 2.0 * radius / resolution
    voxels = mesh.voxelized(pitch=cell * 0.5).fill()
    centres = grid_points(resolution, radius).reshape(-1, 3).numpy()
    inside = np.asarray(voxels.is_filled(centres), dtype=bool).reshape(resolution, resolution, resolution)
    outside_dist = ndimage.distance_transform_edt(~inside)
    inside_dist = ndimage.distance_transform_edt(inside)
    # Boundary sits half a cell between an inside and an outside centre.
    sdf = np.where(inside, -(inside_dist - 0.5), outside_dist - 0.5) * cell
    return sdf.astype(np.float32)


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
