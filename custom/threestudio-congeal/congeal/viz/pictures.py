"""Pictures a person looks at after registration: overlay grids, search score maps, and a grid-image helper.

    sheet = image_grid([photo, render, overlay(photo, render, opacity)], columns=3,
                       labels=["photo", "render", "overlay"])                      # uint8 [H,W,3]
    write_overlay_grid(out / "pictures" / "overlay.png", photos, renders, opacities, names)
    write_score_maps(out / "pictures" / "scores.png", scores, names, best=[(el, az), ...])

Images are float tensors or arrays with values in [0,1], laid out [3,H,W], [H,W,3], [H,W] or [H,W,1]; pictures are
written through `congeal.common.atomic.save_image`.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from jaxtyping import Float, UInt8
from torch import Tensor

from congeal.common.atomic import save_image
from congeal.common.paths import PathLike

# an image in any of the layouts `to_hwc` reads ([3,H,W], [H,W,3], [H,W], [H,W,1]), values in [0,1]
AnyImage = Union[Float[np.ndarray, "..."], Float[Tensor, "..."]]
RGB = Tuple[float, float, float]

# 5×7 bitmap glyphs for labels (digits, lower-case letters and a few signs): no font files needed
_GLYPHS = {
    "0": "01110100011001110101110011000101110", "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111", "3": "11111000100010000010000011000101110",
    "4": "00010001100101010010111110001000010", "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110", "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110", "9": "01110100011000101111000010001001100",
    ".": "00000000000000000000000000110001100", "-": "00000000000000011111000000000000000",
    "_": "00000000000000000000000000000011111", ":": "00000011000110000000011000110000000",
    "=": "00000000001111100000111110000000000", " ": "0" * 35, "/": "00001000010001000100010001000010000",
    "a": "00000000000111000001011111000101111", "b": "10000100001011011001100011000111110",
    "c": "00000000000111010000100001000101110", "d": "00001000010110110011100011000101111",
    "e": "00000000000111010001111111000001110", "f": "00110010010100011100010000100001000",
    "g": "00000011111000110001011110000101110", "h": "10000100001011011001100011000110001",
    "i": "00100000000110000100001000010001110", "j": "00010000000011000010000101001001100",
    "k": "10000100001001010100110001010010010", "l": "01100001000010000100001000010001110",
    "m": "00000000001101010101101011000110001", "n": "00000000001011011001100011000110001",
    "o": "00000000000111010001100011000101110", "p": "00000000001111010001111101000010000",
    "q": "00000000000110110011011110000100001", "r": "00000000001011011001100001000010000",
    "s": "00000000000111010000011100000111110", "t": "01000010001110001000010000100100110",
    "u": "00000000001000110001100011001101101", "v": "00000000001000110001100010101000100",
    "w": "00000000001000110001101011010101010", "x": "00000000001000101010001000101010001",
    "y": "00000000001000110001011110000101110", "z": "00000000001111100010001000100011111",
}


def to_hwc(image: AnyImage) -> Float[np.ndarray, "H W 3"]:
    """[3,H,W] / [H,W,3] / [H,W] / [H,W,1] tensor or array in [0,1] -> float32 [H,W,3] numpy array, clipped."""
    if isinstance(image, Tensor):
        image = image.detach().float().cpu().numpy()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.clip(array, 0.0, 1.0)


def draw_label(image: Float[np.ndarray, "H W 3"], text: str, scale: int = 1, colour: RGB = (1.0, 1.0, 1.0)
               ) -> Float[np.ndarray, "H W 3"]:
    """Write `text` (lower-cased; unknown characters become spaces) at the top-left corner, on a dark strip."""
    text = text.lower()[: max(1, image.shape[1] // (6 * scale))]
    glyph_h, glyph_w = 7 * scale, 5 * scale
    out = image.copy()
    strip = min(out.shape[0], glyph_h + 2 * scale)
    out[:strip, : min(out.shape[1], len(text) * 6 * scale + scale)] *= 0.35
    for i, char in enumerate(text):
        bits = np.array([int(b) for b in _GLYPHS.get(char, _GLYPHS[" "])], dtype=bool).reshape(7, 5)
        bits = np.kron(bits, np.ones((scale, scale), dtype=bool))
        x = scale + i * 6 * scale
        region = out[scale: scale + glyph_h, x: x + glyph_w]
        h, w = region.shape[:2]
        region[bits[:h, :w]] = colour
    return out


def image_grid(images: Sequence[AnyImage], columns: int, labels: Optional[Sequence[str]] = None, pad: int = 2,
               background: float = 1.0, label_scale: int = 1) -> UInt8[np.ndarray, "height width 3"]:
    """Tile images (same size) into a grid, row-major, with optional labels.

    Args:
        images: images in any layout `to_hwc` reads, all the same H, W.
        columns: images per row.
        labels: one text per image (or None).
        pad: pixels between tiles.
        background: grey level between tiles.
        label_scale: glyph magnification.
    Returns:
        uint8 [rows·(H+pad)+pad, columns·(W+pad)+pad, 3].
    """
    tiles = [to_hwc(image) for image in images]
    if not tiles:
        return np.full((1, 1, 3), 255, dtype=np.uint8)
    height, width = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), background, np.float32)
    for i, tile in enumerate(tiles):
        if labels is not None and labels[i]:
            tile = draw_label(tile, labels[i], label_scale)
        r, c = divmod(i, columns)
        y, x = pad + r * (height + pad), pad + c * (width + pad)
        canvas[y: y + height, x: x + width] = tile
    return (canvas * 255.0 + 0.5).astype(np.uint8)


def overlay(photo: AnyImage, render: AnyImage, opacity: AnyImage, alpha: float = 0.5) -> Float[np.ndarray, "H W 3"]:
    """Blend the render over the photo where it is opaque, and draw the render's silhouette outline in green."""
    photo, render = to_hwc(photo), to_hwc(render)
    occupancy = to_hwc(opacity)[..., :1]
    blended = photo * (1.0 - alpha * occupancy) + render * alpha * occupancy
    inside = occupancy[..., 0] > 0.5
    edge = np.zeros_like(inside)
    edge[1:, :] |= inside[1:, :] != inside[:-1, :]
    edge[:, 1:] |= inside[:, 1:] != inside[:, :-1]
    blended[edge] = (0.1, 1.0, 0.2)
    return blended


