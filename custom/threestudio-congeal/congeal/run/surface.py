"""Canonical-surface look-ups on a photo's coordinate map (`maps/<name>.npz`).

    omap = ObjectMap(xyz, valid)                        # xyz float32 [H,W,3] (NaN outside), valid bool [H,W]
    xyz, ok = omap.lift(np.array([[120.5, 80.5]]), snap_px=4.0)   # original pixels -> canonical points
    same = same_surface(xyz_a, xyz_b, tolerance)        # bool per point: the two points are one surface point

A pixel (row i, col j) covers [j, j+1) × [i, i+1); a point (x, y) reads the map of the pixel it falls in (x = W and
y = H: the last column and row). Points a little off the object (labels on the silhouette) snap to the nearest object
pixel within `snap_px`.

The same-surface test is what hides edits and labels where a photo sees another part of the object: a target pixel
shows canonical point X_t; the source photo's point X_s it corresponds to is the same surface point only when
‖X_t − X_s‖ ≤ tolerance (default 5% of the object's canonical bounding-box diagonal, the reverse map's own 3D
threshold).
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Bool, Float, Int

__all__ = ["ObjectMap", "same_surface", "canonical_bounds", "DEFAULT_SURFACE_FRACTION"]

DEFAULT_SURFACE_FRACTION = 0.05
"""Same-surface tolerance as a fraction of the object's canonical bounding-box diagonal."""


