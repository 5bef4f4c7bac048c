"""`congeal demo`: the main job on a bundled example, end to end on CPU (what `make demo` runs).

    congeal demo --out demo-out

The example collection is made by the project itself (`congeal synth`: a procedural, asymmetric, part-coloured
shape photographed at random poses), so the demo needs no download. Steps: synthesise → check the collection
(contact sheet) → register it (fast preset, colour features) → score the run against the ground truth → label the
first photo's keypoints once and propagate them, place a sticker on one photo and paint a canonical checker
(`congeal.apps.walkthrough`) → say how to open the 3D viewer → export the run as one GLB scene (the canonical
mesh, every camera and photo; `congeal export`) and print the command that opens it in Blender.
"""
import argparse
import json
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    parser.add_argument("--mode", choices=["same", "cross"], default="same",
                        help="same-instance or cross-instance synthetic collection (default: same)")
    parser.add_argument("--images", type=int, default=8, help="number of photos (default: 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from congeal.evaluation.synthetic_harness import evaluate_synthetic
    from congeal.io.collection import load_collection
    from congeal.run.pipeline import register_collection
    from congeal.synthetic.generator import make_synthetic_collection
    from congeal.viz.contact_sheet import write_contact_sheet

    out = Path(args.out)
    started = time.perf_counter()
    collection_dir = out / "collection"
    print(f"[1/6] synthesising {args.images} photos ({args.mode}-instance) -> {collection_dir}")
    make_synthetic_collection(collection_dir, mode=args.mode, n_images=args.images, seed=args.seed)

    print("[2/6] checking the collection")
    collection = load_collection(collection_dir / "images", mask="auto")
    preview = out / "collection-preview.png"
    write_contact_sheet(collection, preview)
    print(f"      {len(collection)} images usable; contact sheet: {preview}")

    run_dir = out / "run"
    print(f"[3/6] registering (fast preset, rgb features, {args.device}) -> {run_dir}")
    # from the photo files, as `congeal register` reads them (the collection loaded above is the contact sheet's, at
    # 256 px: resampled again to the working size it gave other numbers than the command a user runs next)
    register_collection(collection_dir / "canonical.safetensors", collection_dir / "images", run_dir, preset="fast",
                        features="rgb", device=args.device, seed=args.seed, progress=True)

    print("[4/6] scoring against the ground truth")
    report = evaluate_synthetic(run_dir, collection_dir / "ground_truth.json")
    summary = {key: report[key] for key in ("rotation_error_deg", "keypoints") if key in report}
    print(json.dumps(summary, indent=2))
    print("[5/6] label once, edit once: the first photo's keypoints propagated, a sticker, a canonical checker")
    from congeal.apps.walkthrough import run_walkthrough
    from congeal.evaluation.synthetic_harness import load_ground_truth

    _, truth = load_ground_truth(collection_dir)
    first = next(iter(truth))
    points = {k: kp["xy"] for k, kp in truth[first]["keypoints"].items() if kp["visible"]}
    shown = run_walkthrough(run_dir, points, first)
    print(f"\nDone in {time.perf_counter() - started:.0f} s. Look at:")
    pictures = run_dir / "pictures"
    for path in sorted(pictures.glob("*.png")):  # the grids: overlay, search scores, NOCS maps
        print(f"  {path}")
    for folder in sorted(p for p in pictures.iterdir() if p.is_dir()):
        print(f"  {folder}/  ({len(list(folder.glob('*.png')))} pictures)")
    print(f"  {run_dir / 'poses.json'}\n  {run_dir / 'transforms.json'}\n  {run_dir / 'maps'}/")
    print(f"  {shown['labels_grid']}   labels of {first} propagated to every photo ({shown['labels_json'].name}, "
          f"{shown['coco_json'].name} beside it; input: {shown['labels_file']})")
    print(f"  {shown['decal_grid']}   a sticker placed on {first}, carried onto every photo")
    print(f"  {shown['texture_grid']}   a checker painted in canonical space on every photo")
    print("\nSee the cameras around the shape in 3D (pip install 'threestudio-congeal[viewer]'):")
    print(f"  congeal view {run_dir}")
    print(f"  congeal view {run_dir} --export {out / 'run.html'}   # one file to share, opens without Python")

    from congeal.apps.export.run_export import export_run

    export_dir = out / "export"
    print(f"\n[6/6] exporting the run as a GLB scene (shape, cameras, photos) -> {export_dir / 'scene.glb'}")
    exported = export_run(run_dir, ["glb"], export_dir)
    for item in exported["excluded"]:
        print(f"      left out {item['name']}: {item['reason']}")
    print("Open it in Blender (or drop it on a glTF viewer in a browser):")
    for command in exported["open"]["glb"]:
        print(f"  {command}")
    print(f"Other tools (COLMAP/gsplat, nerfstudio, meshes): congeal export {run_dir} --format all --out {export_dir}")
    return 0
