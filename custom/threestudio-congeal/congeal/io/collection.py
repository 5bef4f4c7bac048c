"""Load a folder of photos as an `ImageCollection`: working crops, binary masks (and each pixel's covered fraction) and
exact crop transforms.

    collection = load_collection("photos/", size=256, mask="auto")     # alpha, else masks/<stem>.png / <stem>_mask.png
    collection.images, collection.masks                                # [N,3,S,S] in [0,1], [N,1,S,S] in {0,1}
    collection.mask_cover                                              # [N,1,S,S]: each pixel's object fraction
    xy = collection.crops[i].to_original(xy_working)                   # back onto the original photo's pixel grid

Mask sources, per `mask=`: "auto" (the alpha channel when it is not fully opaque, else a mask file, else an
InputError), "alpha", "file", "white-background" (`masks.white_background_mask`), "sam" (`masks.SamMasker`).
With `require_mask=False` a photo that "auto" / "file" finds no mask for is loaded anyway (mask source "none"):
its crop is the largest centred square of the photo and its mask is all ones (textual inversion's `congeal invert`
accepts such photos; registration and the threestudio data modules need masks).
Mask files: `<folder>/masks/<stem>.png` or `<folder>/<stem>_mask.png`; white / non-zero = object; grey values are
thresholded at 0.5. Alpha is thresholded at 0.5 too, and transparent photos are composited over
`alpha_background` (white by default).

Crop: the mask's bounding box, `margin` x its longer side added on each side, made square around the box centre,
resampled to S x S (box-averaged, so shrinking is antialiased). The window may reach past the photo's border: the
photo's border pixels are repeated there, the mask is 0 there. "Original" coordinates are those of the photo after
its EXIF orientation is applied (what every viewer shows).

The folder listing (which files are photos, where mask files are) is `congeal.io.listing`.

Hostile input (each case has a test in tests/io/test_hostile_input.py) raises `InputError` naming the file and the fix,
or takes the documented fallback recorded in `warnings`; `load_collection` reports every bad file at once and
returns nothing partial.
"""
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.io.crop import Crop
from congeal.io.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image, decode_mask
from congeal.io.listing import MASK_FOLDER, MASK_SUFFIX, find_mask_file, list_images, photo_name, require_photos

__all__ = ["ImageCollection", "LoadedImage", "load_collection", "load_image", "MASK_MODES"]

MASK_MODES = ("auto", "alpha", "file", "white-background", "sam")
FULL_FRAME_COVERAGE = 0.99  # a mask covering more of the frame than this gets a warning


# ---------------------------------------------------------------------------------------------- one photo
@dataclass
class LoadedImage:
    """One photo, loaded. `image` `[3,S,S]`, `mask` `[1,S,S]` (float {0,1}), the original-grid mask bit-packed.

    `warnings` are things that look wrong (check shows WARN); `notes` are documented fallbacks that were applied
    (EXIF rotation, CMYK or 16-bit conversion, grey mask thresholded, ...).
    """

    name: str
    path: Path
    image: Float[Tensor, "3 S S"]
    mask: Float[Tensor, "1 S S"]
    original_size: Tuple[int, int]
    crop: Crop
    mask_source: str
    coverage: float
    warnings: List[str]
    packed_mask: UInt8[np.ndarray, " _bits"]
    mask_cover: Float[Tensor, "1 S S"]
    """The fraction of each working pixel the object covers (the original mask box-averaged through the crop);
    `mask` is it thresholded at 0.5."""
    notes: List[str] = field(default_factory=list)

    def full_mask(self) -> Bool[np.ndarray, "H W"]:
        """`[H,W]` bool object mask on the original grid."""
        height, width = self.original_size
        return np.unpackbits(self.packed_mask, count=height * width).reshape(height, width).astype(bool)


