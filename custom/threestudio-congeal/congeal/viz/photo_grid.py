"""Photos of any size in one labelled grid picture (the edit and label grids).

    grid = photo_grid([photo_a, photo_b], ["a", "b"], tile=200)      # uint8 [rows·(200+2)+2, cols·(200+2)+2, 3]
"""
from typing import Optional, Sequence

import numpy as np
from jaxtyping import Float, UInt8

from congeal.viz.pictures import image_grid

__all__ = ["fit_tile", "photo_grid"]


def fit_tile(image: Float[np.ndarray, "H W 3"], size: int) -> Float[np.ndarray, "{size} {size} 3"]:
    """The image scaled into a size×size tile (aspect kept, antialiased, white padding)."""
    from PIL import Image

    h, w = image.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    pil = Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    resized = np.asarray(pil.resize((nw, nh), Image.LANCZOS if s < 1 else Image.BILINEAR), np.float32) / 255.0
    out = np.ones((size, size, 3), np.float32)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = resized
    return out


def photo_grid(images: Sequence[np.ndarray], labels: Sequence[str], tile: int = 200,
               columns: Optional[int] = None) -> UInt8[np.ndarray, "h w 3"]:
    """Tile float [H,W,3] images (any sizes) into a grid with a label on each tile."""
    columns = columns or max(1, min(6, len(images)))
    tiles = [fit_tile(np.asarray(image, np.float32), tile) for image in images]
    return image_grid(tiles, columns=columns, labels=[str(label)[:32] for label in labels],
                      label_scale=2 if tile >= 256 else 1)
