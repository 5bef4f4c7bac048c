"""A loss-curve picture without matplotlib: raw per-step losses (light) and their moving average (dark).

    save_loss_curve("out/loss_curve.png", losses)           # losses: list of floats, one per step
    smoothed = moving_average(losses, window=25)
"""
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
from jaxtyping import Float

from congeal.common.atomic import save_image
from congeal.common.paths import PathLike

Losses = Union[Sequence[float], Float[np.ndarray, " N"]]


def moving_average(values: Losses, window: int) -> Float[np.ndarray, " N"]:
    """Trailing mean over `window` steps, float64 (the first entries average what exists)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    csum = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def save_loss_curve(path: PathLike, losses: Losses, width: int = 640, height: int = 360,
                    title: str = "textual inversion loss") -> Path:
    """Draw losses against steps into a PNG (atomic write).

    Args:
        path: PNG to write.
        losses: per-step losses (non-finite ones are left out).
    Returns:
        The written path.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 16, 28, height - 32
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    x = np.asarray(losses, dtype=np.float64)
    x = x[np.isfinite(x)]
    draw.text((left, 8), f"{title} ({x.size} steps)", fill=(0, 0, 0))
    if x.size:
        smooth = moving_average(x, max(1, x.size // 40))
        lo, hi = float(np.percentile(x, 1)), float(np.percentile(x, 99))
        hi = hi if hi > lo else lo + 1e-6

        def points(values: np.ndarray) -> List[tuple]:
            u = left + (right - left) * np.arange(values.size) / max(1, values.size - 1)
            v = bottom - (bottom - top) * (np.clip(values, lo, hi) - lo) / (hi - lo)
            return list(zip(u.tolist(), v.tolist()))

        if x.size > 1:
            draw.line(points(x), fill=(170, 190, 230), width=1)
            draw.line(points(smooth), fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{hi:.4g}", fill=(0, 0, 0))
        draw.text((4, bottom - 10), f"{lo:.4g}", fill=(0, 0, 0))
        draw.text((left, bottom + 8), "step 1", fill=(0, 0, 0))
        draw.text((right - 60, bottom + 8), f"step {x.size}", fill=(0, 0, 0))
    save_image(path, image)
    return Path(path)
