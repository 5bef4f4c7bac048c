"""`congeal export`'s work: the formats by name, one staged folder each, the summary and the commands that open them.

    summary = export_run("out/run", ["all"], "out/export")
    summary["formats"]["colmap"]["folder"]     # out/export/colmap
    summary["excluded"]                        # [{"name", "reason"}]: photos the run calls failed, never exported
    summary["open"]["glb"]                     # the command that opens the scene

Layout of `--out DIR` (every format in its own place, so formats can be exported one at a time into one DIR):
    DIR/colmap/        sparse/0/{cameras,images,points3D}.{bin,txt}, images/, masks/   (`colmap_model`)
    DIR/nerfstudio/    transforms.json, images/, masks/, points.ply                      (`nerfstudio_data`)
    DIR/scene.glb      canonical mesh + cameras, frusta, photos                          (`gltf_scene`)
    DIR/mesh/          canonical.{obj,ply,glb,json}                                      (`mesh_files`)
    DIR/export.json    what was exported from which run, what was left out and why, how to open each format

Folders are staged and swapped in whole (`export_folder`), files written atomically: an interrupted export leaves
the previous export of that format as it was, never half a new one. The points of the COLMAP model and the
nerfstudio point cloud are one sample (same seed, same points) when both are exported together.
"""
import json
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from congeal.apps.export.export_folder import ensure_folder, staged_folder
from congeal.apps.export.photo_files import photo_mask, select_photos
from congeal.common.atomic import write_json
from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.run.registered_run import RegisteredRun

__all__ = ["FORMATS", "EXPORT_FORMAT", "expand_formats", "open_commands", "export_run"]

FORMATS = ("colmap", "glb", "mesh", "nerfstudio")
EXPORT_FORMAT = "congeal-export-v1"
_PLACES = {"colmap": "colmap", "glb": "scene.glb", "mesh": "mesh", "nerfstudio": "nerfstudio"}


def expand_formats(formats: Sequence[str]) -> List[str]:
    """Format names (and "all") -> the formats in FORMATS order; InputError for an unknown one."""
    wanted = set()
    for name in formats:
        if name == "all":
            wanted.update(FORMATS)
        elif name in FORMATS:
            wanted.add(name)
        else:
            raise InputError(None, f"unknown export format {name!r}", f"use one of: {', '.join(FORMATS)}, all")
    if not wanted:
        raise InputError(None, "no export format given", f"use --format with one of: {', '.join(FORMATS)}, all")
    return [f for f in FORMATS if f in wanted]


def open_commands(out: PathLike) -> Dict[str, List[str]]:
    """For each format, the commands that open it (shell-quoted paths)."""
    out = Path(out)
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    colmap, nerfstudio, glb = out / "colmap", out / "nerfstudio", out / "scene.glb"
    # json.dumps: a double-quoted Python string literal, so shlex.quote wraps it in plain single quotes
    import_glb = f"import bpy; bpy.ops.import_scene.gltf(filepath={json.dumps(str(glb))})"
    import_obj = f"import bpy; bpy.ops.wm.obj_import(filepath={json.dumps(str(out / 'mesh' / 'canonical.obj'))})"
    return {
        "colmap": [
            f"ns-train splatfacto --data {q(colmap)} colmap --colmap-path sparse/0 --masks-path masks",
            f"python examples/simple_trainer.py default --data_dir {q(colmap)} --data_factor 1 "
            f"--result_dir results/congeal   # in a gsplat checkout",
            f"colmap gui --import_path {q(colmap / 'sparse' / '0')} --image_path {q(colmap / 'images')}",
        ],
        "nerfstudio": [f"ns-train splatfacto --data {q(nerfstudio)}", f"ns-train nerfacto --data {q(nerfstudio)}"],
        "glb": [f"blender --python-expr {q(import_glb)}",
                f"# a browser: drop {q(glb)} on https://gltf-viewer.donmccurdy.com or https://modelviewer.dev/editor"],
        "mesh": [f"blender --python-expr {q(import_obj)}", f"meshlab {q(out / 'mesh' / 'canonical.ply')}"],
    }


