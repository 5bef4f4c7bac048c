"""The propagated labels drawn on every photo, as one grid picture.

    grid = label_grid(result, run, tile=200)        # uint8 [h, w, 3]; result: congeal.apps.labels.propagation.Propagation

Each label name has its own colour. Regions are tinted with their outline drawn; points are discs: a disc with a
white ring = given on that photo, a filled disc = propagated and visible, a hollow disc = propagated but hidden
(occluded or facing away). No mark: no correspondence. Source photos are captioned "src: name".
"""
import colorsys
from typing import Dict, List, Tuple

import numpy as np
from jaxtyping import Bool, Float, UInt8

from congeal.viz.photo_grid import fit_tile
from congeal.viz.pictures import image_grid

__all__ = ["label_colours", "tint_regions", "label_grid"]


def label_colours(names: List[str]) -> Dict[str, Tuple[float, float, float]]:
    """A distinct colour per label name (evenly spaced hues)."""
    n = max(1, len(names))
    return {name: colorsys.hsv_to_rgb((i / n + 0.02) % 1.0, 0.85, 0.95) for i, name in enumerate(names)}


def tint_regions(photo: Float[np.ndarray, "H W 3"], masks: Dict[str, Bool[np.ndarray, "H W"]],
                 colours: Dict[str, Tuple[float, float, float]], alpha: float = 0.45) -> Float[np.ndarray, "H W 3"]:
    """The photo with every region tinted in its colour and outlined."""
    out = photo.astype(np.float32).copy()
    for name, mask in masks.items():
        colour = np.asarray(colours.get(name, (1.0, 0.0, 1.0)), np.float32)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
        edge = np.zeros_like(mask)
        edge[1:, :] |= mask[1:, :] != mask[:-1, :]
        edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        out[edge] = colour
    return out


def label_grid(result, run, tile: int = 200) -> UInt8[np.ndarray, "h w 3"]:
    """Every photo of the run with its (given or propagated) labels drawn, in a grid."""
    from PIL import Image, ImageDraw

    doc = result.doc
    colours = label_colours(list(doc["point_names"]) + list(doc["region_names"]))
    tiles, captions = [], []
    radius = max(3, tile // 45)
    for name, entry in doc["photos"].items():
        photo = run.photo(name, required=False).over_white()
        tinted = tint_regions(photo, result.masks.get(name, {}), colours)
        h, w = tinted.shape[:2]
        scale = tile / max(h, w)
        ox, oy = (tile - round(w * scale)) // 2, (tile - round(h * scale)) // 2
        canvas = Image.fromarray((fit_tile(tinted, tile) * 255.0 + 0.5).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for label, point in entry["points"].items():  # a handful of labels per photo
            if point["xy"] is None:
                continue
            colour = tuple(int(255 * c) for c in colours[label])
            x, y = ox + point["xy"][0] * scale, oy + point["xy"][1] * scale
            box = [x - radius, y - radius, x + radius, y + radius]
            if point["given"]:
                draw.ellipse([x - radius - 2, y - radius - 2, x + radius + 2, y + radius + 2], fill=(255, 255, 255))
                draw.ellipse(box, fill=colour)
            elif point["visible"]:
                draw.ellipse(box, fill=colour, outline=(0, 0, 0))
            else:
                draw.ellipse(box, outline=colour, width=2)
        tiles.append(np.asarray(canvas, np.float32) / 255.0)
        captions.append(f"src: {name}" if entry["source"] else name)
    return image_grid(tiles, columns=max(1, min(6, len(tiles))), labels=captions)
