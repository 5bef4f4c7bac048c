"""`congeal check DIR`: can this folder of photos be congealed? One row per photo, exit 2 when it cannot.

    congeal check photos/
    congeal check photos/ --mask white-background --preview sheet.png

Each row: file name, original size (W x H, after EXIF orientation), mask source, mask coverage, OK / WARN / ERROR and
the message (WARN: something looks wrong, e.g. a mask covering the whole frame; an OK row may still name a documented
fallback that was applied, e.g. an EXIF rotation or a grey mask thresholded at 0.5). Skipped files are listed with the reason. The collection is usable when it has at least 2 photos and
no ERROR row (exactly when `load_collection` with the same options succeeds). `--preview` writes a contact sheet
(atomically) with the masks overlaid, photos that failed shown as grey ERROR tiles; it is written even when the
collection is unusable, because that is when it helps most.
"""
import argparse
import sys
import unicodedata
from pathlib import Path
from typing import List, Optional, TextIO

import torch

from congeal.common.errors import InputError
from congeal.io.collection import MASK_MODES, LoadedImage, build_masker, load_image, validate_options
from congeal.io.decode import DEFAULT_MAX_PIXELS
from congeal.io.listing import list_images, require_photos

STATUS_COLOURS = {"OK": (120, 230, 120), "WARN": (255, 210, 80), "ERROR": (255, 90, 90)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="folder with the photos (mask files in DIR/masks/)")
    parser.add_argument("--mask", choices=MASK_MODES, default="auto",
                        help="mask source: auto = alpha channel, else mask file (default: auto)")
    parser.add_argument("--sam-model", default=None,
                        help="SAM model id or local folder for --mask sam (default: facebook/sam-vit-base)")
    parser.add_argument("--size", type=int, default=256, help="working crop size in pixels (default: 256)")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="space around the object, fraction of its longer side (default: 0.1)")
    parser.add_argument("--min-side", type=int, default=32,
                        help="smallest accepted shorter photo side in pixels (default: 32)")
    parser.add_argument("--max-pixels", type=float, default=DEFAULT_MAX_PIXELS,
                        help=f"largest accepted photo, width x height (default: {DEFAULT_MAX_PIXELS:.0f})")
    parser.add_argument("--device", default="cpu", help="device for SAM (default: cpu)")
    parser.add_argument("--preview", type=Path, default=None, metavar="OUT.png",
                        help="write a contact sheet with the masks overlaid")
    parser.add_argument("--tile", type=int, default=160, help="contact sheet tile size (default: 160)")


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Print the report; return 0 when the collection is usable, 2 when it is not."""
    out = out or sys.stdout
    validate_options(args.size, args.mask, args.margin, args.min_side, args.max_pixels)
    listing = list_images(args.folder)
    masker = build_masker(args.mask, args.sam_model, args.device)
    names = [p.name for p in listing.images]
    width = min(max([len("name")] + [_display_width(n) for n in names]), 40)
    print(f"congeal check {listing.folder}  ({len(names)} photos, mask={args.mask}, size={args.size})", file=out)
    header = f"{'name':<{width}}  {'size':>11}  {'mask':<20}  {'coverage':>8}  {'status':<6}  message"
    print(header, file=out)
    loaded: List[Optional[LoadedImage]] = []
    statuses: List[str] = []
    for path in listing.images:
        try:
            item = load_image(path, size=args.size, mask=args.mask, margin=args.margin, min_side=args.min_side,
                              max_pixels=args.max_pixels, sam_masker=masker)
        except InputError as error:
            loaded.append(None)
            statuses.append("ERROR")
            message = error.problem + (f". Fix: {error.fix}" if error.fix else "")
            print(_row(path.name, width, "-", "-", "-", "ERROR", message), file=out)
            continue
        status = "WARN" if item.warnings else "OK"
        loaded.append(item)
        statuses.append(status)
        height, width_px = item.original_size
        print(_row(path.name, width, f"{width_px}x{height}", _source(item.mask_source, listing.folder),
                   f"{100 * item.coverage:.1f}%", status, "; ".join(item.warnings + item.notes)), file=out)
    if listing.skipped:
        print(f"skipped {len(listing.skipped)}:", file=out)
        for path, reason in listing.skipped:
            print(f"  {path.name}  ({reason})", file=out)

    problems = []
    try:
        require_photos(listing)
    except InputError as error:
        problems.append(str(error))
    errors = statuses.count("ERROR")
    if errors:
        problems.append(f"{errors} photo(s) with ERROR: fix or remove them")
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("OK", "WARN", "ERROR"))
    if args.preview is not None and listing.images:
        _write_preview(args.preview, listing.images, loaded, statuses, args.size, args.tile)
        print(f"preview: {args.preview}", file=out)
    if problems:
        print(f"result: {counts} -> UNUSABLE: " + "; ".join(problems), file=out)
        return 2
    print(f"result: {counts} -> usable", file=out)
    return 0


def _display_width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _row(name: str, width: int, size: str, source: str, coverage: str, status: str, message: str) -> str:
    while _display_width(name) > width:
        name = name[:-4] + "..."
    name += " " * (width - _display_width(name))
    return f"{name}  {size:>11}  {source:<20}  {coverage:>8}  {status:<6}  {message}".rstrip()


def _source(source: str, folder: Path) -> str:
    """Mask source with file paths shown relative to the folder."""
    if source.startswith("file:"):
        path = Path(source[len("file:"):])
        try:
            return "file:" + str(path.relative_to(folder))
        except ValueError:
            return source
    return source


def _write_preview(path: Path, images: List[Path], loaded: List[Optional[LoadedImage]], statuses: List[str],
                   size: int, tile: int) -> None:
    from congeal.viz.contact_sheet import save_contact_sheet

    grey = torch.full((3, size, size), 0.35)
    tiles = torch.stack([item.image if item is not None else grey for item in loaded])
    masks = torch.stack([item.mask if item is not None else torch.ones(1, size, size) for item in loaded])
    captions = [f"{p.name} {s}" if s != "OK" else p.name for p, s in zip(images, statuses)]
    colours = [STATUS_COLOURS[s] for s in statuses]
    save_contact_sheet(path, tiles, masks, captions, tile=tile, caption_colours=colours)