def load_image(path: PathLike, size: int = 256, mask: str = "auto", margin: float = 0.1, min_side: int = 32,
               max_pixels: float = DEFAULT_MAX_PIXELS, sam_masker=None,
               alpha_background: Optional[Sequence[float]] = (1.0, 1.0, 1.0), require_mask: bool = True
               ) -> LoadedImage:
    """Load one photo with its mask and crop. Arguments as in `load_collection`.

    Returns:
        LoadedImage (tensors on the CPU).
    """
    path = Path(path)
    photo = decode_image(path, max_pixels=max_pixels, min_side=min_side)
    object_mask, source, mask_notes = _object_mask(path, photo, mask, max_pixels, sam_masker, require_mask)
    notes = list(photo.notes) + mask_notes
    warnings: List[str] = []
    height, width = photo.size
    if object_mask is None:  # no mask and none required: the whole photo, its largest centred square
        object_mask = np.ones((height, width), bool)
        side = min(height, width)
        x0, y0 = (width - side) / 2, (height - side) / 2
        crop = Crop.from_bbox((x0, y0, x0 + side, y0 + side), size=size, margin=0.0)
        return _cropped(path, photo, object_mask, crop, source, 1.0, warnings, notes, alpha_background)
    coverage = float(object_mask.mean())
    if coverage == 0.0:
        raise InputError(_mask_owner(path, source), f"the mask ({source}) is empty: no object pixels",
                         _mask_fix(mask))
    if coverage > FULL_FRAME_COVERAGE:
        warnings.append(f"mask covers {100 * coverage:.1f}% of the frame: the mask is probably missing or wrong "
                        f"(the crop is the whole photo)")
    rows = np.flatnonzero(object_mask.any(1))
    cols = np.flatnonzero(object_mask.any(0))
    bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    if max(bbox[2] - bbox[0], bbox[3] - bbox[1]) < min_side:
        warnings.append(f"the object is only {bbox[2] - bbox[0]:.0f}x{bbox[3] - bbox[1]:.0f} pixels (minimum "
                        f"{min_side}): its crop will be blurry")
    crop = Crop.from_bbox(bbox, size=size, margin=margin)
    return _cropped(path, photo, object_mask, crop, source, coverage, warnings, notes, alpha_background)


def _cropped(path: Path, photo: DecodedImage, object_mask: Bool[np.ndarray, "H W"], crop: Crop, source: str,
             coverage: float, warnings: List[str], notes: List[str],
             alpha_background: Optional[Sequence[float]]) -> LoadedImage:
    """The photo and its `[H,W]` bool mask resampled through `crop` (mask thresholded at 0.5 after resampling)."""
    rgb = _composite(photo, alpha_background)  # [3,H,W]
    image = crop.apply(rgb, fill="edge").clamp(0.0, 1.0)
    cover = crop.apply(torch.from_numpy(object_mask)[None].float(), fill=0.0).clamp(0.0, 1.0)
    return LoadedImage(photo_name(path), path, image, (cover >= 0.5).float(), photo.size, crop, source, coverage,
                       warnings, np.packbits(object_mask.reshape(-1)), cover, notes)


def _object_mask(path: Path, photo: DecodedImage, mode: str, max_pixels: float, sam_masker,
                 require_mask: bool = True) -> Tuple[Optional[Bool[np.ndarray, "H W"]], str, List[str]]:
    """-> `[H,W]` bool on the upright grid (None: no mask found and none required), mask source string, notes."""
    if mode in ("auto", "alpha") and photo.alpha is not None:
        return photo.alpha >= 0.5, "alpha", []
    if mode == "alpha":
        raise InputError(path, "has no alpha channel (or it is fully opaque)",
                         "use mask='auto' with mask files, or mask='white-background' / mask='sam'")
    if mode in ("auto", "file"):
        mask_path = find_mask_file(path)
        if mask_path is not None:
            values, notes = decode_mask(mask_path, photo, image_path=path, max_pixels=max_pixels)
            return values, f"file:{mask_path}", notes
        if not require_mask:
            return None, "none", []
        looked = f"{MASK_FOLDER}/{path.stem}.png or {path.stem}{MASK_SUFFIX}.png"
        raise InputError(path, f"has no mask: no alpha channel and no mask file ({looked})",
                         f"add mask files (white = object), or pass mask='white-background' (plain backgrounds) "
                         f"or mask='sam' (congeal check --mask white-background|sam)")
    rgb = _composite(photo, (1.0, 1.0, 1.0))
    if mode == "white-background":
        from congeal.io.masks import white_background_mask

        try:
            return white_background_mask(rgb)[0].numpy() >= 0.5, "white-background", []
        except InputError as error:
            raise InputError(path, error.problem, error.fix) from None
    if mode == "sam":
        if sam_masker is None:
            raise InputError(path, "mask='sam' needs a SAM model", "pass sam_model= (hub id or local folder)")
        device = getattr(sam_masker, "device", "cpu")
        return sam_masker(rgb.to(device))[0].cpu().numpy() >= 0.5, "sam", []
    raise InputError(None, f"unknown mask source {mode!r}", f"use one of {', '.join(MASK_MODES)}")


def _composite(photo: DecodedImage, background: Optional[Sequence[float]]) -> Float[Tensor, "3 H W"]:
    """Photo as float32; transparent photos composited over `background` (None keeps stored RGB)."""
    rgb = torch.from_numpy(photo.rgb).permute(2, 0, 1)
    if photo.alpha is None or background is None:
        return rgb.contiguous()
    alpha = torch.from_numpy(photo.alpha)[None]
    colour = torch.tensor(list(background), dtype=rgb.dtype)[:, None, None]
    return rgb * alpha + colour * (1.0 - alpha)


