"""Bilinear reads of a small image at arbitrary continuous points (decals and textures).

    rgba = sample_image(decal, u, v, wrap=False)     # u, v in [0,1] across the image; outside -> 0
    rgb = sample_image(tile, u, v, wrap=True)        # repeating texture

u runs left -> right and v top -> bottom over the whole image (pixel j's centre at u = (j + 0.5) / w).
"""
import numpy as np
from jaxtyping import Float

__all__ = ["sample_image"]


def sample_image(image: Float[np.ndarray, "h w C"], u: Float[np.ndarray, "P"], v: Float[np.ndarray, "P"],
                 wrap: bool = False) -> Float[np.ndarray, "P C"]:
    """Bilinear samples of `image` at (u, v); without `wrap`, points outside [0,1]² read 0 (edges fade over half
    a pixel, so an RGBA decal gets a clean anti-aliased border)."""
    h, w, channels = image.shape
    x = np.asarray(u, np.float64) * w - 0.5
    y = np.asarray(v, np.float64) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    out = np.zeros((x.shape[0], channels), np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):  # the four neighbours, each a vectorised read
            xi, yi = x0 + dx, y0 + dy
            if wrap:
                value = image[np.mod(yi, h), np.mod(xi, w)]
            else:
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                value = np.where(inside[:, None], image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)
            out += wx * wy * value
    return out.astype(np.float32)
