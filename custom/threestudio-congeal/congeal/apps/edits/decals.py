"""Pose-aware decals: a sticker placed on one photo, carried onto every photo through the canonical surface.

    run = RegisteredRun("out/run")
    decal = load_decal("sticker.png")                                   # RGBA (alpha optional)
    placement = place_decal(run, decal, "img_000", (120.0, 80.0), scale=0.25)
    edited, coverage = composite_decal(run, decal, placement, "img_003")   # [H,W,3] original resolution, [H,W]

Placement: the decal is centred at `at` (original pixels of `photo`, on the object) with its longer side
`scale` × the longer side of the object's bounding box in that photo. Lifting: the decal covers the canonical
surface points that `photo`'s map gives under it. Compositing into photo t pulls, for each object pixel q of t
whose canonical point X_t(q) is near the decal's canonical points, q's corresponding pixel p' in the source photo
(`Correspondence.transfer(t, photo)`) and reads the decal there — so the decal is warped by both photos' maps.
q gets decal only where the source photo's map at p' is q's own surface point (‖X_s(p') − X_t(q)‖ ≤ τ, τ = 5% of
the object's canonical diagonal): parts that hide the decal's surface in t, and the far side, stay untouched.
Only object pixels (t's map) change; alpha blending is premultiplied (clean anti-aliased borders).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from jaxtyping import Float

from congeal.run.registered_run import RegisteredRun
from congeal.apps.edits.image_sampling import sample_image
from congeal.run.surface import same_surface
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["Decal", "DecalPlacement", "load_decal", "place_decal", "composite_decal"]


@dataclass
class Decal:
    """A decal image: straight colour and coverage."""

    rgb: Float[np.ndarray, "h w 3"]
    alpha: Float[np.ndarray, "h w"]

    @property
    def aspect(self) -> float:
        """Width over height."""
        return self.rgb.shape[1] / self.rgb.shape[0]


@dataclass
class DecalPlacement:
    """Where a decal sits on its source photo and on the canonical surface."""

    photo: str
    """The photo the decal was placed on."""
    centre: Tuple[float, float]
    """(x, y) original pixels of `photo`."""
    size: Tuple[float, float]
    """(width, height) of the decal in `photo`'s pixels."""
    canonical_centre: Tuple[float, float, float]
    """Centre of the canonical points the decal covers."""
    canonical_radius: float
    """Largest distance from `canonical_centre` to a covered canonical point."""
    tolerance: float
    """Same-surface tolerance τ (canonical units)."""


def load_decal(path: PathLike) -> Decal:
    """Read a decal image (PNG with alpha, or any image: fully opaque). InputError when it is not an image."""
    from pathlib import Path

    from congeal.io.decode import decode_image

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such decal file", "pass an image file (PNG with transparency works best)")
    decoded = decode_image(path)
    alpha = np.ones(decoded.size, np.float32) if decoded.alpha is None else decoded.alpha.astype(np.float32)
    if float(alpha.max()) <= 0.0:
        raise InputError(path, "is fully transparent", "pass a decal with visible pixels")
    return Decal(decoded.rgb.astype(np.float32), alpha)


def _decal_uv(placement: DecalPlacement, points: Float[np.ndarray, "P 2"]) -> Tuple[np.ndarray, np.ndarray]:
    cx, cy = placement.centre
    w, h = placement.size
    return (points[:, 0] - cx) / w + 0.5, (points[:, 1] - cy) / h + 0.5


