"""`congeal eval-navi`: NAVI pose error (relative-pose accuracy/AUC, absolute rotation and camera-centre error).

    congeal eval-navi --root navi_v1 --run-dir eval/navi                          # score OUT/<object>/ runs
    congeal eval-navi --root navi_v1 --run-dir eval/navi --canonical canonicals/  # register missing objects first
    congeal eval-navi --root navi_v1/3d_dollhouse_sink/wild_set --run-dir run/    # one scene, one run

`--run-dir OUT` holds one registration run per object, `OUT/<object_id>/` (or is itself the run when one scene is
evaluated). The report goes to OUT/eval_navi.json; docs/evaluation.md explains every field.
"""
import argparse
import json

from congeal.common.json_files import json_ready
from congeal.evaluation.runs import add_register_arguments



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="NAVI root, one object folder, or one scene folder")
    parser.add_argument("--run-dir", required=True,
                        help="folder of per-object registration runs OUT/<object_id>/ (or the run itself for one "
                             "scene); the report is written here")
    parser.add_argument("--object", action="append", default=None, help="object id (repeatable; default: all)")
    parser.add_argument("--scene", default="wild_set", help="scene folder per object (default: wild_set)")
    parser.add_argument("--inlier-deg", type=float, default=30.0,
                        help="inlier threshold of the robust frame alignment (default: 30)")
    parser.add_argument("--dinov2", default=None,
                        help="DINOv2 model id or local folder for registration with --canonical --features dinov2")
    parser.add_argument("--output", default=None, help="report path (default: RUN_DIR/eval_navi.json)")
    add_register_arguments(parser, "object", "objects")


def run(args: argparse.Namespace) -> int:
    from congeal.evaluation.navi_harness import evaluate_navi

    report = evaluate_navi(args.root, args.run_dir, objects=args.object, scene=args.scene, canonical=args.canonical,
                           inlier_deg=args.inlier_deg, preset=args.preset, features=args.features,
                           device=args.device, seed=args.seed, dinov2=args.dinov2, overrides=args.override,
                           output=args.output, progress=not args.quiet)
    print(f"{'object':<28} imgs  relR@15 relR@30 relT@30  AUC@30  absR@15 absR@30  absR med")
    for key, block in report["objects"].items():
        rel, ab = block["relative"], block["absolute_rotation"]
        print(f"{key:<28} {block['n_images']:4d}  {100 * rel['rotation_acc_15']:7.1f} "
              f"{100 * rel['rotation_acc_30']:7.1f} "
              f"{100 * rel['translation_acc_30']:7.1f} {100 * rel['auc_30']:7.1f}  {100 * ab['acc_15']:7.1f} "
              f"{100 * ab['acc_30']:7.1f}  {ab['error_deg']['median']:8.1f}")
    print(json.dumps(json_ready({"report": report["output"], "mean": report["mean"]})))
    return 0
