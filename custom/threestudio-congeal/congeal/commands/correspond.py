"""`congeal correspond`: transfer points between two registered photos through the canonical space.

    congeal correspond --run out/run --src cat_01 --trg cat_07 --points "120,80;64.5,200"
    congeal correspond --run out/run --src cat_01 --trg cat_07 --dense flow.npz

Points are original-pixel (x, y) of the source photo (pixel (row i, col j) has its centre at (j+0.5, i+0.5)); the
answer is printed as JSON: one [x, y] per point in the target photo, or null where the point has no
correspondence (outside the object, occluded in the target, or beyond the distance thresholds).
`--dense` writes an npz with `flow` float32 [H,W,2] (target − source, NaN where invalid), `target` [H,W,2] and
`valid` bool [H,W] on the source's original pixel grid.
"""
import argparse
import json
import math
from typing import List, Tuple

import numpy as np

from congeal.common.errors import InputError



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="output folder of `congeal register`")
    parser.add_argument("--src", required=True, help="source image name (file stem)")
    parser.add_argument("--trg", required=True, help="target image name (file stem)")
    parser.add_argument("--points", default=None, help='source points "x,y;x,y" in original pixels')
    parser.add_argument("--dense", default=None, metavar="OUT.npz", help="write a dense flow field to this npz")
    parser.add_argument("--identity-warp", action="store_true",
                        help="ignore the coordinate maps (pose-only baseline)")
    parser.add_argument("--device", default="cpu")


def parse_points(text: str) -> List[Tuple[float, float]]:
    """'x,y;x,y' -> [(x, y), ...]. Raises InputError on anything else."""
    points = []
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        fields = [f.strip() for f in item.split(",")]
        try:
            x, y = (float(f) for f in fields)
        except ValueError:
            raise InputError(None, f"cannot read point {item!r}", 'write points as "x,y;x,y", e.g. "120,80;64.5,200"')
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(None, f"point {item!r} is not finite", "use finite pixel coordinates")
        points.append((x, y))
    if not points:
        raise InputError(None, "no points given", 'pass --points "x,y;x,y"')
    return points


def run(args: argparse.Namespace) -> int:
    from congeal.common.atomic import write_npz
    from congeal.run.correspondence import Correspondence

    if args.points is None and args.dense is None:
        raise InputError(None, "nothing to do", "pass --points and/or --dense")
    corr = Correspondence(args.run, identity_warp=args.identity_warp, device=args.device)
    names = corr.names
    for name in (args.src, args.trg):
        if name not in names:
            raise InputError(args.run, f"has no registered image named {name!r}",
                             f"use one of: {', '.join(names[:20])}")
    result = {"src": args.src, "trg": args.trg, "identity_warp": bool(args.identity_warp)}
    if args.points is not None:
        pts = parse_points(args.points)
        out, valid = corr.transfer(args.src, args.trg, np.asarray(pts, dtype=np.float32))
        result["points"] = [[float(x), float(y)] if ok else None for (x, y), ok in zip(out.tolist(), valid.tolist())]
        result["valid"] = [bool(v) for v in valid.tolist()]
    if args.dense is not None:
        flow, valid = corr.dense(args.src, args.trg)
        h, w = valid.shape
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        target = (flow + np.stack([xs, ys], -1)).astype(np.float32)
        write_npz(args.dense, flow=flow, target=target, valid=valid)
        result["dense"] = str(args.dense)
        result["dense_valid_pixels"] = int(valid.sum())
    print(json.dumps(result))
    return 0
