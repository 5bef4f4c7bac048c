"""`congeal eval-synthetic`: score a registration run against a synthetic collection's ground truth.

    congeal eval-synthetic --run out/run --truth synth/ --out report.json
    congeal eval-synthetic --run out/run --truth synth/ground_truth.json --no-keypoints

Prints a JSON summary: rotation error (median, p95, mean, acc@5/15/30°), FoV error, and keypoint transfer PCK@0.05
and PCK@0.1 through the canonical, with the coordinate maps and with the identity warp (the maps' gain). `--out`
writes the full report with per-image rows.
"""
import argparse
import json



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="output folder of `congeal register`")
    parser.add_argument("--truth", required=True, help="synthetic collection folder (or its ground_truth.json)")
    parser.add_argument("--out", default=None, help="write the full JSON report here")
    parser.add_argument("--no-keypoints", action="store_true", help="skip keypoint transfer (poses and FoV only)")
    parser.add_argument("--align", choices=["none", "rotation"], default="none",
                        help="fit one global rotation before scoring (for canonicals in another frame)")


def run(args: argparse.Namespace) -> int:
    from congeal.common.atomic import write_json
    from congeal.evaluation.synthetic_harness import evaluate_synthetic

    report = evaluate_synthetic(args.run, args.truth, keypoints=not args.no_keypoints, align=args.align)
    if args.out:
        write_json(args.out, report)
    summary = {k: v for k, v in report.items() if k not in ("per_image",)}
    print(json.dumps(summary, indent=2))
    return 0
