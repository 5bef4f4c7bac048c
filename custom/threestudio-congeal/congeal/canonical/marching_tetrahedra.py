"""A coloured triangle mesh of the baked canonical: marching tetrahedra on the grid, vectorised numpy.

    vertices, faces = marching_tetrahedra(field, level=0.5, origin=-1.0 + cell / 2, spacing=cell)
    mesh = canonical_mesh(load_canonical("run/canonical.safetensors"), max_resolution=96)
    mesh.vertices, mesh.faces, mesh.colours          # float32 [V,3], int64 [F,3], float32 [V,3] in [0,1]

Why marching tetrahedra (a member of the marching-cubes family) and not a library: every cube of cell centres is
split into the six tetrahedra of its Kuhn triangulation (the paths 000 → 111 along the three axes in every order),
which neighbouring cubes share face for face, so the surface is watertight with no ambiguous cases and no 256-entry
case table; each tetrahedron has 1 (one corner apart) or 2 (two against two) triangles. Everything is array code
(no Python loop over cells), ~2× the triangles of marching cubes, and no dependency: scikit-image's
`marching_cubes` would add a compiled package to the `[viewer]` extra for a preview mesh.

The surface: the level 0.5 of the one-cell opacity 1 − exp(−σ·cell) (`Canonical.occupancy`'s threshold), so it
matches the silhouettes the renderer draws. Triangles wind counter-clockwise seen from outside. Colours: the
canonical's rgb read trilinearly at each vertex.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

__all__ = ["TriangleMesh", "marching_tetrahedra", "canonical_mesh"]

# Kuhn triangulation: for each axis order (a, b, c) the tetrahedron 000, e_a, e_a + e_b, 111
_TETS = np.array([[[0, 0, 0], e1, e1 + e2, [1, 1, 1]]
                  for e1, e2 in ((np.eye(3, dtype=np.int64)[a], np.eye(3, dtype=np.int64)[b])
                                 for a in range(3) for b in range(3) if a != b)], np.int64)  # [6,4,3]


@dataclass
class TriangleMesh:
    """A triangle mesh with per-vertex colours."""

    vertices: Float[np.ndarray, "V 3"]
    faces: Int[np.ndarray, "F 3"]
    colours: Float[np.ndarray, "V 3"]
    """rgb in [0,1]."""


def _two_two_table() -> Int[np.ndarray, "16 4"]:
    """For every case with two corners inside: (inside a, inside b, outside c, outside d); -1 rows elsewhere."""
    table = -np.ones((16, 4), np.int64)
    for code in range(16):
        inside = [i for i in range(4) if code >> i & 1]
        if len(inside) == 2:
            table[code] = inside + [i for i in range(4) if i not in inside]
    return table


_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], np.int64)
_TWO_TWO = _two_two_table()


def marching_tetrahedra(field: Float[np.ndarray, "X Y Z"], level: float, origin: float = 0.0, spacing: float = 1.0
                        ) -> Tuple[Float[np.ndarray, "V 3"], Int[np.ndarray, "F 3"]]:
    """The level set {field = level} as triangles; "inside" is field > level.

    Args:
        field: samples on a regular grid, indexed [ix, iy, iz] along x, y, z.
        level: the iso-value.
        origin: coordinate of sample 0 along every axis; spacing: distance between samples.
    Returns:
        vertices [V,3] (shared between triangles), faces [F,3] wound counter-clockwise seen from outside.
    """
    values = np.asarray(field, np.float64)
    nx, ny, nz = values.shape
    empty = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    if min(nx, ny, nz) < 2:
        return empty
    inside = values > level
    cubes = np.zeros((nx - 1, ny - 1, nz - 1), np.int8)
    for dx in (0, 1):  # count inside corners of every cube (8 shifted views, no per-cell loop)
        for dy in (0, 1):
            for dz in (0, 1):
                cubes += inside[dx:nx - 1 + dx, dy:ny - 1 + dy, dz:nz - 1 + dz]
    base = np.argwhere((cubes > 0) & (cubes < 8))  # [C,3] cubes the surface crosses
    if base.shape[0] == 0:
        return empty
    corners = base[:, None, None, :] + _TETS[None]  # [C,6,4,3]
    corners = corners.reshape(-1, 4, 3)
    flat = (corners[..., 0] * ny + corners[..., 1]) * nz + corners[..., 2]  # [T,4] global sample ids
    bits = inside.reshape(-1)[flat]  # [T,4]
    code = (bits * np.array([1, 2, 4, 8])).sum(axis=1)
    count = bits.sum(axis=1)

    edges, polarity = [], []  # per triangle: 3 edges (pairs of sample ids) and the tet's inside->outside direction
    one = (count == 1) | (count == 3)
    if one.any():
        b = bits[one]
        lone = np.where(count[one] == 1, np.argmax(b, axis=1), np.argmin(b, axis=1))
        others = _OTHERS[lone]  # [n,3]
        ids = flat[one]
        lone_id = ids[np.arange(ids.shape[0]), lone]
        other_ids = np.take_along_axis(ids, others, axis=1)
        edges.append(np.stack([np.broadcast_to(lone_id[:, None], other_ids.shape), other_ids], -1))  # [n,3,2]
        lone_inside = count[one] == 1
        inner = np.where(lone_inside[:, None], lone_id[:, None], other_ids)
        outer = np.where(lone_inside[:, None], other_ids, lone_id[:, None])
        polarity.append((inner, outer))
    two = count == 2
    if two.any():
        ids = flat[two]
        order = np.take_along_axis(ids, _TWO_TWO[code[two]], axis=1)  # a, b inside; c, d outside
        a, b, c, d = order.T
        quad = [(a, c), (a, d), (b, d), (b, c)]
        for tri in ((0, 1, 2), (0, 2, 3)):
            edges.append(np.stack([np.stack(quad[k], -1) for k in tri], 1))
            polarity.append((np.stack([a, b], -1), np.stack([c, d], -1)))
    edge_pairs = np.concatenate(edges)  # [F,3,2]
    lo_id, hi_id = edge_pairs.min(axis=-1), edge_pairs.max(axis=-1)
    keys = lo_id * (nx * ny * nz) + hi_id
    unique, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    faces = inverse.reshape(-1, 3).astype(np.int64)

    def position(ids: np.ndarray) -> np.ndarray:
        ix, rest = np.divmod(ids, ny * nz)
        iy, iz = np.divmod(rest, nz)
        return origin + spacing * np.stack([ix, iy, iz], -1).astype(np.float64)

    va, vb = unique // (nx * ny * nz), unique % (nx * ny * nz)
    fa, fb = values.reshape(-1)[va], values.reshape(-1)[vb]
    t = np.clip((level - fa) / np.where(fb == fa, 1.0, fb - fa), 0.0, 1.0)[:, None]
    vertices = position(va) * (1.0 - t) + position(vb) * t

    # wind every triangle so that its normal points from the tetrahedron's inside corners to its outside ones
    direction = np.concatenate([position(o).reshape(o.shape[0], -1, 3).mean(axis=1)
                                - position(i).reshape(i.shape[0], -1, 3).mean(axis=1) for i, o in polarity])
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * direction).sum(axis=1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    keep = np.linalg.norm(normal, axis=1) > 1e-12 * spacing * spacing  # drop triangles collapsed onto a sample
    return vertices.astype(np.float32), faces[keep]


def canonical_mesh(canonical, max_resolution: int = 96, level: float = 0.5, smoothing: int = 1) -> TriangleMesh:
    """The coloured surface mesh of a `congeal.canonical.grid.Canonical`.

    Args:
        canonical: the baked canonical.
        max_resolution: grids finer than this are average-pooled down first (a preview mesh; keeps it small).
        level: one-cell opacity at the surface.
        smoothing: 3×3×3 box blurs of the opacity before extraction (smooths the staircase of a crisp grid).
    Returns:
        TriangleMesh in canonical (world) coordinates.
    """
    density = canonical.density.float()
    resolution = int(density.shape[0])
    factor = max(1, int(np.ceil(resolution / max(2, max_resolution))))
    cell = canonical.cell_size
    opacity = 1.0 - torch.exp(-density * cell)
    if factor > 1:
        opacity = F.avg_pool3d(opacity[None, None], factor, stride=factor, ceil_mode=True)[0, 0]
    for _ in range(smoothing):  # a sharp (one-cell) transition interpolates to cell mid-points: a staircase
        opacity = F.avg_pool3d(opacity[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    r = int(opacity.shape[0])
    spacing = 2.0 * float(canonical.radius) / r
    vertices, faces = marching_tetrahedra(opacity.numpy(), level, origin=-float(canonical.radius) + 0.5 * spacing,
                                          spacing=spacing)
    rgb = canonical.rgb.float().permute(3, 2, 1, 0)[None]  # [1,3,D=z,H=y,W=x]
    pts = torch.from_numpy(vertices) / float(canonical.radius)
    colours = F.grid_sample(rgb, pts.view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border",
                            align_corners=False)[0, :, :, 0, 0].T
    return TriangleMesh(vertices, faces, colours.clamp(0, 1).numpy().astype(np.float32))
