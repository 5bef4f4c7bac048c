"""`congeal synth OUT`: write a synthetic collection with exact ground truth.

    congeal synth synth/ --mode same --images 8 --seed 0
    congeal synth synth-cross/ --mode cross --images 12 --size 256

Writes OUT/canonical.safetensors (the baked mean shape), OUT/images/img_000.png … (RGBA, alpha = object mask) and
OUT/ground_truth.json (every photo's c2w, fovy_deg, azimuth/elevation/distance in threestudio's convention, and
named 3D keypoints with their 2D projections and visibility). See `congeal.synthetic.generator`.
"""
import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Optional

from congeal.common.errors import InputError



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write (created if missing)")
    parser.add_argument("--mode", choices=("same", "cross"), default="same",
                        help="same: every photo shows the canonical; cross: every photo a deformed instance "
                             "(default: same)")
    parser.add_argument("--images", type=int, default=8, help="number of photos (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give equal files (default: 0)")
    parser.add_argument("--size", type=int, default=192, help="photo side in pixels (default: 192)")
    parser.add_argument("--resolution", type=int, default=64,
                        help="grid resolution of the baked canonical (default: 64)")


def run(args: argparse.Namespace, out: Optional[io.TextIOBase] = None) -> int:
    """Write the collection; the summary goes to `out` (default stdout)."""
    out = sys.stdout if out is None else out
    from congeal.synthetic.generator import make_synthetic_collection

    if args.out.exists() and not args.out.is_dir():
        raise InputError(args.out, "exists and is not a folder", "pass a new or existing folder")
    start = time.perf_counter()
    folder = make_synthetic_collection(args.out, mode=args.mode, n_images=args.images, seed=args.seed,
                                       image_size=args.size, resolution=args.resolution)
    seconds = time.perf_counter() - start
    truth = json.loads((folder / "ground_truth.json").read_text())
    visible = sum(kp["visible"] for image in truth["images"] for kp in image["keypoints"].values())
    total = sum(len(image["keypoints"]) for image in truth["images"])
    print(f"wrote {folder}/ in {seconds:.1f} s ({args.mode}-instance, seed {args.seed})", file=out)
    print(f"  canonical.safetensors   baked mean shape, {args.resolution}^3 grid", file=out)
    print(f"  images/                 {len(truth['images'])} RGBA photos, {args.size}x{args.size} "
          f"(img_000.png … img_{len(truth['images']) - 1:03d}.png)", file=out)
    print(f"  ground_truth.json       cameras (threestudio convention) and {len(truth['keypoint_names'])} "
          f"keypoints per photo ({visible}/{total} visible)", file=out)
    return 0
