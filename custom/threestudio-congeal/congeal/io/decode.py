"""Decode one photo or mask file safely: every way a file can be bad becomes an InputError naming it.

    photo = decode_image(Path("photos/chair.jpg"), max_pixels=64e6)
    photo.rgb, photo.alpha         # [H,W,3] float32 in [0,1], [H,W] float32 or None, on the EXIF-upright grid
    mask, notes = decode_mask(Path("photos/masks/chair.png"), photo)

Handled: 0-byte, unreadable, corrupt or truncated files; content that does not match the suffix (decoded by
content, noted); decompression bombs (refused from the header by our own `max_pixels`, before any pixel is
decoded, without touching PIL's process-wide `Image.MAX_IMAGE_PIXELS`: safe with other threads); CMYK (converted,
through the embedded ICC profile when there is one); 16-bit (scaled by 65535, not clipped); palette with
transparency, grey, grey+alpha, RGBA (alpha kept); EXIF orientation (applied to the photo and, when needed, to its
mask); animated files (first frame).
"""
import contextlib
import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from congeal.common.errors import InputError

DEFAULT_MAX_PIXELS = 64_000_000
# some formats (GIF, TIFF, ICO, ...) check PIL's own, process-wide limit again while decoding
_PIL_LIMIT_FIX = ("downscale it; PIL's own limit (PIL.Image.MAX_IMAGE_PIXELS) also applies to this format, and "
                  "only the program that embeds congeal may raise it")
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the PIL transpose that makes the image upright (the EXIF 2.3 table)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FORMAT_OF_SUFFIX = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF",
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclass
class DecodedImage:
    """A photo on its upright (EXIF-applied) grid.

    Attributes:
        rgb: `[H,W,3]` float32 in [0,1] (straight, not premultiplied).
        alpha: `[H,W]` float32 in [0,1], or None when the file has no alpha or it is fully opaque.
        raw_size: (H, W) as stored, before the EXIF orientation.
        orientation: the EXIF orientation (1 = none).
        notes: what was converted or worked around, for the user.
    """

    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    raw_size: Tuple[int, int]
    orientation: int = 1
    notes: List[str] = field(default_factory=list)

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W) on the upright grid."""
        return self.rgb.shape[0], self.rgb.shape[1]


def read_header(path: Path, max_pixels: float = DEFAULT_MAX_PIXELS, what: str = "image") -> Image.Image:
    """Open lazily (header only) and refuse files that are empty, unreadable, not images or too large.

    Args:
        path: the file.
        max_pixels: largest width x height accepted; checked from the header, before decoding.
        what: "image" or "mask file", for messages.
    Returns:
        The lazily opened PIL image (pixels not decoded yet). The caller closes it.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(path, f"cannot be read ({error.strerror or error})",
                         "check that the file exists and is readable") from None
    if size == 0:
        raise InputError(path, f"is a 0-byte {what}", "re-copy or re-download it, or remove it from the folder")
    try:
        image = _open_lazily(path)
    except PermissionError:
        raise InputError(path, f"cannot be read (permission denied)",
                         "make it readable (chmod a+r) or remove it from the folder") from None
    except Image.DecompressionBombError as error:  # only from Image.open, where the plugins cannot be reached
        raise InputError(path, f"is too large to decode safely ({error})",
                         "downscale it, or raise max_pixels (congeal check --max-pixels)") from None
    except UnidentifiedImageError:
        raise InputError(path, f"is not a readable {what}: {_format_hint(path)}",
                         "re-export it as PNG or JPEG, or remove it from the folder") from None
    except Exception as error:  # any other decoder complaint about the header
        raise InputError(path, f"is a corrupt {what} ({type(error).__name__}: {str(error)[:120]})",
                         "re-export it as PNG or JPEG, or remove it from the folder") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise InputError(
            path,
            f"claims {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} MP (refused before decoding: it could be a decompression bomb)",
            "downscale it, or raise the limit (load_collection(max_pixels=...), congeal check --max-pixels)",
        )
    return image