def _footprint(placement: DecalPlacement, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the source-photo pixels the decal rectangle touches."""
    cx, cy = placement.centre
    w, h = placement.size
    c0, c1 = max(0, int(np.floor(cx - w / 2))), min(width, int(np.ceil(cx + w / 2)))
    r0, r1 = max(0, int(np.floor(cy - h / 2))), min(height, int(np.ceil(cy + h / 2)))
    rows, cols = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    return rows.reshape(-1), cols.reshape(-1)


def place_decal(run: RegisteredRun, decal: Decal, photo: str, at: Tuple[float, float], scale: float = 0.25,
                surface_fraction: float = 0.05) -> DecalPlacement:
    """Put the decal on `photo` at `at` and lift it to the canonical surface.

    Raises:
        InputError: unknown photo, `at` outside the photo or off the object, a scale that is not positive.
    """
    run.require(photo)
    omap = run.object_map(photo)
    x, y = (float(v) for v in at)
    if not (np.isfinite(x) and np.isfinite(y) and 0.0 <= x <= omap.width and 0.0 <= y <= omap.height):
        raise InputError(None, f"--at {x:g},{y:g} lies outside photo {photo!r} ({omap.width}x{omap.height} pixels)",
                         "give original-pixel coordinates inside the photo")
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(None, f"--scale {scale} is not a positive number", "use e.g. --scale 0.25")
    size_px = omap.object_size()
    snap = 0.03 * size_px
    _, on_object = omap.lift(np.array([[x, y]], np.float32), snap_px=snap)
    if not bool(on_object[0]):
        raise InputError(None, f"--at {x:g},{y:g} is not on the object in photo {photo!r}",
                         "place the decal on a pixel of the object (see the run's pictures/nocs/ for its extent)")
    longer = scale * size_px
    size = (longer, longer / decal.aspect) if decal.aspect >= 1 else (longer * decal.aspect, longer)
    tolerance = run.surface_tolerance(surface_fraction)
    placement = DecalPlacement(photo, (x, y), (float(size[0]), float(size[1])), (0.0, 0.0, 0.0), 0.0, tolerance)
    rows, cols = _footprint(placement, omap.height, omap.width)
    centres = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float64)
    u, v = _decal_uv(placement, centres)
    cover = sample_image(decal.alpha[..., None], u, v)[:, 0] > 0.01
    xyz, ok = omap.lift_pixels(rows, cols)
    points = xyz[ok & cover].astype(np.float64)
    if points.shape[0] == 0:  # a decal smaller than a pixel: the point under its centre
        points = omap.lift(np.array([[x, y]], np.float32), snap_px=snap)[0].astype(np.float64)
    centre = points.mean(axis=0)
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    placement.canonical_centre = (float(centre[0]), float(centre[1]), float(centre[2]))
    placement.canonical_radius = radius
    return placement


def composite_decal(run: RegisteredRun, decal: Decal, placement: DecalPlacement, target: str,
                    photo: Optional[np.ndarray] = None
                    ) -> Tuple[Float[np.ndarray, "H W 3"], Float[np.ndarray, "H W"]]:
    """The target photo with the decal composited where its surface is visible.

    Args:
        run, decal, placement: see `place_decal`.
        target: any registered photo (the source photo included).
        photo: the target's straight rgb [H,W,3] (default: read from the run).
    Returns:
        (edited rgb [H,W,3] at the photo's original resolution, decal coverage [H,W] in [0,1]).
    """
    tmap = run.object_map(target)
    base = run.photo(target).rgb if photo is None else np.asarray(photo, np.float32)
    coverage = np.zeros((tmap.height, tmap.width), np.float32)
    premultiplied = np.concatenate([decal.rgb * decal.alpha[..., None], decal.alpha[..., None]], -1)
    if target == placement.photo:
        rows, cols = _footprint(placement, tmap.height, tmap.width)
        keep = tmap.valid[rows, cols]
        rows, cols = rows[keep], cols[keep]
        source_xy = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float64)
        ok = np.ones(rows.shape[0], bool)
    else:
        rows, cols = np.nonzero(tmap.valid)
        near = np.linalg.norm(tmap.xyz[rows, cols].astype(np.float64) - np.asarray(placement.canonical_centre),
                              axis=1) <= placement.canonical_radius + placement.tolerance
        rows, cols = rows[near], cols[near]
        centres = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float32)
        source_xy, ok = run.transfer(target, placement.photo, centres)
        smap = run.object_map(placement.photo)
        xyz_s, found = smap.lift(np.where(ok[:, None], source_xy, 0.0).astype(np.float32), snap_px=1.5)
        ok = ok & found & same_surface(xyz_s, tmap.xyz[rows, cols], placement.tolerance)
        source_xy = source_xy.astype(np.float64)
    edited = base.copy()
    if rows.size:
        u, v = _decal_uv(placement, np.where(ok[:, None], source_xy, -1e9))
        sample = sample_image(premultiplied, u, v)
        alpha = np.where(ok, np.clip(sample[:, 3], 0.0, 1.0), 0.0).astype(np.float32)
        colour = np.where(ok[:, None], sample[:, :3], 0.0)
        edited[rows, cols] = base[rows, cols] * (1.0 - alpha[:, None]) + colour
        coverage[rows, cols] = alpha
    return np.clip(edited, 0.0, 1.0).astype(np.float32), coverage
