"""Public camera files of a registration run: `poses.json` (our format) and `transforms.json` (NeRF/nerfstudio).

    record = camera_record("mug", c2w_w, fovy_w, principal_w, crop, (480, 640), {"iou": 0.93})
    write_poses(out / "poses.json", [record])
    poses = read_poses(out / "poses.json")        # {"mug": {...}}, validated; InputError on a bad file

Every camera is the camera of the ORIGINAL photo (its pixel grid), in threestudio's convention (see
`congeal.geometry.cameras.CONVENTION`): `c2w` 4×4 (6 DoF), pinhole intrinsics `fl_x`, `fl_y`, `cx`, `cy` in original
pixels (v2: `cx, cy` is the photo's centre; `focal_source` and `principal_source` say where the intrinsics came
from), `width`, `height`, `fovy_deg = 2·atan(height / (2·fl_y))`. transforms.json holds the same numbers: nerfstudio uses
the same OpenGL camera axes, so `transform_matrix` is `c2w` unchanged.
"""
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from congeal.common.atomic import write_json
from congeal.geometry.cameras import CONVENTION
from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.registration.trust import STATUSES

# v2: real pinhole cameras (cx, cy = the photo's centre), focal/principal sources; v3: the collection's joint choice
# (per photo `ambiguity`, `undecided`; every hypothesis' `disagreement` and `joint_score`); v4: how far to trust each
# photo's camera (`confidence` in [0, 1], `status` ok | undecided | failed, `status_reason` when not ok)
POSES_FORMAT = "congeal-poses-v4"
READABLE_POSES_FORMATS = ("congeal-poses-v1", "congeal-poses-v2", "congeal-poses-v3", POSES_FORMAT)
CAMERA_FIELDS = ("c2w", "fovy_deg", "fl_x", "fl_y", "cx", "cy", "width", "height", "azimuth_deg", "elevation_deg",
                 "distance")


def camera_record(name: Optional[str], c2w: Tensor, fovy_w: Union[float, Tensor], principal_w: Any, crop: Any,
                  original_size: Tuple[int, int], scores: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
    """The poses.json entry of one camera estimated in a photo's working frame.

    Args:
        name: image name (None for an alternative hypothesis).
        c2w: [4,4] camera-to-world (threestudio convention).
        fovy_w: vertical FoV (radians) spanning the working frame (= the crop window).
        principal_w: (x, y) principal point in working pixels.
        crop: the photo's `congeal.io.collection.Crop` (x0, y0, side in original pixels).
        original_size: (height, width) of the original photo.
        scores: extra numbers stored beside the camera (iou, feature_distance, score, ...).
    Returns:
        a JSON-ready dict with the camera fields of the ORIGINAL photo.
    """
    c2w = torch.as_tensor(c2w, dtype=torch.float64).detach().cpu()
    fovy_w = float(fovy_w)
    side = float(crop.side)
    px, py = (float(v) for v in torch.as_tensor(principal_w).reshape(2).tolist())
    to_original = side / float(crop.size)
    focal = side / (2.0 * math.tan(0.5 * fovy_w))  # original pixels: the crop window spans fovy_w
    height, width = int(original_size[0]), int(original_size[1])
    position = c2w[:3, 3]
    distance = float(position.norm())
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, float(position[2]) / max(distance, 1e-12)))))
    azimuth = math.degrees(math.atan2(float(position[1]), float(position[0])))
    record: Dict[str, Any] = {} if name is None else {"name": name}
    record.update({
        "c2w": [[float(v) for v in row] for row in c2w.tolist()],
        "fovy_deg": math.degrees(2.0 * math.atan(height / (2.0 * focal))),
        "fl_x": focal, "fl_y": focal,
        "cx": float(crop.x0) + px * to_original, "cy": float(crop.y0) + py * to_original,
        "width": width, "height": height,
        "azimuth_deg": azimuth, "elevation_deg": elevation, "distance": distance,
    })
    for key, value in (scores or {}).items():
        record[key] = float(value)
    return record


def working_camera(record: Mapping[str, Any], crop: Any) -> Tuple[Tensor, float, Tensor]:
    """Inverse of `camera_record`: (c2w [4,4] float32, fovy_w radians, principal_w [2] working px)."""
    fovy_w = 2.0 * math.atan(float(crop.side) / (2.0 * float(record["fl_y"])))
    scale = float(crop.size) / float(crop.side)
    principal = torch.tensor([(record["cx"] - float(crop.x0)) * scale, (record["cy"] - float(crop.y0)) * scale])
    return torch.tensor(record["c2w"], dtype=torch.float32), fovy_w, principal


def write_poses(path: Union[str, Path], records: Sequence[Mapping[str, Any]],
                extra: Optional[Mapping[str, Any]] = None) -> None:
    """Write poses.json atomically: `{"format", "convention", "images": [record, ...]}` (+ `extra` top-level keys)."""
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate image names in poses: {names}")
    doc = {"format": POSES_FORMAT, "convention": CONVENTION, **dict(extra or {}), "images": list(records)}
    write_json(path, doc)


