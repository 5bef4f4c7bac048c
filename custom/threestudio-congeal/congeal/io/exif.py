"""A photo's focal length from its EXIF data, in pixels of the upright photo.

    known = exif_focal("photos/cat_01.jpg")        # KnownFocal(focal_px=1520.4, source="exif-35mm") or None
    fovy = known.fovy(height)                       # radians: 2 atan(H / 2f)

Two readings, in this order (the EXIF 2.3 tags):
- `FocalLengthIn35mmFilm` (mm on a 36x24 mm frame): f_px = f35 * diagonal_px / 43.27 (the 35 mm frame's diagonal),
  which holds for any aspect ratio and crop that keeps the sensor's field of view;
- `FocalLength` (mm) with the sensor's resolution `FocalPlaneXResolution` (pixels per `FocalPlaneResolutionUnit`):
  f_px = FocalLength * pixels_per_mm, rescaled when the file is smaller than the sensor (`PixelXDimension`).
Photos without these tags (screenshots, renders, most web images) return None: their focal length is estimated.
"""
import math
from dataclasses import dataclass
from typing import Any, Optional

from congeal.common.paths import PathLike

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
_EXIF_IFD = 0x8769
_FOCAL_LENGTH, _FOCAL_35MM = 0x920A, 0xA405
_PLANE_X_RESOLUTION, _PLANE_UNIT = 0xA20E, 0xA210
_PIXEL_X_DIMENSION = 0xA002
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, micrometre


@dataclass(frozen=True)
class KnownFocal:
    """A focal length that is known rather than estimated."""

    focal_px: float
    """Focal length in pixels of the upright photo."""
    source: str
    """Where it came from: "exif-35mm", "exif-focal-plane" or "given"."""

    def fovy(self, height: int) -> float:
        """The vertical field of view (radians) of a photo `height` pixels tall."""
        return 2.0 * math.atan(0.5 * height / self.focal_px)


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def exif_focal(path: PathLike) -> Optional[KnownFocal]:
    """The photo's focal length from EXIF, or None when the file has no usable focal-length tags."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            tags = image.getexif().get_ifd(_EXIF_IFD)
    except Exception:  # unreadable files are reported by the photo loader, with the fix
        return None
    f35 = _number(tags.get(_FOCAL_35MM))
    if f35 is not None:
        return KnownFocal(f35 * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM, "exif-35mm")
    focal_mm = _number(tags.get(_FOCAL_LENGTH))
    per_unit = _number(tags.get(_PLANE_X_RESOLUTION))
    unit_mm = _UNIT_MM.get(int(tags.get(_PLANE_UNIT, 2) or 2))
    if focal_mm is None or per_unit is None or unit_mm is None:
        return None
    focal_px = focal_mm * per_unit / unit_mm
    recorded_width = _number(tags.get(_PIXEL_X_DIMENSION))
    if recorded_width is not None:  # the file may be a resized copy of the image the camera recorded
        focal_px *= width / recorded_width
    return KnownFocal(focal_px, "exif-focal-plane")
