"""`congeal register`: estimate every photo's camera (and coordinate map) against a canonical shape.

    congeal register --canonical canonical.safetensors --images photos/ --out run/ --preset fast --features rgb
    congeal register --run run/ --add more_photos/          # register new photos into a finished run

Prints one JSON summary line on stdout when done (progress bars go to stderr). Files: run/poses.json,
run/transforms.json, run/maps/*.npz, run/pictures/ (overlay.png, search-scores.png, ...).
"""
import argparse
import json
import sys

from congeal.common.device import resolve_device
from congeal.common.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--canonical", help="canonical.safetensors (baked canonical shape)")
    parser.add_argument("--images", help="folder of photos (masks: alpha, masks/<stem>.png or <stem>_mask.png)")
    parser.add_argument("--out", help="run folder to write")
    parser.add_argument("--run", help="with --add: a finished run folder to extend")
    parser.add_argument("--add", metavar="NEWDIR", help="with --run: folder of new photos to register into the run")
    parser.add_argument("--preset", choices=["paper", "fast"], default="paper",
                        help="paper: DINOv2 features, 768 candidates, 1000 refine / 4000 mapping steps (GPU); "
                             "fast: colour features and short schedules (CPU, synthetic data). Default: paper")
    parser.add_argument("--features", choices=["rgb", "dinov2"], default=None,
                        help="feature extractor (default: the preset's: paper -> dinov2, fast -> rgb)")
    parser.add_argument("--dinov2", metavar="ID_OR_PATH", default=None,
                        help="DINOv2 model id or local save_pretrained folder (default facebook/dinov2-giant)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--mask", default=None,
                        choices=["auto", "alpha", "file", "white-background", "sam"],
                        help="where the photos' object masks come from (default auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set refine.steps=300 --set search.top_k=2 (repeatable)")
    known = parser.add_mutually_exclusive_group()
    known.add_argument("--fovy", type=float, metavar="DEG", default=None,
                       help="every photo's vertical field of view, when you know the camera (else EXIF, else estimated)")
    known.add_argument("--focal", type=float, metavar="PX", default=None,
                       help="every photo's focal length in pixels of the photos (else EXIF, else estimated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from congeal.run.pipeline import add_images, register_collection

    device = resolve_device(args.device)
    if args.add or args.run:
        if not (args.add and args.run):
            raise InputError(None, "--add and --run go together", "use: congeal register --run OUT --add NEWDIR")
        if args.canonical or args.images or args.out or args.overrides:
            raise InputError(None, "--run/--add reuse the run's canonical and settings",
                             "drop --canonical/--images/--out/--set when adding photos")
        result = add_images(args.run, args.add, device=device, progress=not args.quiet)
    else:
        missing = [flag for flag, value in (("--canonical", args.canonical), ("--images", args.images),
                                            ("--out", args.out)) if not value]
        if missing:
            raise InputError(None, f"missing {' '.join(missing)}",
                             "use: congeal register --canonical canonical.safetensors --images DIR --out OUT")
        features = args.features or ("dinov2" if args.dinov2 else None)  # --dinov2 alone implies dinov2 features
        if args.fovy is not None:
            args.overrides = [f"intrinsics.fovy_deg={args.fovy}"] + list(args.overrides)
        if args.focal is not None:
            args.overrides = [f"intrinsics.focal_px={args.focal}"] + list(args.overrides)
        result = register_collection(args.canonical, args.images, args.out, preset=args.preset,
                                     features=features, device=device, seed=args.seed,
                                     overrides=args.overrides or None, progress=not args.quiet, mask=args.mask,
                                     dinov2=args.dinov2)
    for line in flagged_lines(result.summary):  # for the person at the terminal; the JSON line has the same facts
        print(line, file=sys.stderr)
    print(json.dumps(result.summary))
    return 0


def flagged_lines(summary: dict) -> list:
    """Human-readable lines naming the photos the run flagged and why (none when every camera is trusted)."""
    flagged = summary.get("flagged") or {}
    if not flagged:
        return []
    failed = [n for n, f in flagged.items() if f["status"] == "failed"]
    lines = [f"{len(flagged)} of {summary['images']} photos flagged ({len(failed)} failed: left out of "
             "transforms.json, propagate, edit and exports; undecided ones are kept; see pictures/overlay.png):"]
    lines += [f"  {name}: {f['status']} - {f['reason']}" for name, f in flagged.items()]
    return lines