def read_poses_document(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate poses.json; returns the whole document."""
    path = Path(path)
    doc = read_json(path, fix="re-run `congeal register`", missing="poses.json not found",
                    missing_fix="pass the --out folder of a finished `congeal register` run", expect=dict)
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_POSES_FORMATS or not isinstance(doc.get("images"), list):
        raise InputError(path, f"is not a {' or '.join(READABLE_POSES_FORMATS)} file",
                         "re-run `congeal register` to write it")
    for entry in doc["images"]:
        if not isinstance(entry, dict):
            raise InputError(path, "has an image entry that is not an object", "re-run `congeal register`")
        missing = [k for k in ("name",) + CAMERA_FIELDS if k not in entry]
        if missing:
            raise InputError(path, f"entry {str(entry.get('name', '?'))[:80]!r} lacks {missing}",
                             "re-run `congeal register`")
        name = entry["name"]
        # names become file names (maps/<name>.npz, edits, masks): a plain, non-empty name without separators
        if (not isinstance(name, str) or not name.strip() or name in (".", "..")
                or any(c in name for c in "/\\\x00")):
            raise InputError(path, f"has an image name {str(name)[:80]!r} that is not a plain photo name",
                             "re-run `congeal register`")
        for key in CAMERA_FIELDS[1:]:  # numbers where numbers belong: a list here was a raw TypeError later
            value = entry[key]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise InputError(path, f"entry {name[:80]!r}: {key} is {type(value).__name__} {str(value)[:40]}, "
                                       "not a finite number", "re-run `congeal register`")
        if not (isinstance(entry.get("alternatives", []), list)
                and all(isinstance(a, dict) for a in entry.get("alternatives", []))):
            raise InputError(path, f"entry {name[:80]!r}: alternatives must be a list of objects",
                             "re-run `congeal register`")
        c2w = entry["c2w"]
        if not (isinstance(c2w, list) and len(c2w) == 4 and all(isinstance(row, list) and len(row) == 4 for row in c2w)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        for row in c2w for v in row)):
            raise InputError(path, f"entry {entry['name']!r} has a bad c2w", "re-run `congeal register`")
        if "status" in entry and entry["status"] not in STATUSES:
            raise InputError(path, f"entry {entry['name']!r} has an unknown status {entry['status']!r}",
                             f"use one of {', '.join(STATUSES)} or re-run `congeal register`")
    return doc


def read_poses(path: Union[str, Path]) -> Dict[str, Dict[str, Any]]:
    """Read poses.json -> {name: record} in file order (validated; InputError on a bad file)."""
    return {entry["name"]: entry for entry in read_poses_document(path)["images"]}


# v3: photos the run itself calls failed (`status: "failed"` in poses.json) are not frames; they are listed in
# `excluded_frames` with the reason. Frames may carry `mask_path` (nerfstudio trains on the object only).
TRANSFORMS_FORMAT = "congeal-transforms-v3"
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def is_failed(record: Mapping[str, Any]) -> bool:
    """Does the run itself call this camera failed (poses.json `status`)? Older files have no status: not failed."""
    return record.get("status") == "failed"


def transforms_document(records: Sequence[Mapping[str, Any]], file_paths: Sequence[str],
                        mask_paths: Optional[Sequence[Optional[str]]] = None) -> Dict[str, Any]:
    """nerfstudio-style transforms.json content.

    Every frame carries its own `fl_x fl_y cx cy w h`. The top level repeats them only when every frame shares them:
    nerfstudio's data parser gives top-level intrinsics to *every* frame when they are present, so a top level copied
    from one photo would silently give all other photos its camera (v1 did that; v2 is this rule). A camera the run
    calls failed is no frame (nerfstudio would train on it): it is listed in `excluded_frames` with its reason.

    Args:
        records: poses.json entries, one per photo.
        file_paths: each photo's path as the file stores it.
        mask_paths: each photo's mask path as the file stores it (None: no masks; an entry None: no mask for it).
    Returns:
        the JSON-ready document.
    """
    frames, excluded = [], []
    masks = list(mask_paths) if mask_paths is not None else [None] * len(records)
    for record, file_path, mask_path in zip(records, file_paths, masks):
        if is_failed(record):
            excluded.append({"name": record["name"], "file_path": file_path,
                             "reason": str(record.get("status_reason") or "the run calls this camera failed")})
            continue
        frame = {
            "file_path": file_path, "transform_matrix": record["c2w"],
            "fl_x": record["fl_x"], "fl_y": record["fl_y"], "cx": record["cx"], "cy": record["cy"],
            "w": record["width"], "h": record["height"], "name": record["name"],
        }
        if mask_path is not None:
            frame["mask_path"] = mask_path
        frames.append(frame)
    doc: Dict[str, Any] = {"format": TRANSFORMS_FORMAT, "camera_model": "OPENCV", "convention": CONVENTION}
    if frames and all(all(f[k] == frames[0][k] for k in INTRINSIC_KEYS) for f in frames):
        doc.update({k: frames[0][k] for k in INTRINSIC_KEYS})
    doc.update({"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames, "excluded_frames": excluded})
    return doc


def write_transforms(path: Union[str, Path], records: Sequence[Mapping[str, Any]],
                     image_paths: Sequence[Union[str, Path]],
                     mask_paths: Optional[Sequence[Optional[Union[str, Path]]]] = None) -> None:
    """Write transforms.json atomically; image (and mask) paths are stored relative to the file's folder (POSIX
    slashes). Cameras whose `status` is `failed` are left out of the frames and listed in `excluded_frames`."""
    base = Path(path).resolve().parent

    def relative(p: Union[str, Path]) -> str:
        return Path(os.path.relpath(Path(p).resolve(), base)).as_posix()

    rel_masks = None if mask_paths is None else [None if m is None else relative(m) for m in mask_paths]
    write_json(path, transforms_document(records, [relative(p) for p in image_paths], rel_masks))


def read_transforms(path: Union[str, Path]) -> Dict[str, Any]:
    """Read transforms.json (InputError when missing or malformed)."""
    path = Path(path)
    doc = read_json(path, fix="re-run `congeal register`", expect=dict)
    if not isinstance(doc.get("frames"), list):
        raise InputError(path, "has no frames list", "re-run `congeal register`")
    return doc
