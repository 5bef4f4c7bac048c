"""A COLMAP model of a registered collection: what splatting trainers and COLMAP-based pipelines read.

    info = export_colmap(run, "out/export/colmap")
    # colmap/sparse/0/{cameras,images,points3D}.{bin,txt}  colmap/images/<photo>  colmap/masks/<photo stem>.png

One `PINHOLE` camera per photo at its original resolution with the photo's own intrinsics (fx fy cx cy; COLMAP's
pixel centres are at +0.5 like ours, so cx cy carry over unchanged); every image's pose as COLMAP stores it:
world-to-camera (`cam_from_world`), OpenCV camera axes (x right, y down, looking down +z), rotation as the quaternion
QW QX QY QZ. The world is the canonical frame (z up). `points3D` are points on the canonical surface with the
photos' colours and tracks from the coordinate maps (`congeal.apps.export.surface_points`). The binary and the text
model hold the same numbers (text: 17 significant digits); COLMAP and pycolmap read the binary one when both are
there, nerfstudio's colmap parser the text one.

Masks are named `<photo stem>.png` (nerfstudio's colmap parser: `--masks-path masks`; gsplat ignores them); COLMAP's
own feature extractor wants `<image file name>.png` (e.g. `cat.jpg.png`) under its `--ImageReader.mask_path`.
Photos the run calls failed are left out (listed in the returned info).
"""
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Float

from congeal.apps.export.photo_files import (ExportPhoto, ExportSelection, photo_mask, select_photos, write_mask,
                                             write_photo)
from congeal.apps.export.surface_points import SurfacePoints, surface_points
from congeal.apps.viewer.scene import rotation_to_wxyz
from congeal.common.atomic import write_bytes, write_text
from congeal.common.paths import PathLike
from congeal.run.registered_run import RegisteredRun

__all__ = ["PINHOLE_MODEL_ID", "colmap_pose", "export_colmap", "write_colmap_model"]

PINHOLE_MODEL_ID = 1  # COLMAP's camera model ids: 0 SIMPLE_PINHOLE, 1 PINHOLE, ...
_INVALID_POINT3D = 2 ** 64 - 1  # COLMAP's "no 3D point" id in images.bin (uint64 max, -1 in text)


