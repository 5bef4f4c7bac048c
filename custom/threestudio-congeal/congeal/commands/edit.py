"""`congeal edit RUN`: pose-aware edits of every photo — a decal placed once, or a canonical-space texture.

    congeal edit out/run --decal sticker.png --photo img_000 --at 120,80 --scale 0.25
    congeal edit out/run --texture pattern.png [--texture-scale 0.3] [--strength 0.85]
    congeal edit out/run --texture checker                        # the built-in checker (the demo's edit)

A decal is centred at --at (original pixels of --photo, on the object), its longer side --scale × the object's
size in that photo; it is lifted to the canonical surface and composited into every photo where that surface is
visible (warped by each photo's map, hidden where occluded, only on the object, at the photo's resolution).
A texture is painted triplanar in canonical space on every photo's object pixels. Writes RUN/edits/<edit>/
(<photo>.png per photo, grid.png, edit.json) atomically and prints one JSON summary line.
"""
import argparse
import json
import math
from pathlib import Path
from typing import Tuple

from congeal.common.errors import InputError

NAME = "edit"
HELP = "pose-aware edits: a decal placed on one photo, or a canonical-space texture, on every photo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="output folder of `congeal register`")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--decal", help="decal image (PNG with transparency works best)")
    what.add_argument("--texture", help="texture image tiled in canonical space, or 'checker'")
    parser.add_argument("--photo", help="with --decal: the photo the decal is placed on")
    parser.add_argument("--at", help="with --decal: X,Y centre in that photo's original pixels")
    parser.add_argument("--scale", type=float, default=0.25,
                        help="with --decal: decal size / object size in that photo (default 0.25)")
    parser.add_argument("--texture-scale", type=float, default=None,
                        help="with --texture: canonical units per texture repeat (default: object extent / 3)")
    parser.add_argument("--strength", type=float, default=0.85,
                        help="with --texture: 0 = photo unchanged, 1 = texture only (default 0.85)")
    parser.add_argument("--name", default=None, help="edit folder name under RUN/edits/ (default: decal-<stem> / "
                                                     "texture-<stem>); a plain name, never a path")
    parser.add_argument("--tile", type=int, default=200, help="grid tile side in pixels (default 200)")
    parser.add_argument("--device", default="cpu", help="torch device for the correspondence look-ups")
    parser.add_argument("--include-flagged", action="store_true",
                        help="also use photos whose camera the run calls failed (poses.json status; left out by "
                             "default and listed in the printed summary)")


def parse_xy(text: str) -> Tuple[float, float]:
    """'X,Y' -> (x, y); InputError otherwise."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(None, f"--at {text!r} is not X,Y", "write the centre as --at 120,80 (original pixels)")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(None, f"--at {text!r} is not finite", "use finite pixel coordinates")
    return x, y


def run(args: argparse.Namespace) -> int:
    from congeal.apps.edits.edit_folder import edit_folder, edit_name, write_edit
    from congeal.run.registered_run import RegisteredRun

    registered = RegisteredRun(args.run, device=args.device, include_failed=getattr(args, "include_flagged", False))
    # the folder name is checked before any work: `--name ../../x` or an absolute path never leaves RUN/edits/
    name = args.name or edit_name("decal" if args.decal else "texture", args.decal or args.texture)
    edit_folder(registered, name)
    if args.decal:
        from congeal.apps.edits.decals import composite_decal, load_decal, place_decal

        if not args.photo or not args.at:
            raise InputError(None, "--decal needs --photo and --at",
                             "e.g. congeal edit RUN --decal sticker.png --photo img_000 --at 120,80")
        registered.require(args.photo)
        at = parse_xy(args.at)
        decal = load_decal(args.decal)
        placement = place_decal(registered, decal, args.photo, at, args.scale)
        edited = {name: composite_decal(registered, decal, placement, name) for name in registered.names}
        info = {"kind": "decal", "decal": str(Path(args.decal).resolve()), "photo": args.photo,
                "at": list(at), "scale": args.scale, "size_px": list(placement.size),
                "canonical_centre": list(placement.canonical_centre)}
    else:
        from congeal.apps.edits.textures import checker_texture, load_texture, texture_edit

        if args.photo or args.at:
            raise InputError(None, "--photo/--at place a decal", "drop them with --texture")
        texture = checker_texture() if args.texture == "checker" else load_texture(args.texture)
        edited = texture_edit(registered, texture, period=args.texture_scale, strength=args.strength)
        info = {"kind": "texture", "texture": args.texture if args.texture == "checker"
                else str(Path(args.texture).resolve()), "texture_scale": args.texture_scale,
                "strength": args.strength}
    paths = write_edit(registered, name, edited, info, tile=args.tile)
    folder = paths[-1].parent
    shown = sum(1 for _, coverage in edited.values() if float(coverage.max(initial=0.0)) > 0.01)
    print(json.dumps({"edit": str(folder), "grid": str(folder / "grid.png"), "photos": len(edited),
                      "photos_with_edit": shown, "left_out": registered.left_out}))
    return 0
