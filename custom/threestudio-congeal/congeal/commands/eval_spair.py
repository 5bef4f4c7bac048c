"""`congeal eval-spair`: SPair-71k keypoint transfer, PCK@0.1 of the target bbox (per-point and per-image).

    congeal eval-spair --root SPair-71k --run-dir eval/spair --canonical canonicals/      # register, then score
    congeal eval-spair --root SPair-71k --run-dir eval/spair --category cat               # score existing runs
    congeal eval-spair --root SPair-71k --method dinov2-nn --dinov2 facebook/dinov2-giant --run-dir eval/nn

`--run-dir OUT` holds one registration run per category, `OUT/<category>/` (what `congeal register --out` writes
for that category's test images). With `--canonical`, categories without a run are registered first.
The report goes to OUT/eval_spair.json (per-pair details beside it); docs/evaluation.md explains every field.
"""
import argparse
import json

from congeal.common.json_files import json_ready
from congeal.evaluation.runs import add_register_arguments



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="SPair-71k folder (JPEGImages/, PairAnnotation/, Layout/, ...)")
    parser.add_argument("--run-dir", default=None,
                        help="folder of per-category registration runs OUT/<category>/ (required for --method "
                             "congeal); the report is written here")
    parser.add_argument("--category", action="append", default=None,
                        help="evaluate only this category (repeatable; default: all)")
    parser.add_argument("--split", default="test", choices=["test", "val", "trn"], help="pair list (default: test)")
    parser.add_argument("--method", default="congeal", choices=["congeal", "dinov2-nn"],
                        help="congeal: transfer through each category's canonical space; dinov2-nn: pairwise "
                             "DINOv2 nearest neighbour baseline")
    parser.add_argument("--identity-warp", action="store_true",
                        help="ablation: transfer with the poses alone (coordinate maps switched off)")
    parser.add_argument("--dinov2", default=None,
                        help="DINOv2 model id or local folder: the model of --method dinov2-nn, and of registration "
                             "with --canonical --features dinov2")
    parser.add_argument("--dinov2-size", type=int, default=448,
                        help="square input side for dinov2-nn, a multiple of 14 (default: 448)")
    parser.add_argument("--alpha", type=float, default=0.1, help="PCK factor of the target bbox's longer side")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="only the first N pairs per category (smoke test; the report marks it incomplete)")
    parser.add_argument("--output", default=None, help="report path (default: RUN_DIR/eval_spair.json)")
    add_register_arguments(parser, "category", "categories")


def run(args: argparse.Namespace) -> int:
    from congeal.evaluation.spair_harness import evaluate_spair

    report = evaluate_spair(
        args.root, out=args.run_dir, categories=args.category, split=args.split, method=args.method,
        canonical=args.canonical, dinov2=args.dinov2, dinov2_size=args.dinov2_size, alpha=args.alpha,
        preset=args.preset, features=args.features, identity_warp=args.identity_warp, device=args.device,
        seed=args.seed, max_pairs=args.max_pairs, overrides=args.override, output=args.output, progress=not args.quiet,
    )
    width = max([len("category")] + [len(c) for c in report["categories"]])
    print(f"{'category':<{width}}  pairs  points  PCK@{args.alpha:g}/point  PCK@{args.alpha:g}/image")
    for cat, block in report["categories"].items():
        print(f"{cat:<{width}}  {block['n_pairs']:5d}  {block['n_points']:6d}  "
              f"{100 * block['pck_per_point']:12.1f}  {100 * block['pck_per_image']:12.1f}")
    mean = report["mean"]
    print(f"{'mean':<{width}}  {'':5}  {'':6}  {100 * mean['pck_per_point']:12.1f}  "
          f"{100 * mean['pck_per_image']:12.1f}")
    print(json.dumps(json_ready({"report": report["output"], "method": report["method"], "mean": mean})))
    return 0