def colmap_pose(c2w: Float[np.ndarray, "4 4"]) -> Tuple[Float[np.ndarray, "4"], Float[np.ndarray, "3"]]:
    """(qvec QW QX QY QZ, tvec) of COLMAP's world-to-camera pose for a threestudio/OpenGL camera-to-world."""
    c2w_cv = np.asarray(c2w, np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL -> OpenCV camera axes
    rotation = c2w_cv[:3, :3].T
    translation = -rotation @ c2w_cv[:3, 3]
    return rotation_to_wxyz(rotation), translation


def _observations(points: SurfacePoints, n_photos: int) -> List[List[Tuple[float, float, int]]]:
    """Per photo: its points2D (x, y, point3D_id); point ids are 1-based, in points' order."""
    per_photo: List[List[Tuple[float, float, int]]] = [[] for _ in range(n_photos)]
    for p, j, (x, y) in zip(points.obs_point.tolist(), points.obs_photo.tolist(), points.obs_xy.tolist()):
        per_photo[j].append((float(x), float(y), int(p) + 1))
    return per_photo


def _tracks(per_photo: List[List[Tuple[float, float, int]]], n_points: int) -> List[List[Tuple[int, int]]]:
    """Per point: its track (image_id, point2D_idx)."""
    tracks: List[List[Tuple[int, int]]] = [[] for _ in range(n_points)]
    for j, entries in enumerate(per_photo):
        for k, (_, _, point_id) in enumerate(entries):
            tracks[point_id - 1].append((j + 1, k))
    return tracks


def _rgb8(rgb: Float[np.ndarray, "P 3"]) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_colmap_model(folder: PathLike, photos: Sequence[ExportPhoto], image_names: Sequence[str],
                       points: SurfacePoints) -> None:
    """Write cameras / images / points3D as both .bin and .txt into `folder` (each file atomically).

    Args:
        folder: the model folder (`sparse/0`).
        photos: the photos, one camera and one image each (ids 1..N in this order).
        image_names: each photo's file name under the model's images folder.
        points: the 3D points and their observations (indices into `photos`).
    """
    folder = Path(folder)
    per_photo = _observations(points, len(photos))
    tracks = _tracks(per_photo, len(points))
    rgb = _rgb8(points.rgb)

    cams_bin = [struct.pack("<Q", len(photos))]
    cams_txt = ["# Camera list with one line of data per camera:",
                "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]", f"# Number of cameras: {len(photos)}"]
    imgs_bin = [struct.pack("<Q", len(photos))]
    n_obs = sum(len(e) for e in per_photo)
    imgs_txt = ["# Image list with two lines of data per image:",
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                f"# Number of images: {len(photos)}, mean observations per image: "
                f"{n_obs / max(1, len(photos)):.17g}"]
    for j, (photo, name) in enumerate(zip(photos, image_names)):
        cam = photo.camera
        params = (cam.fl_x, cam.fl_y, cam.cx, cam.cy)
        cams_bin.append(struct.pack("<IiQQ4d", j + 1, PINHOLE_MODEL_ID, cam.width, cam.height, *params))
        cams_txt.append(f"{j + 1} PINHOLE {cam.width} {cam.height} " + " ".join(f"{v:.17g}" for v in params))
        qvec, tvec = colmap_pose(cam.c2w)
        imgs_bin.append(struct.pack("<I4d3dI", j + 1, *qvec, *tvec, j + 1) + name.encode("utf-8") + b"\0")
        imgs_bin.append(struct.pack("<Q", len(per_photo[j])))
        imgs_bin.extend(struct.pack("<ddQ", x, y, pid) for x, y, pid in per_photo[j])
        imgs_txt.append(" ".join([str(j + 1), *(f"{v:.17g}" for v in (*qvec, *tvec)), str(j + 1), name]))
        imgs_txt.append(" ".join(f"{x:.17g} {y:.17g} {pid}" for x, y, pid in per_photo[j]))

    pts_bin = [struct.pack("<Q", len(points))]
    mean_track = sum(len(t) for t in tracks) / max(1, len(points))
    pts_txt = ["# 3D point list with one line of data per point:",
               "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
               f"# Number of points: {len(points)}, mean track length: {mean_track:.17g}"]
    for i in range(len(points)):
        x, y, z = (float(v) for v in points.xyz[i])
        r, g, b = (int(v) for v in rgb[i])
        error = float(points.error[i])
        pts_bin.append(struct.pack("<Q3d3BdQ", i + 1, x, y, z, r, g, b, error, len(tracks[i])))
        pts_bin.extend(struct.pack("<II", image_id, k) for image_id, k in tracks[i])
        track = " ".join(f"{image_id} {k}" for image_id, k in tracks[i])
        pts_txt.append(f"{i + 1} {x:.17g} {y:.17g} {z:.17g} {r} {g} {b} {error:.17g} {track}".rstrip())

    for stem, binary, text in (("cameras", cams_bin, cams_txt), ("images", imgs_bin, imgs_txt),
                               ("points3D", pts_bin, pts_txt)):
        write_bytes(folder / f"{stem}.bin", b"".join(binary))
        write_text(folder / f"{stem}.txt", "\n".join(text) + "\n")


def export_colmap(run: RegisteredRun, out: PathLike, selection: Optional[ExportSelection] = None,
                  masks: Optional[Sequence[np.ndarray]] = None, points: Optional[SurfacePoints] = None,
                  n_points: int = 4000, seed: int = 0) -> Dict[str, Any]:
    """Write the run as a COLMAP dataset folder (`sparse/0/`, `images/`, `masks/`) into `out`.

    Args:
        run: the finished run.
        out: the folder (written into; `congeal.apps.export.run_export` stages it).
        selection, masks, points: the photos, their masks and the surface points when already made (another
            format of the same export shares them); made here when None.
        n_points: surface points sampled before the ones no photo sees are dropped (when `points` is None).
        seed: sampling seed (when `points` is None).
    Returns:
        JSON-ready info: the model folder, counts, exported / excluded / undecided photos.
    """
    out = Path(out)
    selection = selection or select_photos(run)
    masks = list(masks) if masks is not None else [photo_mask(run, photo) for photo in selection.photos]
    names: List[str] = []
    for photo, mask in zip(selection.photos, masks):
        names.append(write_photo(photo, out / "images").name)
        write_mask(mask, out / "masks" / f"{Path(names[-1]).stem}.png")
    if points is None:
        points = surface_points(run, selection.photos, masks, n_points=n_points, seed=seed)
    write_colmap_model(out / "sparse" / "0", selection.photos, names, points)
    return {"model": "sparse/0", "images": "images", "masks": "masks", "cameras": len(selection.photos),
            "points3D": len(points), "observations": int(points.obs_point.size),
            "mean_reprojection_error_px": float(points.error.mean()) if len(points) else None,
            **selection.summary()}
