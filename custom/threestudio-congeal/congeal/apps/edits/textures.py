"""Canonical-space textures painted onto every photo: the same surface point gets the same texel in every photo.

    run = RegisteredRun("out/run")
    texture = load_texture("pattern.png")            # or checker_texture()
    edited, coverage = texture_photo(run, "img_003", texture)          # [H,W,3] original resolution, [H,W]
    edited_all = texture_edit(run, texture)                            # {photo: (rgb, coverage)}

Triplanar mapping: the texture tiles three planes through the canonical frame; a surface point X with normal n
reads the tile at (X_y, X_z)/period, (X_x, X_z)/period and (X_x, X_y)/period, blended with weights |n_i|^4
(normalised), so the pattern sits on the surface without a UV parameterisation and never stretches by more than
the blend. Normals are −∇σ of the run's baked canonical (canonical.safetensors), read trilinearly at X. The
period defaults to a third of the object's canonical extent. Every object pixel of a photo (its map) is painted:
out = (1 − s)·photo + s·texel·shade, with s = `strength` and shade = the photo's luminance over its median on
the object (clamped to [0.35, 1.6]), so the photo's lighting stays on the painted surface.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float

from congeal.run.registered_run import RegisteredRun
from congeal.apps.edits.image_sampling import sample_image
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["load_texture", "checker_texture", "canonical_normals", "triplanar", "texture_photo", "texture_edit"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def load_texture(path: PathLike) -> Float[np.ndarray, "h w 3"]:
    """A texture image as straight rgb in [0,1] (alpha composited over white). InputError if not an image."""
    from pathlib import Path

    from congeal.io.decode import decode_image

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such texture file", "pass an image file (a tileable pattern works best)")
    decoded = decode_image(path)
    if decoded.alpha is None:
        return decoded.rgb.astype(np.float32)
    a = decoded.alpha[..., None]
    return (decoded.rgb * a + (1.0 - a)).astype(np.float32)


def checker_texture(size: int = 64, colours: Tuple[Tuple[float, float, float], ...] = ((0.1, 0.3, 0.9),
                                                                                     (1.0, 0.9, 0.2))
                    ) -> Float[np.ndarray, "{size} {size} 3"]:
    """One tile of a two-colour checker (2×2 squares): the demo's edit."""
    half = size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    parity = ((xx >= half) ^ (yy >= half))[..., None]
    return np.where(parity, np.asarray(colours[0], np.float32), np.asarray(colours[1], np.float32)).astype(np.float32)


def canonical_normals(canonical, points: Float[np.ndarray, "P 3"]) -> Float[np.ndarray, "P 3"]:
    """Outward unit normals −∇σ/‖∇σ‖ of a `congeal.canonical.grid.Canonical` at canonical points (trilinear)."""
    density = canonical.density.float()
    # a one-cell box blur makes the gradient of a sharp (VolSDF) density smooth enough to shade with
    blurred = F.avg_pool3d(density[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    gx, gy, gz = torch.gradient(blurred, spacing=canonical.cell_size)
    grad = torch.stack([gx, gy, gz])  # [3, ix, iy, iz]
    volume = grad.permute(0, 3, 2, 1)[None]  # grid_sample wants [N,C,D,H,W] with D=z, H=y, W=x
    pts = torch.as_tensor(np.asarray(points, np.float32)) / float(canonical.radius)
    sampled = F.grid_sample(volume, pts.view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border",
                            align_corners=False)[0, :, :, 0, 0].T  # [P,3]
    normal = -sampled
    norm = normal.norm(dim=-1, keepdim=True)
    fallback = pts / pts.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # flat density: point away from the centre
    normal = torch.where(norm > 1e-8, normal / norm.clamp_min(1e-8), fallback)
    return normal.numpy().astype(np.float32)


def triplanar(texture: Float[np.ndarray, "h w 3"], points: Float[np.ndarray, "P 3"],
              normals: Float[np.ndarray, "P 3"], period: float, sharpness: float = 4.0) -> Float[np.ndarray, "P 3"]:
    """Triplanar texel of every surface point (texture repeats every `period` canonical units)."""
    weights = np.abs(normals.astype(np.float64)) ** sharpness
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    p = points.astype(np.float64) / period
    out = np.zeros((points.shape[0], 3), np.float64)
    # projection along x reads (y, z); along y reads (x, z); along z reads (x, y); v grows downwards in the image
    for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
        out += weights[:, axis:axis + 1] * sample_image(texture, p[:, a], -p[:, b], wrap=True)
    return out.astype(np.float32)


def texture_photo(run: RegisteredRun, name: str, texture: Float[np.ndarray, "h w 3"], period: Optional[float] = None,
                  strength: float = 0.85, canonical=None, photo: Optional[np.ndarray] = None
                  ) -> Tuple[Float[np.ndarray, "H W 3"], Float[np.ndarray, "H W"]]:
    """One photo with the canonical-space texture painted on its object pixels.

    Args:
        run: the run; name: a registered photo.
        texture: the texture tile.
        period: canonical units per texture repeat (default: a third of the object's canonical extent).
        strength: 0 = photo unchanged, 1 = texture only (shaded by the photo's light).
        canonical: the run's Canonical (default: read it).
        photo: the photo's straight rgb (default: read it).
    Returns:
        (edited rgb [H,W,3], coverage [H,W]).
    """
    if not 0.0 <= strength <= 1.0:
        raise InputError(None, f"strength {strength} is outside [0, 1]", "use e.g. --strength 0.85")
    canonical = canonical if canonical is not None else run.canonical()
    omap = run.object_map(name)
    base = run.photo(name).rgb if photo is None else np.asarray(photo, np.float32)
    if period is None:
        lo, hi = run.bounds()
        period = float(np.max(hi - lo)) / 3.0
    if not period > 0:
        raise InputError(None, f"texture period {period} is not positive", "use e.g. --texture-scale 0.3")
    rows, cols = np.nonzero(omap.valid)
    coverage = np.zeros(omap.valid.shape, np.float32)
    edited = base.copy()
    if rows.size:
        xyz = omap.xyz[rows, cols]
        texel = triplanar(texture, xyz, canonical_normals(canonical, xyz), period)
        luma = base[rows, cols] @ _LUMA
        shade = np.clip(luma / max(float(np.median(luma)), 1e-3), 0.35, 1.6)[:, None]
        edited[rows, cols] = (1.0 - strength) * base[rows, cols] + strength * np.clip(texel * shade, 0.0, 1.0)
        coverage[rows, cols] = strength
    return edited.astype(np.float32), coverage


def texture_edit(run: RegisteredRun, texture: Float[np.ndarray, "h w 3"], period: Optional[float] = None,
                 strength: float = 0.85) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Every registered photo with the texture painted on (see `texture_photo`)."""
    canonical = run.canonical()
    return {name: texture_photo(run, name, texture, period, strength, canonical) for name in run.names}
