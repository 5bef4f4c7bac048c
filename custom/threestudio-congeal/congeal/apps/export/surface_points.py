"""Points on the canonical surface, coloured, with the photos that see each: a sparse model's points and tracks.

    points = surface_points(run, photos, masks, n_points=4000)
    points.xyz, points.rgb, points.error                 # [P,3] world (canonical) xyz, [P,3] in [0,1], [P] px
    points.obs_point, points.obs_photo, points.obs_xy    # [O], [O], [O,2]: point p is seen by photo j at (x, y)

The points are sampled uniformly by area on the canonical's triangle mesh (`canonical_mesh`). Photo j sees point P
at pixel (x, y) when the photo's coordinate map (`maps/<name>.npz`, inside the photo's mask) holds a canonical
point within the run's surface tolerance of P — the nearest such pixel is the observation, so visibility and
occlusion come from the maps — and the photo's camera projects P in front of it to within `max_error` (a fraction
of the photo's diagonal) of that pixel, the way an SfM model keeps only observations its cameras explain. A point's
colour is the mean of the photo pixels that see it (as COLMAP colours its points); its error the mean distance in
pixels between the observations and the projections. Points no photo sees are dropped (`min_track`).
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float, Int

from congeal.apps.export.photo_files import ExportPhoto
from congeal.canonical.marching_tetrahedra import TriangleMesh, canonical_mesh
from congeal.run.registered_run import RegisteredRun

__all__ = ["SurfacePoints", "surface_points", "sample_mesh", "project"]

_MAX_PIXELS_PER_PHOTO = 40000  # map pixels a photo's look-up searches (a regular subsample beyond this)
_CHUNK = 512


@dataclass
class SurfacePoints:
    """Coloured surface points and their observations."""

    xyz: Float[np.ndarray, "P 3"]
    rgb: Float[np.ndarray, "P 3"]
    """Colour in [0,1]: the mean of the photo pixels that see the point."""
    error: Float[np.ndarray, " P"]
    """Mean reprojection error of the point's observations, in pixels."""
    obs_point: Int[np.ndarray, " O"]
    """Index of the observed point (into xyz), sorted."""
    obs_photo: Int[np.ndarray, " O"]
    """Index of the observing photo (into the photos the points were made for)."""
    obs_xy: Float[np.ndarray, "O 2"]
    """Observation in the photo's original pixels (continuous: pixel (i, j)'s centre is (j + 0.5, i + 0.5))."""

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def sample_mesh(mesh: TriangleMesh, n_points: int, seed: int = 0
                ) -> Tuple[Float[np.ndarray, "P 3"], Float[np.ndarray, "P 3"]]:
    """`n_points` points uniform by area on the mesh, with their barycentrically interpolated vertex colours."""
    faces = mesh.faces
    if faces.shape[0] == 0 or n_points <= 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    tri = mesh.vertices[faces].astype(np.float64)  # [F,3,3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(faces.shape[0], size=n_points, p=area / area.sum())
    u, v = rng.random(n_points), rng.random(n_points)
    flip = u + v > 1.0  # fold the unit square onto the triangle: uniform barycentrics
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    weights = np.stack([1.0 - u - v, u, v], -1)[:, :, None]  # [P,3,1]
    xyz = (tri[face] * weights).sum(1)
    rgb = (mesh.colours[faces[face]].astype(np.float64) * weights).sum(1)
    return xyz.astype(np.float32), np.clip(rgb, 0.0, 1.0).astype(np.float32)


def project(photo: ExportPhoto, xyz: Float[np.ndarray, "P 3"]
            ) -> Tuple[Float[np.ndarray, "P 2"], Float[np.ndarray, " P"]]:
    """Original pixels (x, y) of world points in the photo, and their depth along the viewing axis (> 0 in front)."""
    cam = photo.camera
    cv = cam.c2w_cv
    local = (np.asarray(xyz, np.float64) - cv[:3, 3]) @ cv[:3, :3]  # R^T (X - t), OpenCV axes: +z looks ahead
    depth = local[:, 2]
    safe = np.where(np.abs(depth) < 1e-12, 1e-12, depth)
    xy = np.stack([cam.fl_x * local[:, 0] / safe + cam.cx, cam.fl_y * local[:, 1] / safe + cam.cy], -1)
    return xy, depth


def _nearest(queries: Float[np.ndarray, "P 3"], keys: Float[np.ndarray, "M 3"]
             ) -> Tuple[Int[np.ndarray, " P"], Float[np.ndarray, " P"]]:
    """Index of and distance to each query's nearest key (brute force in chunks; M is at most a few 10k)."""
    keys_t = torch.from_numpy(np.ascontiguousarray(keys, np.float32))
    index = np.zeros(queries.shape[0], np.int64)
    dist = np.full(queries.shape[0], np.inf, np.float32)
    for start in range(0, queries.shape[0], _CHUNK):
        q = torch.from_numpy(np.ascontiguousarray(queries[start:start + _CHUNK], np.float32))
        d = torch.cdist(q, keys_t)
        best, arg = d.min(dim=1)
        index[start:start + _CHUNK] = arg.numpy()
        dist[start:start + _CHUNK] = best.numpy()
    return index, dist