def write_overlay_grid(path: PathLike, photos: Float[Tensor, "N 3 S S"], renders: Float[Tensor, "N S S 3"],
                       opacities: Float[Tensor, "N S S 1"], names: Sequence[str], per_row: int = 2,
                       undecided: Optional[Sequence[bool]] = None,
                       statuses: Optional[Sequence[str]] = None) -> Path:
    """Every photo beside the canonical rendered at its estimated pose, and the two overlaid.

    Args:
        path: PNG to write.
        photos: working images in [0,1].
        renders: canonical renders at the estimated poses (working frame).
        opacities: render opacities.
        names: N image names (labels).
        per_row: photos per row (each photo takes three tiles).
        undecided: photos whose pose the collection could not decide between two readings: their tiles get an
            orange frame and "UNDECIDED" in the label.
        statuses: each photo's status (poses.json): `failed` tiles get a red frame and "FAILED", `undecided` ones
            the orange frame (this wins over `undecided`).
    Returns:
        the path.
    """
    tiles: List[np.ndarray] = []
    labels: List[str] = []
    for i, name in enumerate(names):
        row = [to_hwc(photos[i]), to_hwc(renders[i]), overlay(photos[i], renders[i], opacities[i])]
        status = statuses[i] if statuses is not None else (
            "undecided" if undecided is not None and undecided[i] else "ok")
        if status in STATUS_COLOURS:
            row = [_framed(tile, STATUS_COLOURS[status]) for tile in row]
            name = f"{name} {status.upper()}"
        tiles += row
        labels += [name, "render", "overlay"]
    scale = 2 if photos.shape[-1] >= 192 else 1
    save_image(path, image_grid(tiles, columns=3 * per_row, labels=labels, label_scale=scale))
    return Path(path)


#: the frame colour of photos whose pose is undecided (also the viewer's colour of alternatives)
UNDECIDED_COLOUR = (1.0, 0.55, 0.0)
#: the frame colour of photos whose camera the run calls failed
FAILED_COLOUR = (0.9, 0.1, 0.1)
STATUS_COLOURS = {"undecided": UNDECIDED_COLOUR, "failed": FAILED_COLOUR}


def _framed(tile: Float[np.ndarray, "H W 3"], colour: Tuple[float, float, float]) -> Float[np.ndarray, "H W 3"]:
    """The tile with a frame of `colour`, 1/16 of its side thick (at least 2 px)."""
    out = np.array(tile, dtype=np.float32, copy=True)
    width = max(2, out.shape[0] // 16)
    for edge in (np.s_[:width], np.s_[-width:]):
        out[edge, :] = colour
        out[:, edge] = colour
    return out


def colormap(values: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape 3"]:
    """Values in [0,1] -> RGB: dark blue (low) through teal and green to yellow (high)."""
    stops = np.array([[0.07, 0.04, 0.33], [0.16, 0.38, 0.56], [0.13, 0.63, 0.53], [0.48, 0.82, 0.31],
                      [0.99, 0.91, 0.14]], dtype=np.float32)
    position = np.clip(values, 0.0, 1.0) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = (position - low)[..., None]
    return stops[low] * (1.0 - frac) + stops[low + 1] * frac


def score_map_image(scores: Union[Float[np.ndarray, "E A"], Float[Tensor, "E A"]],
                    best: Optional[Tuple[int, int]] = None, cell: int = 8) -> Float[np.ndarray, "_ _ 3"]:
    """One score map as an image: elevation rows (highest at the top) × azimuth columns, low score = bright.

    Args:
        scores: search scores (lower is better), rows = elevations in increasing order.
        best: (elevation index, azimuth index) to mark with a red square.
        cell: pixels per grid cell.
    Returns:
        float32 [E·cell, A·cell, 3].
    """
    values = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    goodness = (hi - values) / max(hi - lo, 1e-8)
    image = colormap(goodness)
    if best is not None:
        e, a = best
        image[e, a] = (1.0, 0.1, 0.1)
    image = np.flipud(image)  # highest elevation on top
    return np.kron(image, np.ones((cell, cell, 1), dtype=np.float32))


def write_score_maps(path: PathLike, scores: Union[Float[np.ndarray, "N E A"], Float[Tensor, "N E A"]],
                     names: Sequence[str],
                     best: Optional[Sequence[Tuple[int, int]]] = None, columns: int = 4) -> Path:
    """Write each image's search score over azimuth × elevation (best over FoVs) as one grid picture.

    Args:
        path: PNG to write.
        scores: search scores (lower is better).
        names: N labels.
        best: per image, the (elevation, azimuth) index of the chosen hypothesis, marked red.
        columns: maps per row.
    Returns:
        the path.
    """
    maps = [score_map_image(scores[i], None if best is None else best[i]) for i in range(len(names))]
    save_image(path, image_grid(maps, columns=columns, labels=list(names)))
    return Path(path)
