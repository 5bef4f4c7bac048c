"""Which files in a folder are photos, and where their mask files are.

    listing = list_images("photos/")          # .images: photos sorted by name; .skipped: (path, reason)
    require_photos(listing, minimum=2)        # InputError naming the folder when there are too few
    find_mask_file(Path("photos/chair.jpg"))  # photos/masks/chair.png, else photos/chair_mask.png, else None

`IMAGE_SUFFIXES` is the one list of photo suffixes. Hidden files, subfolders, non-images and the `<stem>_mask.png`
files that belong to a photo are skipped and listed with the reason.
"""
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from congeal.common.errors import InputError
from congeal.common.paths import PathLike

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif",
                  ".avif")
MASK_FOLDER = "masks"
MASK_SUFFIX = "_mask"


@dataclass
class FolderListing:
    """The photos of a folder (sorted by name) and the files that were ignored, with the reason."""

    folder: Path
    images: List[Path]
    skipped: List[Tuple[Path, str]]


def photo_name(path: Path) -> str:
    """The name a photo is keyed by: its stem, NFC-normalised."""
    return unicodedata.normalize("NFC", path.stem)


def list_images(folder: PathLike) -> FolderListing:
    """Find the photos in a folder (not its subfolders).

    Hidden files, non-image files, subfolders and `<stem>_mask.png` files that belong to a photo are skipped and
    listed. Two photos whose names differ only by suffix or letter case (`a.jpg` + `a.png`) are an InputError:
    every output is keyed by name.

    Args:
        folder: the folder.
    Returns:
        FolderListing.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "is not a folder: it does not exist", "give the folder that holds the photos")
    if not folder.is_dir():
        raise InputError(folder, "is not a folder", "give the folder that holds the photos, not a file")
    try:
        entries = sorted(folder.iterdir(), key=lambda p: unicodedata.normalize("NFC", p.name))
    except OSError as error:
        raise InputError(folder, f"cannot be listed ({error.strerror or error})", "make the folder readable") \
            from None
    candidates, skipped = [], []
    for entry in entries:
        if entry.name.startswith("."):
            skipped.append((entry, "hidden file"))
        elif entry.is_dir():
            skipped.append((entry, "mask folder" if entry.name == MASK_FOLDER else "folder (not searched)"))
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((entry, f"not an image ({entry.suffix or 'no suffix'})"))
        else:
            candidates.append(entry)
    stems = {p.stem for p in candidates}
    images = []
    for path in candidates:
        owner = path.stem[: -len(MASK_SUFFIX)]
        # exactly the files find_mask_file() reads; a photo that merely ends in "_mask" stays a photo
        if path.stem.endswith(MASK_SUFFIX) and path.suffix == ".png" and owner in stems:
            skipped.append((path, f"mask file of {owner}"))
        else:
            images.append(path)
    groups: Dict[str, List[Path]] = {}
    for path in images:
        groups.setdefault(photo_name(path).casefold(), []).append(path)
    clashes = [group for group in groups.values() if len(group) > 1]
    if clashes:
        names = "; ".join(" and ".join(p.name for p in group) for group in clashes)
        raise InputError(clashes[0][0], f"photos with the same name: {names} (outputs are keyed by name, letter "
                                        f"case ignored)", "rename or remove one file of each pair")
    skipped.sort(key=lambda item: item[0].name)
    return FolderListing(folder, images, skipped)


def find_mask_file(image_path: Path) -> Optional[Path]:
    """`masks/<stem>.png` beside the photo, else `<stem>_mask.png` next to it, else None."""
    for candidate in (image_path.parent / MASK_FOLDER / f"{image_path.stem}.png",
                      image_path.parent / f"{image_path.stem}{MASK_SUFFIX}.png"):
        if candidate.is_file():
            return candidate
    return None


def require_photos(listing: FolderListing, minimum: int = 2) -> None:
    """InputError unless the folder holds at least `minimum` photos (congealing needs 2)."""
    count = len(listing.images)
    if count >= max(1, minimum):
        return
    if count == 0:
        others = f" ({len(listing.skipped)} other entries skipped)" if listing.skipped else ""
        fix = "put the photos (.jpg, .png, .webp, ...) in it"
        if (listing.folder / "images").is_dir():
            fix = f"did you mean {listing.folder / 'images'}?"
        raise InputError(listing.folder, f"holds no photos{others}", fix)
    if count == 1:
        raise InputError(listing.images[0], f"is the only photo in {listing.folder}; congealing needs at least "
                                            f"{minimum}", "add more photos of objects of the same kind")
    raise InputError(listing.folder, f"holds {count} photos; at least {minimum} are needed",
                     "add more photos of objects of the same kind")
