"""Small photo/mask files for the image-loader tests, built with PIL in a temporary folder.

    rgba_photo(folder / "a.png", box=(10, 30, 20, 50))          # object rows 10:30, cols 20:50, transparent around
    photo_with_mask_file(folder, "b", box=(5, 25, 5, 40))        # b.jpg + masks/b.png
    bomb_png(folder / "bomb.png", 100_000, 100_000)              # a tiny file whose header claims 10 gigapixels
"""
import struct
import zlib
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

Box = Tuple[int, int, int, int]  # (row0, row1, col0, col1)


def object_array(height: int, width: int, box: Box, colour=(200, 60, 40), background=(255, 255, 255)) -> np.ndarray:
    """`[H,W,3]` uint8: a rectangle of `colour` on `background`."""
    array = np.empty((height, width, 3), np.uint8)
    array[:] = background
    r0, r1, c0, c1 = box
    array[r0:r1, c0:c1] = colour
    return array


def box_mask(height: int, width: int, box: Box) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    r0, r1, c0, c1 = box
    mask[r0:r1, c0:c1] = True
    return mask


def rgba_photo(path: Path, height: int = 64, width: int = 80, box: Box = (16, 48, 20, 60),
               colour=(200, 60, 40)) -> Path:
    """RGBA PNG (even when `path` says .jpg): opaque rectangle, transparent (black) elsewhere."""
    rgb = object_array(height, width, box, colour, background=(0, 0, 0))
    alpha = box_mask(height, width, box).astype(np.uint8) * 255
    Image.fromarray(np.dstack([rgb, alpha])).save(path, format="PNG")  # PNG content whatever the suffix
    return path


def photo_with_mask_file(folder: Path, stem: str, height: int = 64, width: int = 80, box: Box = (16, 48, 20, 60),
                         suffix: str = ".png", mask_style: str = "folder") -> Tuple[Path, Path]:
    """An RGB photo and a binary mask file (`masks/<stem>.png` or `<stem>_mask.png`)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = folder / f"{stem}{suffix}"
    Image.fromarray(object_array(height, width, box)).save(photo)
    if mask_style == "folder":
        (folder / "masks").mkdir(exist_ok=True)
        mask_path = folder / "masks" / f"{stem}.png"
    else:
        mask_path = folder / f"{stem}_mask.png"
    Image.fromarray(box_mask(height, width, box).astype(np.uint8) * 255).save(mask_path)
    return photo, mask_path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed), so only the header is big."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # signature (8) + length (4) + b"IHDR" (4), then width, height as big-endian uint32
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def png16_rgb(path: Path, array: np.ndarray) -> Path:
    """Write `[H,W,3]` uint16 as a 48-bit RGB PNG (PIL cannot write these itself)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(height))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path