def decode_image(path: Path, max_pixels: float = DEFAULT_MAX_PIXELS, min_side: int = 1) -> DecodedImage:
    """Decode a photo to float RGB (+ alpha) on its upright grid.

    Args:
        path: the file.
        max_pixels: see `read_header`.
        min_side: smallest accepted shorter side in pixels (checked from the header).
    Returns:
        DecodedImage.
    """
    notes: List[str] = []
    image = read_header(path, max_pixels)
    try:
        width, height = image.size
        if min(width, height) < min_side:
            raise InputError(path, f"is only {width}x{height} pixels; the minimum is {min_side} pixels on the "
                                   f"shorter side", "use a larger photo, or remove it from the folder")
        expected = _FORMAT_OF_SUFFIX.get(path.suffix.lower())
        if expected and image.format and image.format != expected:
            notes.append(f"content is {image.format} although the name ends in {path.suffix}; decoded by content")
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"has {image.n_frames} frames; using the first")
        try:
            image.load()
        except Image.DecompressionBombError as error:
            raise InputError(path, f"is too large to decode safely ({error})", _PIL_LIMIT_FIX) from None
        except Exception as error:
            raise InputError(path, f"is corrupt or truncated ({type(error).__name__}: {str(error)[:120]})",
                             "re-download or re-export it, or remove it from the folder") from None
        orientation = _orientation(image, notes)  # after load: a PNG's eXIf chunk may follow the pixel data
        rgb, alpha = _to_arrays(image, notes)
    finally:
        image.close()
    raw_size = rgb.shape[:2]
    rgb, alpha = upright(rgb, orientation), None if alpha is None else upright(alpha, orientation)
    if alpha is not None and alpha.min() >= 1.0:
        alpha = None  # fully opaque alpha says nothing about the object
        notes.append("alpha channel is fully opaque; ignored")
    return DecodedImage(rgb, alpha, raw_size, orientation, notes)


def decode_mask(path: Path, photo: DecodedImage, image_path: Optional[Path] = None,
                max_pixels: float = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, List[str]]:
    """Read a mask file (white / non-zero = object) onto the photo's upright grid.

    Grey values are thresholded at 0.5 of the full range (documented fallback, noted); a 0/1 label image (8- or
    16-bit with values only 0 and 1) counts 1 as object; a mask whose colour is uniform but whose alpha varies uses
    the alpha. A mask stored on the photo's raw (pre-EXIF) grid is turned upright like the photo.

    Args:
        path: the mask file.
        photo: the decoded photo it belongs to.
        image_path: the photo's path (for messages).
        max_pixels: see `read_header`.
    Returns:
        `[H,W]` bool mask on the photo's upright grid, and notes.
    """
    notes: List[str] = []
    image = read_header(path, max_pixels, what="mask file")
    try:
        try:
            image.load()
        except Image.DecompressionBombError as error:
            raise InputError(path, f"is too large to decode safely ({error})", _PIL_LIMIT_FIX) from None
        except Exception as error:
            raise InputError(path, f"is a corrupt or truncated mask file ({type(error).__name__}: "
                                   f"{str(error)[:120]})", "re-export the mask as PNG") from None
        mask_orientation = _orientation(image, notes)
        values = _mask_values(image, notes)
    finally:
        image.close()
    values = upright(values, mask_orientation)
    height, width = photo.size
    if values.shape == (height, width):
        pass
    elif photo.orientation != 1 and values.shape == tuple(photo.raw_size):
        values = upright(values, photo.orientation)
        notes.append(f"mask is on the photo's stored grid; applied the photo's EXIF orientation "
                     f"{photo.orientation} to it")
    else:
        mh, mw = values.shape
        raise InputError(path, f"is {mw}x{mh} pixels but its image {image_path.name if image_path else ''} is "
                               f"{width}x{height} (after EXIF orientation)",
                         "save the mask at the image's size (white = object)")
    return values >= 0.5, notes


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an `[H,W,...]` array (the same transposes PIL uses)."""
    method = _UPRIGHT.get(orientation)
    if method is None:
        return array
    ops = {
        Image.Transpose.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1],
        Image.Transpose.ROTATE_180: lambda a: a[::-1, ::-1],
        Image.Transpose.FLIP_TOP_BOTTOM: lambda a: a[::-1],
        Image.Transpose.TRANSPOSE: lambda a: a.swapaxes(0, 1),
        Image.Transpose.ROTATE_270: lambda a: np.rot90(a, -1),
        Image.Transpose.TRANSVERSE: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        Image.Transpose.ROTATE_90: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[method](array))


# ---------------------------------------------------------------------------------------------- helpers
def _open_lazily(path: Path) -> Image.Image:
    """`Image.open`, except that a file over PIL's process-wide pixel limit is still opened (header only) by the
    plugin that accepts its first bytes, without changing that limit. `read_header` then applies our `max_pixels`.

    Setting `Image.MAX_IMAGE_PIXELS = None` around `Image.open` (what this replaced) switched the limit off for
    every thread of the process while it lasted; this reads nothing global but the plugin registry.
    """
    try:
        return Image.open(path)  # within PIL's limit (nearly every photo): the plain way
    except Image.DecompressionBombError:
        pass  # over PIL's limit: read the header ourselves, so that our `max_pixels` decides (and names the size)
    registry, ids = getattr(Image, "OPEN", None), getattr(Image, "ID", None)
    if registry is None or ids is None:  # a Pillow without the plugin registry: its own limit applies as well
        return Image.open(path)
    handle = open(path, "rb")
    try:
        prefix = handle.read(16)
        for load_plugins in (Image.preinit, Image.init):
            load_plugins()
            for name in list(ids):
                factory, accept = registry[name]
                accepted = True if not accept else accept(prefix)
                if not accepted or isinstance(accepted, str):  # a str is a "looks like, cannot open" note
                    continue
                handle.seek(0)
                try:
                    image = factory(handle, str(path))
                except (SyntaxError, IndexError, TypeError, struct.error):  # not this format after all
                    continue
                image._exclusive_fp = True  # image.close() closes the file, as after Image.open(path)
                return image
        raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}")
    except BaseException:
        handle.close()
        raise


def _format_hint(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".heic", ".heif", ".avif"):
        return f"{suffix} needs a Pillow plugin (pillow-heif) that is not installed"
    with contextlib.suppress(OSError):
        with open(path, "rb") as handle:
            head = handle.read(16)
        if head.startswith(b"\xff\xd8"):
            return "it starts like a JPEG but the decoder rejects it (corrupt)"
        if head.startswith(b"\x89PNG"):
            return "it starts like a PNG but the decoder rejects it (corrupt)"
    return "unknown or corrupt format"


def _orientation(image: Image.Image, notes: List[str]) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:
        notes.append("EXIF data is unreadable; orientation ignored")
        return 1
    if value not in _UPRIGHT and value != 1:
        notes.append(f"EXIF orientation {value} is invalid; ignored")
        return 1
    if value != 1:
        notes.append(f"EXIF orientation {value} applied")
    return value


def _to_arrays(image: Image.Image, notes: List[str]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """PIL image (any mode) -> rgb `[H,W,3]` float32 in [0,1], alpha `[H,W]` float32 or None."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit grey: PIL's convert("RGB") would clip at 255, so scale by the full 16-bit range instead
        grey = np.asarray(image).astype(np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2), None
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        notes.append("32-bit float image; values clipped to [0,1]")
        return np.repeat(grey[..., None], 3, axis=2), None
    if mode == "CMYK":
        image = _cmyk_to_rgb(image, notes)
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        image = image.convert("RGBA")
    elif mode == "L" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])
    return array, None


