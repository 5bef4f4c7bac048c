"""Photo conditions as hard as real photos: light from any side, dark photos, cluttered backgrounds, JPEG, and masks
as a segmenter gives them.

    photo = wild_photo(subject.normals, render, rng)         # render: GridRenderer output of one camera
    photo.rgb            # float32 [H,W,3] in [0,1]: to be saved as JPEG at photo.jpeg_quality
    photo.mask           # bool [H,W]: the object's silhouette, eroded / dilated, with holes and a stray blob
    photo.record         # JSON-ready: lights, ambient, background kind, white balance, JPEG quality, mask edits

The studio conditions (`congeal.synthetic.generator.shaded_photo`) light every photo from the camera's side over a flat
colour with an exact alpha mask; collections from the web have none of that. Here, per photo:
- **light**: 1 or 2 directional lights, each from anywhere on the sphere (also from behind the object, which then
  shows only its ambient light), Lambert on the instance's own normals, ambient 0.05–0.6 (dark photos), and a white
  balance off by up to ±15 % per channel. No cast shadows (the grid renderer traces no shadow rays).
- **background**: a two-colour gradient, smooth colour noise, or clutter: ellipses and boxes, some in the object's own
  colours, some touching the object's silhouette.
- **JPEG** at quality 70–95 (the caller saves it: `photo.jpeg_quality`).
- **mask**: the rendered silhouette (opacity ≥ 0.5) eroded or dilated by up to 2 px, 0–2 small holes, and in a third
  of the photos a stray blob off the object.
Framing (small and large objects, a little truncation at the frame edge) is the `wild43` framing of
`congeal.synthetic.photo_framing`.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["WildPhoto", "wild_photo", "lit", "background", "segmenter_mask"]

AMBIENT_RANGE = (0.05, 0.6)
WHITE_BALANCE = 0.15  # each channel's gain within 1 ± this
JPEG_QUALITY = (70, 95)
MASK_EDGE_PX = 2  # erosion / dilation radius, up to this many pixels
STRAY_BLOB_PROBABILITY = 1.0 / 3.0
BACKGROUNDS = ("gradient", "noise", "clutter")


@dataclass
class WildPhoto:
    """One photo under wild conditions."""

    rgb: np.ndarray
    """float32 [H,W,3] in [0,1]."""
    mask: np.ndarray
    """bool [H,W]: what a segmenter would hand over."""
    jpeg_quality: int
    record: Dict[str, Any]
    """JSON-ready description of the draws (ground truth)."""


def _unit_sphere(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-9)


def lit(rgb: Float[Tensor, "H W 3"], normals: Float[Tensor, "H W 3"], lights: Float[Tensor, "L 3"],
        intensities: Float[Tensor, "L"], ambient: float) -> Float[Tensor, "H W 3"]:
    """Lambert shading under L directional lights (unit directions towards the lights) plus ambient light."""
    lambert = ((normals @ lights.T).clamp_min(0.0) * intensities).sum(-1, keepdim=True).clamp(max=1.0)
    return rgb * (ambient + (1.0 - ambient) * lambert)


def background(kind: str, height: int, width: int, rng: np.random.Generator,
               object_colours: np.ndarray) -> np.ndarray:
    """A background picture [H,W,3] in [0,1] of one kind (`BACKGROUNDS`); clutter borrows the object's colours."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        a, b = rng.uniform(0.0, 1.0, size=3), rng.uniform(0.0, 1.0, size=3)
        return (a * (1.0 - t[..., None]) + b * t[..., None]).astype(np.float32)
    if kind == "noise":
        coarse = torch.tensor(rng.uniform(0.0, 1.0, size=(1, 3, 5, 6)), dtype=torch.float32)
        smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
        fine = rng.normal(0.0, 0.04, size=(height, width, 3))
        return np.clip(smooth.permute(1, 2, 0).numpy() + fine, 0.0, 1.0).astype(np.float32)
    if kind == "clutter":
        picture = np.empty((height, width, 3), dtype=np.float32)
        picture[:] = rng.uniform(0.1, 0.9, size=3)
        for _ in range(int(rng.integers(6, 13))):
            colour = (object_colours[rng.integers(len(object_colours))] if len(object_colours) and rng.uniform() < 0.5
                      else rng.uniform(0.0, 1.0, size=3))
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
            if rng.uniform() < 0.5:
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
            else:
                inside = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
            picture[inside] = colour
        return picture
    raise ValueError(f"unknown background kind {kind!r}; use one of {BACKGROUNDS}")