@dataclass
class ObjectMap:
    """One photo's coordinate map on its original pixel grid."""

    xyz: Float[np.ndarray, "H W 3"]
    """Canonical coordinates per pixel, NaN outside the object."""
    valid: Bool[np.ndarray, "H W"]
    """Pixels with a canonical coordinate."""
    _pixels: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        return int(self.valid.shape[0])

    @property
    def width(self) -> int:
        return int(self.valid.shape[1])

    def bbox(self) -> Optional[Tuple[float, float, float, float]]:
        """(x0, y0, x1, y1) of the object's pixels in original pixel coordinates, None when there are none."""
        rows = np.flatnonzero(self.valid.any(axis=1))
        cols = np.flatnonzero(self.valid.any(axis=0))
        if rows.size == 0:
            return None
        return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)

    def object_size(self) -> float:
        """Longer side of the object's bounding box in pixels (the PCK reference length); 0 when empty."""
        box = self.bbox()
        return 0.0 if box is None else max(box[2] - box[0], box[3] - box[1])

    def pixel_index(self, points: Float[np.ndarray, "P 2"]) -> Tuple[Int[np.ndarray, "P"], Int[np.ndarray, "P"],
                                                                     Bool[np.ndarray, "P"]]:
        """(row, col, inside) of the pixel each (x, y) falls in; rows/cols are clamped where `inside` is False."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        finite = np.isfinite(pts).all(axis=1)
        safe = np.where(finite[:, None], pts, -1.0)
        col = np.floor(safe[:, 0]).astype(np.int64)
        row = np.floor(safe[:, 1]).astype(np.int64)
        # the far edges x = W, y = H belong to the last column / row
        x, y = safe[:, 0], safe[:, 1]
        inside = finite & (x >= 0) & (x <= self.width) & (y >= 0) & (y <= self.height)
        return np.clip(row, 0, self.height - 1), np.clip(col, 0, self.width - 1), inside

    def _valid_pixels(self) -> Int[np.ndarray, "N 2"]:
        """(row, col) of every valid pixel (cached)."""
        if self._pixels is None:
            self._pixels = np.argwhere(self.valid)
        return self._pixels

    def nearest_valid(self, rows: Int[np.ndarray, "P"], cols: Int[np.ndarray, "P"], radius: float
                      ) -> Tuple[Int[np.ndarray, "P"], Int[np.ndarray, "P"], Bool[np.ndarray, "P"]]:
        """The nearest valid pixel within `radius` pixels (centre to centre) of each pixel: (rows, cols, found).

        Small radii search the neighbourhood offsets (every query at once); large ones — labels snapping onto the
        silhouette, a handful of points — compare with every valid pixel, in chunks.
        """
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        found = self.valid[rows, cols].copy()
        out_r, out_c = rows.copy(), cols.copy()
        miss = np.flatnonzero(~found)
        if miss.size == 0 or radius < 1.0:
            return out_r, out_c, found
        reach = int(np.floor(radius))
        best = np.full(miss.size, np.inf)
        if reach <= 4:
            for dr in range(-reach, reach + 1):  # at most 81 offsets, each a vectorised look-up
                for dc in range(-reach, reach + 1):
                    d2 = float(dr * dr + dc * dc)
                    if d2 > radius * radius:
                        continue
                    r, c = rows[miss] + dr, cols[miss] + dc
                    inside = (r >= 0) & (r < self.height) & (c >= 0) & (c < self.width)
                    hit = inside & self.valid[np.clip(r, 0, self.height - 1), np.clip(c, 0, self.width - 1)]
                    better = hit & (d2 < best)
                    best[better] = d2
                    out_r[miss[better]], out_c[miss[better]] = r[better], c[better]
        elif self.valid.any():
            pixels = self._valid_pixels().astype(np.float64)
            step = max(1, (1 << 22) // max(1, pixels.shape[0]))
            for i in range(0, miss.size, step):  # chunks bound the distance matrix
                part = miss[i:i + step]
                q = np.stack([rows[part], cols[part]], -1).astype(np.float64)
                d2 = ((q[:, None, :] - pixels[None, :, :]) ** 2).sum(-1)
                j = np.argmin(d2, axis=1)
                best[i:i + step] = d2[np.arange(len(part)), j]
                out_r[part], out_c[part] = pixels[j, 0].astype(np.int64), pixels[j, 1].astype(np.int64)
        found[miss] = best <= radius * radius
        return out_r, out_c, found

    def lift(self, points: Float[np.ndarray, "P 2"], snap_px: float = 0.0
             ) -> Tuple[Float[np.ndarray, "P 3"], Bool[np.ndarray, "P"]]:
        """Canonical point under each (x, y); off-object points take the nearest object pixel within `snap_px`.

        Returns:
            xyz (NaN where not found), found.
        """
        row, col, inside = self.pixel_index(points)
        r, c, near = self.nearest_valid(row, col, snap_px)
        near = near & inside
        xyz = np.where(near[:, None], self.xyz[r, c], np.nan).astype(np.float32)
        return xyz, near & np.isfinite(xyz).all(axis=1)

    def lift_pixels(self, rows: Int[np.ndarray, "P"], cols: Int[np.ndarray, "P"]
                    ) -> Tuple[Float[np.ndarray, "P 3"], Bool[np.ndarray, "P"]]:
        """Canonical point at integer pixels (no snapping)."""
        ok = self.valid[rows, cols]
        xyz = np.where(ok[:, None], self.xyz[rows, cols], np.nan).astype(np.float32)
        return xyz, ok


def same_surface(a: Float[np.ndarray, "P 3"], b: Float[np.ndarray, "P 3"], tolerance: float) -> Bool[np.ndarray, "P"]:
    """True where two canonical points are within `tolerance` of each other (False where either is NaN)."""
    dist = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return np.isfinite(dist) & (dist <= tolerance)


def canonical_bounds(maps: Sequence[ObjectMap]) -> Tuple[Float[np.ndarray, "3"], Float[np.ndarray, "3"]]:
    """(lo, hi): the 1st and 99th percentiles of every mapped canonical point (robust to a few stray pixels)."""
    points = [m.xyz[m.valid] for m in maps if m.valid.any()]
    if not points:
        return np.zeros(3), np.ones(3)
    allp = np.concatenate(points).astype(np.float64)
    return np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)
