"""`congeal export RUN --format colmap|glb|mesh|nerfstudio|all --out DIR`: a run in the formats other tools read.

    congeal export out/run --format all --out out/export
    congeal export out/run --format colmap --out out/export --points 8000
    congeal export out/run --format mesh --out out/export --mesh-resolution 96 --level 0.4

COLMAP model (gsplat, 3DGS, COLMAP pipelines, nerfstudio's colmap parser), GLB scene (Blender, browsers), the
canonical mesh alone (OBJ/PLY/GLB), nerfstudio data with masks (`ns-train splatfacto`). Photos the run calls failed
are left out of every format and listed (printed and in DIR/export.json). Layout: `congeal.apps.export.run_export`.
"""
import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from congeal.apps.export.run_export import FORMATS

    parser.add_argument("run", help="output folder of `congeal register`")
    parser.add_argument("--format", dest="formats", action="append", choices=[*FORMATS, "all"], required=True,
                        help="what to write (repeat for several): colmap, glb, mesh, nerfstudio or all")
    parser.add_argument("--out", required=True, help="export folder (each format's place in it is replaced whole)")
    parser.add_argument("--points", type=int, default=4000,
                        help="surface points sampled for the COLMAP model / nerfstudio point cloud (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--no-photos", action="store_true", help="GLB scene: frusta without the photos on them")
    parser.add_argument("--photo-size", type=int, default=512, help="GLB scene: photos' longer side (default 512)")
    parser.add_argument("--mesh-resolution", type=int, default=128,
                        help="cells per side of the grid meshes are extracted from (default 128; at most the "
                             "canonical's)")
    parser.add_argument("--level", type=float, default=0.5,
                        help="mesh iso-level: the one-cell opacity at the surface, in (0, 1) (default 0.5)")
    parser.add_argument("--smoothing", type=int, default=1, help="box blurs before mesh extraction (default 1)")


def run(args: argparse.Namespace) -> int:
    from congeal.apps.export.run_export import export_run

    summary = export_run(args.run, args.formats, args.out, n_points=args.points, seed=args.seed,
                         photos=not args.no_photos, photo_size=args.photo_size,
                         mesh_resolution=args.mesh_resolution, level=args.level, smoothing=args.smoothing,
                         progress=True)
    for item in summary["excluded"]:
        print(f"congeal export: left out {item['name']}: {item['reason']}")
    if summary["undecided"]:
        print(f"congeal export: undecided (exported, check them): {', '.join(summary['undecided'])}")
    print(json.dumps({"out": args.out, "formats": sorted(summary["formats"]), "photos": len(summary["photos"]),
                      "excluded": [item["name"] for item in summary["excluded"]]}))
    for name in summary["formats"]:
        for command in summary["open"].get(name, []):
            print(f"  {name}: {command}")
    return 0