def _mask_owner(path: Path, source: str) -> Path:
    return Path(source[len("file:"):]) if source.startswith("file:") else path


def _mask_fix(mode: str) -> str:
    if mode == "white-background":
        return "the object could not be told from the background: provide a mask file, or use mask='sam'"
    return "draw the object in white in the mask (or alpha channel), or remove the photo"


# ---------------------------------------------------------------------------------------------- the collection
@dataclass
class ImageCollection:
    """Photos cropped around their objects, with masks and the crop transforms.

    Attributes:
        names: file stems (unique, sorted).
        paths: the photo files.
        images: `[N,3,S,S]` float in [0,1] (the background around the object kept as in the photo).
        masks: `[N,1,S,S]` float in {0,1}.
        original_sizes: (H, W) of each photo after its EXIF orientation.
        crops: the `Crop` of each photo (original <-> working pixel coordinates).
        mask_sources: "alpha" | "file:<path>" | "white-background" | "sam" | "none" (see `require_mask`).
        skipped: files in the folder that were ignored, with the reason.
        warnings: "<name>: <message>" lines: what looks wrong, and the documented fallbacks that were applied.
        coverages: mask area / frame area on the original grid.
        folder: the folder the photos came from (None when built in memory).
        options: the loading options (used by `load_original`).
        packed_masks: bit-packed original-grid masks (`np.packbits` of `[H*W]` bool); see `load_original`.
    """

    names: List[str]
    paths: List[Path]
    images: Float[Tensor, "N 3 S S"]
    masks: Float[Tensor, "N 1 S S"]
    original_sizes: List[Tuple[int, int]]
    crops: List[Crop]
    mask_sources: List[str]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    coverages: List[float] = field(default_factory=list)
    folder: Optional[Path] = None
    options: Dict = field(default_factory=dict)
    packed_masks: List[Optional[UInt8[np.ndarray, " _bits"]]] = field(default_factory=list, repr=False)
    mask_cover: Optional[Float[Tensor, "N 1 S S"]] = None
    """The fraction of each working pixel the object covers (`masks` is it thresholded at 0.5); None: `masks`."""

    def __post_init__(self):
        if self.mask_cover is None:
            self.mask_cover = self.masks

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        """Working size S."""
        return int(self.images.shape[-1])

    def index(self, name: str) -> int:
        """Position of an image by name (InputError if unknown)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(None, f"no image named {name!r} in the collection",
                             f"use one of: {', '.join(self.names)}") from None

    def load_original(self, i: int) -> Tuple[Float[Tensor, "3 H W"], Float[Tensor, "1 H W"]]:
        """Photo `i` on its original grid (EXIF orientation applied), re-decoded from its file.

        Returns:
            image `[3,H,W]` float in [0,1] (transparent photos composited as when loading), mask `[1,H,W]` float
            {0,1} (the same mask the crop came from).
        """
        options = self.options
        photo = decode_image(self.paths[i], max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))
        if photo.size != tuple(self.original_sizes[i]):
            raise InputError(self.paths[i], f"changed on disk: now {photo.size}, loaded as {self.original_sizes[i]}",
                             "load the collection again")
        image = _composite(photo, options.get("alpha_background", (1.0, 1.0, 1.0)))
        height, width = photo.size
        packed = self.packed_masks[i] if i < len(self.packed_masks) else None
        if packed is None:
            raise InputError(self.paths[i], "has no original-grid mask stored", "load it with load_collection")
        mask = np.unpackbits(packed, count=height * width).reshape(height, width)
        device = self.images.device
        return image.to(device), torch.from_numpy(mask.astype(np.float32))[None].to(device)

    def subset(self, names: Sequence[str]) -> "ImageCollection":
        """A collection of the named images, in the given order."""
        keep = [self.index(name) for name in names]
        take = torch.tensor(keep, dtype=torch.long, device=self.images.device)
        prefixes = tuple(f"{self.names[i]}: " for i in keep)
        return replace(
            self,
            names=[self.names[i] for i in keep],
            paths=[self.paths[i] for i in keep],
            images=self.images.index_select(0, take),
            masks=self.masks.index_select(0, take),
            mask_cover=self.mask_cover.index_select(0, take),
            original_sizes=[self.original_sizes[i] for i in keep],
            crops=[self.crops[i] for i in keep],
            mask_sources=[self.mask_sources[i] for i in keep],
            warnings=[w for w in self.warnings if w.startswith(prefixes)],
            coverages=[self.coverages[i] for i in keep] if self.coverages else [],
            packed_masks=[self.packed_masks[i] for i in keep] if self.packed_masks else [],
        )

    def to(self, device: Union[str, torch.device]) -> "ImageCollection":
        """The same collection with its tensors on `device`."""
        return replace(self, images=self.images.to(device), masks=self.masks.to(device),
                       mask_cover=self.mask_cover.to(device))


def validate_options(size: int, mask: str, margin: float, min_side: int, max_pixels: float) -> None:
    """InputError for option values that cannot work."""
    if mask not in MASK_MODES:
        raise InputError(None, f"unknown mask source {mask!r}", f"use one of {', '.join(MASK_MODES)}")
    if int(size) < 8:
        raise InputError(None, f"working size {size} is too small", "use a size of at least 8 (e.g. 256)")
    if not (0.0 <= float(margin) <= 2.0):
        raise InputError(None, f"margin {margin} is outside [0, 2]", "use e.g. 0.1 (10% of the object size)")
    if int(min_side) < 1:
        raise InputError(None, f"min_side {min_side} must be at least 1", "use e.g. 32")
    if not float(max_pixels) > 0:
        raise InputError(None, f"max_pixels {max_pixels} must be positive", "use e.g. 64e6")


def load_collection(folder: PathLike, size: int = 256, mask: str = "auto", margin: float = 0.1, min_side: int = 32,
                    max_pixels: float = DEFAULT_MAX_PIXELS, sam_model=None, device: Union[str, torch.device] = "cpu",
                    alpha_background: Optional[Sequence[float]] = (1.0, 1.0, 1.0), require_mask: bool = True,
                    min_photos: int = 2) -> ImageCollection:
    """Load every photo in `folder` (at least `min_photos`) with a foreground mask and a square crop around the object.

    Args:
        folder: the photos (subfolders are not searched; `masks/` holds mask files).
        size: working size S of the crops.
        mask: "auto" | "alpha" | "file" | "white-background" | "sam" (see the module docstring).
        margin: space around the object's box on each side, as a fraction of its longer side.
        min_side: photos whose shorter side is below this many pixels are refused.
        max_pixels: photos claiming more pixels (width x height) are refused before decoding.
        sam_model: for mask="sam": a hub id, a local folder, or a built `masks.SamMasker`.
        device: where the returned tensors live (and SAM runs).
        alpha_background: RGB in [0,1] that transparent photos are composited over; None keeps the stored RGB.
        require_mask: False loads photos without any mask too (source "none": centred square crop, mask all ones).
        min_photos: fewer photos than this is an InputError (congealing needs 2; textual inversion 1).
    Returns:
        ImageCollection.
    Raises:
        InputError: naming every unusable file, or the folder when it holds fewer than `min_photos` photos.
    """
    validate_options(size, mask, margin, min_side, max_pixels)
    listing = list_images(folder)
    require_photos(listing, min_photos)
    masker = build_masker(mask, sam_model, device)
    loaded, failures = [], []
    for path in listing.images:
        try:
            loaded.append(load_image(path, size=size, mask=mask, margin=margin, min_side=min_side,
                                     max_pixels=max_pixels, sam_masker=masker, alpha_background=alpha_background,
                                     require_mask=require_mask))
        except InputError as error:
            failures.append(error)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        lines = "\n  ".join(str(error) for error in failures)
        raise InputError(listing.folder, f"{len(failures)} of {len(listing.images)} photos cannot be used",
                         f"fix or remove them (`congeal check {listing.folder}` shows every photo):\n  {lines}")
    return ImageCollection(
        names=[item.name for item in loaded],
        paths=[item.path for item in loaded],
        images=torch.stack([item.image for item in loaded]).to(device),
        masks=torch.stack([item.mask for item in loaded]).to(device),
        original_sizes=[item.original_size for item in loaded],
        crops=[item.crop for item in loaded],
        mask_sources=[item.mask_source for item in loaded],
        skipped=listing.skipped,
        warnings=[f"{item.name}: {w}" for item in loaded for w in item.warnings + item.notes],
        coverages=[item.coverage for item in loaded],
        folder=listing.folder,
        options=dict(size=size, mask=mask, margin=margin, min_side=min_side, max_pixels=max_pixels,
                     alpha_background=alpha_background, require_mask=require_mask),
        packed_masks=[item.packed_mask for item in loaded],
        mask_cover=torch.stack([item.mask_cover for item in loaded]).to(device),
    )


def build_masker(mask: str, sam_model, device: Union[str, torch.device] = "cpu"):
    """The SAM masker for mask="sam" (built from an id/path, or passed through), else None."""
    if mask != "sam":
        return None
    from congeal.io.masks import DEFAULT_SAM_MODEL, SamMasker

    if isinstance(sam_model, SamMasker) or callable(sam_model):
        return sam_model
    return SamMasker(sam_model or DEFAULT_SAM_MODEL, device=device)