def _disc(height: int, width: int, centre: Tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius ** 2


def segmenter_mask(silhouette: Bool[Tensor, "H W"], rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The silhouette as a segmenter gives it: eroded or dilated by up to `MASK_EDGE_PX`, 0–2 holes, maybe a blob."""
    height, width = silhouette.shape
    edge = int(rng.integers(-MASK_EDGE_PX, MASK_EDGE_PX + 1))
    mask = silhouette.float()[None, None]
    if edge > 0:  # dilation: a max filter
        mask = F.max_pool2d(mask, 2 * edge + 1, stride=1, padding=edge)
    elif edge < 0:  # erosion: a max filter of the complement
        mask = 1.0 - F.max_pool2d(1.0 - mask, -2 * edge + 1, stride=1, padding=-edge)
    out = mask[0, 0].bool().numpy()
    inside = np.argwhere(out)
    holes = int(rng.integers(0, 3)) if len(inside) else 0
    extent = float(np.sqrt(max(len(inside), 1)))
    for _ in range(holes):
        y, x = inside[rng.integers(len(inside))]
        out &= ~_disc(height, width, (x + 0.5, y + 0.5), rng.uniform(0.02, 0.05) * extent)
    stray = bool(rng.uniform() < STRAY_BLOB_PROBABILITY)
    if stray:
        outside = np.argwhere(~out)
        y, x = outside[rng.integers(len(outside))]
        out |= _disc(height, width, (x + 0.5, y + 0.5), rng.uniform(0.03, 0.08) * extent)
    return out, {"edge_px": edge, "holes": holes, "stray_blob": stray}


def wild_photo(normals_of: Callable[[Tensor], Tensor], render: Dict[str, Tensor],
               rng: np.random.Generator) -> WildPhoto:
    """Light, composite and mask one render under wild conditions (every draw from `rng`).

    Args:
        normals_of: surface points [P,3] -> unit normals [P,3] of the photographed instance.
        render: a batch-of-one render with "rgb", "opacity", "xyz" (premultiplied rgb, as GridRenderer gives it).
        rng: the collection's generator.
    Returns:
        WildPhoto.
    """
    rgb, opacity, xyz = render["rgb"][0].float(), render["opacity"][0].float(), render["xyz"][0].float()
    height, width = opacity.shape[:2]
    count = int(rng.integers(1, 3))
    directions = np.stack([_unit_sphere(rng) for _ in range(count)])
    intensities = rng.uniform(0.6, 1.0, size=count)
    ambient = float(rng.uniform(*AMBIENT_RANGE))
    gains = rng.uniform(1.0 - WHITE_BALANCE, 1.0 + WHITE_BALANCE, size=3)
    normals = torch.zeros_like(xyz)
    covered = opacity[..., 0] > 1e-4
    normals[covered] = normals_of(xyz[covered])
    shaded = lit(rgb, normals, torch.tensor(directions, dtype=torch.float32),
                 torch.tensor(intensities, dtype=torch.float32), ambient)
    silhouette = opacity[..., 0] >= 0.5
    colours = (rgb[silhouette] / opacity[silhouette].clamp_min(1e-4)).clamp(0, 1).numpy()
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    back = torch.tensor(background(kind, height, width, rng, colours[:: max(1, len(colours) // 64)]))
    photo = (shaded + (1.0 - opacity) * back) * torch.tensor(gains, dtype=torch.float32)
    mask, mask_record = segmenter_mask(silhouette, rng)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    record = {"lights": directions.tolist(), "light_intensities": intensities.tolist(), "ambient": ambient,
              "white_balance": gains.tolist(), "background_kind": kind, "jpeg_quality": quality, "mask": mask_record}
    return WildPhoto(photo.clamp(0.0, 1.0).numpy().astype(np.float32), mask, quality, record)
