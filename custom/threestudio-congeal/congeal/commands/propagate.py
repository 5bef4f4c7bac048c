"""`congeal propagate RUN --labels labels.json`: label some photos once, get the labels on every photo.

    congeal propagate out/run --labels labels.json                 # -> out/run/labels/labels/
    congeal propagate out/run --labels labels.json --out my-labels/

labels.json (original pixel coordinates; see congeal.apps.labels.label_file):
    {"photos": {"img_000": {"points": {"snout": [131.2, 79.4]},
                            "polygons": {"saddle": [[100, 90], [130, 92], [128, 110]]},
                            "masks": {"body": "masks/img_000_body.png"}}}}
Writes labels.json (format congeal-propagated-labels-v1: per photo and label the position, a visibility flag and a
confidence), coco.json (COCO keypoints: v = 2 visible, 1 hidden, 0 none; regions as RLE), grid.png (every photo
with its labels) and masks/<photo>/<region>.png. Prints one JSON summary line.
"""
import argparse
import json
from pathlib import Path

NAME = "propagate"
HELP = "carry labels (points, polygons, masks) of some photos to every registered photo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="output folder of `congeal register`")
    parser.add_argument("--labels", required=True,
                        help='label file: {"photos": {"<photo>": {"points": {"<name>": [x, y]}, "polygons": {...}, '
                             '"masks": {...}}}} in original pixels')
    parser.add_argument("--out", default=None,
                        help="output folder (default: RUN/labels/<labels file stem, made file-safe>/)")
    parser.add_argument("--tile", type=int, default=200, help="grid tile side in pixels (default 200)")
    parser.add_argument("--device", default="cpu", help="torch device for the correspondence look-ups")
    parser.add_argument("--include-flagged", action="store_true",
                        help="also use photos whose camera the run calls failed (poses.json status; left out by "
                             "default and listed in the printed summary)")


def default_out(registered, labels: str) -> Path:
    """RUN/labels/<safe labels-file stem>/: a file named `...json` (stem `..`) never makes it the run folder."""
    from congeal.common.safe_names import ensure_inside, safe_file_name

    out = registered.folder.labels_dir / safe_file_name(Path(labels).stem)
    return ensure_inside(registered.root, out, "the default output folder")


def run(args: argparse.Namespace) -> int:
    from congeal.apps.labels.label_file import read_labels
    from congeal.apps.labels.propagation import propagate_labels, write_propagation
    from congeal.run.registered_run import RegisteredRun

    registered = RegisteredRun(args.run, device=args.device, include_failed=getattr(args, "include_flagged", False))
    labels = read_labels(args.labels, registered)
    result = propagate_labels(registered, labels)
    out = Path(args.out) if args.out else default_out(registered, args.labels)
    write_propagation(result, registered, out, tile=args.tile)
    photos = result.doc["photos"]
    points = [p for entry in photos.values() for p in entry["points"].values() if not p["given"]]
    summary = {
        "out": str(out), "labels": str(out / "labels.json"), "coco": str(out / "coco.json"),
        "grid": str(out / "grid.png"), "photos": len(photos), "sources": labels.sources,
        "points_propagated": len(points), "points_placed": sum(p["xy"] is not None for p in points),
        "points_visible": sum(bool(p["visible"]) for p in points),
        "regions": len(labels.region_names),
        "left_out": registered.left_out,  # {photo: why}: cameras the run calls failed (--include-flagged uses them)
    }
    print(json.dumps(summary))
    return 0