def surface_points(run: RegisteredRun, photos: Sequence[ExportPhoto], masks: Sequence[np.ndarray],
                   n_points: int = 4000, max_error: float = 0.02, min_track: int = 1, mesh_resolution: int = 128,
                   seed: int = 0) -> SurfacePoints:
    """Sample the canonical surface and find every photo that sees each point.

    Args:
        run: the finished run (canonical, maps, surface tolerance).
        photos: the photos to observe from (failed ones already left out).
        masks: each photo's object mask on its original grid.
        n_points: points sampled on the surface before the ones nobody sees are dropped.
        max_error: the largest distance between an observation and its projection, as a fraction of the photo's
            diagonal.
        min_track: the fewest photos that must see a point for it to be kept.
        mesh_resolution: cells per side of the grid the surface mesh is extracted from.
        seed: sampling seed.
    Returns:
        the kept points and their observations.
    """
    from congeal.io.decode import decode_image

    mesh = canonical_mesh(run.canonical(), max_resolution=mesh_resolution)
    xyz, _ = sample_mesh(mesh, n_points, seed)  # coloured by the photos below, as COLMAP colours its points
    tolerance = run.surface_tolerance()
    point_ids: List[np.ndarray] = []
    photo_ids: List[np.ndarray] = []
    obs_xy: List[np.ndarray] = []
    colours: List[np.ndarray] = []
    errors: List[np.ndarray] = []
    for j, (photo, mask) in enumerate(zip(photos, masks)):
        omap = run.object_map(photo.name)
        usable = omap.valid & np.asarray(mask, bool)
        rows, cols = np.nonzero(usable)
        if rows.size == 0:
            continue
        stride = max(1, int(np.ceil(rows.size / _MAX_PIXELS_PER_PHOTO)))
        rows, cols = rows[::stride], cols[::stride]
        nearest, dist = _nearest(xyz, omap.xyz[rows, cols])
        seen_xy = np.stack([cols[nearest] + 0.5, rows[nearest] + 0.5], -1).astype(np.float64)
        projected, depth = project(photo, xyz)
        error = np.linalg.norm(projected - seen_xy, axis=1)
        limit = max_error * float(np.hypot(photo.camera.width, photo.camera.height))
        keep = (dist <= tolerance) & (depth > 0) & (error <= limit)
        if not keep.any():
            continue
        rgb = decode_image(photo.path).rgb
        ids = np.flatnonzero(keep)
        point_ids.append(ids)
        photo_ids.append(np.full(ids.size, j, np.int64))
        obs_xy.append(seen_xy[ids])
        colours.append(rgb[rows[nearest[ids]], cols[nearest[ids]]].astype(np.float64))
        errors.append(error[ids])
    if not point_ids:
        empty = np.zeros((0, 3), np.float32)
        return SurfacePoints(empty, empty.copy(), np.zeros(0, np.float32), np.zeros(0, np.int64),
                             np.zeros(0, np.int64), np.zeros((0, 2), np.float32))
    obs_point = np.concatenate(point_ids)
    obs_photo = np.concatenate(photo_ids)
    xy_all = np.concatenate(obs_xy)
    rgb_all = np.concatenate(colours)
    err_all = np.concatenate(errors)
    count = np.bincount(obs_point, minlength=xyz.shape[0])
    kept = np.flatnonzero(count >= max(1, min_track))
    new_id = -np.ones(xyz.shape[0], np.int64)
    new_id[kept] = np.arange(kept.size)
    take = new_id[obs_point] >= 0
    order = np.lexsort((obs_photo[take], new_id[obs_point][take]))  # by point, then photo
    obs_point = new_id[obs_point][take][order]
    obs_photo, xy_all = obs_photo[take][order], xy_all[take][order]
    rgb_all, err_all = rgb_all[take][order], err_all[take][order]
    n = kept.size
    counts = np.maximum(np.bincount(obs_point, minlength=n), 1)[:, None]
    rgb = np.zeros((n, 3))
    np.add.at(rgb, obs_point, rgb_all)
    error = np.zeros(n)
    np.add.at(error, obs_point, err_all)
    return SurfacePoints(xyz[kept], (rgb / counts).astype(np.float32), (error / counts[:, 0]).astype(np.float32),
                         obs_point.astype(np.int64), obs_photo.astype(np.int64), xy_all.astype(np.float32))
