"""Contact sheets: a grid of photos with their masks overlaid (outside the mask tinted red) and a caption each.

    sheet = contact_sheet(collection.images, collection.masks, collection.names)   # -> PIL.Image
    write_contact_sheet(collection, "preview.png")                                 # the same, written atomically

Used by `congeal check --preview`. Captions are drawn with PIL's default font; names it cannot draw fall back to
their ASCII escape.
"""
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from congeal.common.atomic import save_image
from congeal.common.paths import PathLike

RGB = Tuple[int, int, int]
TINT = (1.0, 0.0, 0.0)
OUTLINE = (1.0, 1.0, 0.0)


def overlay_masks(images: Float[Tensor, "N 3 H W"], masks: Float[Tensor, "N 1 H W"], tint: Sequence[float] = TINT,
                  strength: float = 0.55, outline: Optional[Sequence[float]] = OUTLINE) -> Float[Tensor, "N 3 H W"]:
    """Tint everything outside the mask and draw the mask's outline.

    Args:
        images: values in [0,1].
        masks: values in {0,1} (1 = object).
        tint: colour blended into the background.
        strength: blend weight of the tint outside the mask.
        outline: colour of the 1-pixel mask boundary (inside the object), or None.
    Returns:
        values in [0,1].
    """
    masks = masks.to(images.dtype)
    colour = torch.tensor(list(tint), dtype=images.dtype, device=images.device)[None, :, None, None]
    out = images * masks + (1.0 - masks) * ((1.0 - strength) * images + strength * colour)
    if outline is not None:
        # boundary = object pixels with a background 4-neighbour (erosion by min-pooling, padded as object)
        eroded = -F.max_pool2d(-F.pad(masks, (1, 1, 1, 1), value=1.0), 3, stride=1)
        edge = (masks - eroded).clamp(0, 1)
        line = torch.tensor(list(outline), dtype=images.dtype, device=images.device)[None, :, None, None]
        out = out * (1.0 - edge) + line * edge
    return out


def contact_sheet(images: Float[Tensor, "N 3 H W"], masks: Optional[Float[Tensor, "N 1 H W"]], captions: Sequence[str],
                  tile: int = 160, columns: Optional[int] = None, caption_colours: Optional[Sequence[RGB]] = None,
                  background: RGB = (32, 32, 32)) -> Image.Image:
    """Lay out tiles in a grid with a caption under each.

    Args:
        images: values in [0,1].
        masks: values in {0,1}, or None for plain photos.
        captions: N strings (shortened with "..." to fit the tile).
        tile: tile side in pixels (photos are resized, antialiased).
        columns: grid width (default: about square).
        caption_colours: N RGB colours for the captions (default white).
        background: colour between tiles.
    Returns:
        PIL.Image (RGB).
    """
    count = int(images.shape[0])
    if count == 0 or len(captions) != count:
        raise ValueError(f"contact_sheet needs N >= 1 images and N captions, got {count} and {len(captions)}")
    tiles = images.detach().float().cpu()
    if masks is not None:
        tiles = overlay_masks(tiles, masks.detach().float().cpu())
    if tiles.shape[-2:] != (tile, tile):
        tiles = F.interpolate(tiles, size=(tile, tile), mode="bilinear", align_corners=False, antialias=True)
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    font = ImageFont.load_default()
    caption_height = _text_height(font) + 6
    gap = 4
    cell_w, cell_h = tile + gap, tile + caption_height + gap
    # the grid of tiles in one tensor op: [rows, columns, 3, tile, tile] -> [3, rows*tile, columns*tile]
    padded = torch.zeros(rows * columns, 3, tile, tile)
    padded[:count] = tiles.clamp(0, 1)
    pixels = (padded * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [M,tile,tile,3]
    sheet = Image.new("RGB", (columns * cell_w + gap, rows * cell_h + gap), background)
    draw = ImageDraw.Draw(sheet)
    for i in range(count):  # one paste + one caption per tile (tiles, not pixels)
        x, y = gap + (i % columns) * cell_w, gap + (i // columns) * cell_h
        sheet.paste(Image.fromarray(pixels[i]), (x, y))
        colour = tuple(caption_colours[i]) if caption_colours else (255, 255, 255)
        _caption(draw, font, captions[i], (x, y + tile + 3), tile, colour)
    return sheet


def save_contact_sheet(path: PathLike, images: Float[Tensor, "N 3 H W"], masks: Optional[Float[Tensor, "N 1 H W"]],
                       captions: Sequence[str], **kwargs: Any) -> Path:
    """`contact_sheet(...)` written atomically to `path` (PNG unless the suffix says JPEG). Returns the path."""
    path = Path(path)
    save_image(path, contact_sheet(images, masks, captions, **kwargs))
    return path


def write_contact_sheet(collection: Any, path: PathLike, **kwargs: Any) -> Path:
    """Contact sheet of an `ImageCollection` (working crops, masks overlaid, names as captions), atomically.

    Args:
        collection: `congeal.io.collection.ImageCollection`.
        path: output image (PNG unless the suffix says JPEG).
        **kwargs: `contact_sheet` options (tile, columns, ...).
    Returns:
        The path.
    """
    return save_contact_sheet(path, collection.images, collection.masks, list(collection.names), **kwargs)


def _text_height(font: Any) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - box[1]) + 2


def _caption(draw: ImageDraw.ImageDraw, font: Any, text: str, xy: Tuple[int, int], width: int, colour: RGB) -> None:
    for candidate in (text, ascii(text)[1:-1]):
        try:
            draw.text(xy, _fit(draw, font, candidate, width), font=font, fill=colour)
            return
        except (UnicodeError, ValueError, OSError):
            continue  # a font without these glyphs (bitmap fallback): try the ASCII escape


def _fit(draw: ImageDraw.ImageDraw, font: Any, text: str, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
