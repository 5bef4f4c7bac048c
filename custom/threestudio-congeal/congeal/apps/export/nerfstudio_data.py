"""The registered collection as a nerfstudio dataset: photos, masks, a point cloud and transforms.json.

    info = export_nerfstudio(run, "out/export/nerfstudio")
    # ns-train splatfacto --data out/export/nerfstudio          (or nerfacto; masks keep training on the object)

Layout:
    transforms.json    `congeal.run.outputs.transforms_document`: per-frame intrinsics, `transform_matrix` = c2w
                       (nerfstudio keeps threestudio's OpenGL camera axes), `mask_path` on every frame, the photos
                       the run calls failed in `excluded_frames` with the reason (no frame: nerfstudio would train
                       on them), and `ply_file_path` (splatfacto starts its Gaussians from these points)
    images/<photo>     the photos, upright (`congeal.apps.export.photo_files.write_photo`)
    masks/<stem>.png   single-channel masks of the photo's size, 255 = object (nerfstudio ignores 0 pixels)
    points.ply         points on the canonical surface with the photos' colours (`surface_points`)
Every path in transforms.json is relative to its folder, so the folder can be moved or copied whole.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from congeal.apps.export.mesh_files import ply_bytes
from congeal.apps.export.photo_files import ExportSelection, photo_mask, select_photos, write_mask, write_photo
from congeal.apps.export.surface_points import SurfacePoints, surface_points
from congeal.common.atomic import write_bytes, write_json
from congeal.common.paths import PathLike
from congeal.run.outputs import is_failed, transforms_document
from congeal.run.registered_run import RegisteredRun

__all__ = ["POINTS_FILE", "export_nerfstudio"]

POINTS_FILE = "points.ply"


def export_nerfstudio(run: RegisteredRun, out: PathLike, selection: Optional[ExportSelection] = None,
                      masks: Optional[Sequence[np.ndarray]] = None, points: Optional[SurfacePoints] = None,
                      n_points: int = 4000, seed: int = 0) -> Dict[str, Any]:
    """Write the run as a nerfstudio dataset folder into `out`.

    Args:
        run: the finished run.
        out: the folder (written into; `congeal.apps.export.run_export` stages it).
        selection, masks, points: shared with another format of the same export when given; made here when None.
        n_points, seed: surface-point sampling (when `points` is None).
    Returns:
        JSON-ready info: counts and exported / excluded / undecided photos.
    """
    out = Path(out)
    selection = selection or select_photos(run)
    masks = list(masks) if masks is not None else [photo_mask(run, photo) for photo in selection.photos]
    records: List[Dict[str, Any]] = []
    files: List[str] = []
    mask_files: List[Optional[str]] = []
    for photo, mask in zip(selection.photos, masks):
        image = write_photo(photo, out / "images")
        write_mask(mask, out / "masks" / f"{image.stem}.png")
        records.append(photo.record)
        files.append(f"images/{image.name}")
        mask_files.append(f"masks/{image.stem}.png")
    for name, record in run.poses.items():  # listed in excluded_frames, pointing at the original photo
        if is_failed(record):
            records.append(record)
            path = run.photo_path(name)
            files.append(str(path) if path is not None else name)
            mask_files.append(None)
    if points is None:
        points = surface_points(run, selection.photos, masks, n_points=n_points, seed=seed)
    write_bytes(out / POINTS_FILE, ply_bytes(points.xyz, points.rgb, comments=[
        "congeal: points on the canonical surface, coloured by the photos that see them"]))
    doc = transforms_document(records, files, mask_files)
    doc["ply_file_path"] = POINTS_FILE
    write_json(out / "transforms.json", doc)
    return {"transforms": "transforms.json", "frames": len(doc["frames"]), "points": len(points),
            **selection.summary()}