def _previous_summary(path: Path, run_root: Path) -> Dict[str, Any]:
    """The formats an earlier export of the same run into the same folder wrote (kept in export.json)."""
    if not path.is_file():
        return {}
    try:
        doc = read_json(path, fix="remove it")
    except InputError:
        return {}
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT or doc.get("run") != str(run_root):
        return {}
    formats = doc.get("formats")
    return formats if isinstance(formats, dict) else {}


def export_run(run_dir: PathLike, formats: Sequence[str], out: PathLike, n_points: int = 4000, seed: int = 0,
               photos: bool = True, photo_size: int = 512, mesh_resolution: int = 128, level: float = 0.5,
               smoothing: int = 1, progress: bool = False) -> Dict[str, Any]:
    """Export a finished run in the given formats into `out`.

    Args:
        run_dir: the run folder (`congeal register --out`).
        formats: names from FORMATS, or "all".
        out: the export folder (created; each format's place in it replaced whole).
        n_points: surface points sampled for the COLMAP model / nerfstudio point cloud (those seen are kept).
        seed: sampling seed.
        photos: put the photos on the GLB scene's frusta.
        photo_size: the GLB photos' longer side, at most.
        mesh_resolution: cells per side of the grid meshes are extracted from (mesh and GLB scene).
        level: the mesh's iso-level (one-cell opacity).
        smoothing: box blurs of the opacity before the mesh is extracted.
        progress: print a line per format.
    Returns:
        the summary written to `out/export.json`.
    Raises:
        InputError: not a finished run (or one from another version), a photo gone, bad options, or `out` cannot
            be written (`WriteError`).
    """
    from congeal.apps.export.colmap_model import export_colmap
    from congeal.apps.export.gltf_scene import export_scene
    from congeal.apps.export.mesh_files import export_mesh
    from congeal.apps.export.nerfstudio_data import export_nerfstudio
    from congeal.apps.export.surface_points import surface_points

    names = expand_formats(formats)
    if n_points < 1:
        raise InputError(None, f"--points {n_points} is not positive", "use e.g. 4000")
    run = RegisteredRun(run_dir)
    run.canonical()  # a run without its canonical fails here, before anything is written
    out = ensure_folder(out)
    selection = select_photos(run)
    masks: Optional[list] = None
    points = None
    if {"colmap", "nerfstudio"} & set(names):
        masks = [photo_mask(run, photo) for photo in selection.photos]
        points = surface_points(run, selection.photos, masks, n_points=n_points, seed=seed,
                                mesh_resolution=mesh_resolution)
    written: Dict[str, Any] = {}
    for name in names:
        if progress:
            print(f"congeal export: {name} -> {out / _PLACES[name]}", flush=True)
        if name == "glb":
            info = export_scene(run, out / "scene.glb", photos=photos, photo_size=photo_size,
                                mesh_resolution=mesh_resolution)
        else:
            with staged_folder(out / _PLACES[name]) as stage:
                if name == "colmap":
                    info = export_colmap(run, stage, selection, masks, points)
                elif name == "nerfstudio":
                    info = export_nerfstudio(run, stage, selection, masks, points)
                else:
                    info = export_mesh(run, stage, resolution=mesh_resolution, level=level, smoothing=smoothing)
        for key in ("photos", "excluded", "undecided"):  # said once, at the top of the summary
            info.pop(key, None)
        written[name] = {"path": str(out / _PLACES[name]), **info}
    path = out / "export.json"
    every = {**_previous_summary(path, run.root), **written}
    commands = open_commands(out)
    summary = {"format": EXPORT_FORMAT, "run": str(run.root), "formats": every, **selection.summary(),
               "open": {name: commands[name] for name in every if name in commands}}
    write_json(path, summary)
    return summary