def _cmyk_to_rgb(image: Image.Image, notes: List[str]) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            notes.append("CMYK converted to RGB through its ICC profile")
            return converted
        except Exception:
            pass
    notes.append("CMYK converted to RGB (no usable ICC profile: colours approximate)")
    return image.convert("RGB")


def _mask_values(image: Image.Image, notes: List[str]) -> np.ndarray:
    """Mask file -> `[H,W]` float32, 1 = object, before thresholding."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in _SIXTEEN_BIT_MODES:
        raw = np.asarray(image).astype(np.float32)
        full = 65535.0
    elif mode == "F":
        raw = np.asarray(image, dtype=np.float32)
        full = 1.0
    else:
        has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info)
        grey = np.asarray(image.convert("RGBA").convert("L") if mode == "P" else image.convert("L"))
        raw = grey
        if has_alpha:
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
            # a cut-out saved as the mask: colour uniform, the object in the alpha channel
            if grey.min() == grey.max() and alpha.min() != alpha.max():
                raw = alpha
                notes.append("mask colour is uniform; used its alpha channel")
        raw = raw.astype(np.float32)
        full = 255.0
    top = float(raw.max()) if raw.size else 0.0
    if full > 1.0 and top == 1.0 and np.isin(raw, (0.0, 1.0)).all():
        notes.append("mask holds 0/1 labels; 1 = object")
        return raw
    values = np.clip(raw / full, 0.0, 1.0)
    grey_fraction = float(((values > 0) & (values < 1)).mean())
    if grey_fraction > 0:
        notes.append(f"mask is not binary ({100 * grey_fraction:.1f}% grey pixels); thresholded at 0.5")
    return values
