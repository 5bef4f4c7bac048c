"""The photos an export carries: the run's photos minus those it calls failed, as upright files with their masks.

    selection = select_photos(run)                  # ExportSelection: photos (in poses.json order), excluded
    selection.excluded                              # [{"name": "cat_07", "reason": "..."}]: never exported
    file = write_photo(selection.photos[0], out / "images")       # images/cat_01.jpg (or .png, see below)
    write_mask(photo_mask(run, selection.photos[0]), out / "masks" / "cat_01.png")

A photo the run calls failed (poses.json `status: "failed"`, `congeal.run.outputs.is_failed`) is left out of every
export and listed with the run's reason; so is a photo without a coordinate map. Undecided photos are exported
(their pose is one of two readings the run could not tell apart) and named in `undecided`.

Photo files: the original file is copied byte for byte when its stored pixels are already upright (no EXIF
rotation, nothing converted) and it is a JPEG or PNG; otherwise the upright pixels the run registered are written as
PNG. COLMAP, gsplat and nerfstudio read raw pixels and ignore EXIF orientation, so a rotated JPEG copied as it is
would not match its camera.

Masks: the object mask the run registered with (register.json's mask source: alpha, mask file, white background),
on the photo's full grid, as a single-channel PNG, white (255) = object, black = background — what nerfstudio
reads (`mask_path`, 0 = ignore) and what COLMAP's feature extractor reads (black = ignore). For SAM masks (not
recomputed here) the working-frame mask of the run's state file is carried back onto the photo's grid.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from jaxtyping import Bool

from congeal.apps.viewer.scene import CameraGeometry
from congeal.common.atomic import copy_file, save_image
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.outputs import is_failed
from congeal.run.registered_run import RegisteredRun

__all__ = ["ExportPhoto", "ExportSelection", "select_photos", "write_photo", "photo_mask", "write_mask"]

_COPYABLE = (".jpg", ".jpeg", ".png")
_RERUN = "re-run `congeal register` with this version of congeal"


@dataclass
class ExportPhoto:
    """One photo an export carries."""

    name: str
    record: Dict[str, Any]
    """Its poses.json entry."""
    path: Path
    """The original photo file (register.json)."""
    camera: CameraGeometry
    """Its camera: c2w (threestudio convention) and pinhole intrinsics in original pixels."""


@dataclass
class ExportSelection:
    """What an export carries and what it leaves out."""

    photos: List[ExportPhoto]
    excluded: List[Dict[str, str]] = field(default_factory=list)
    """{"name", "reason"} of every registered photo left out."""
    undecided: List[str] = field(default_factory=list)
    """Exported photos whose pose the run could not decide between two readings."""

    def summary(self) -> Dict[str, Any]:
        """JSON-ready: exported names, excluded photos with reasons, undecided names."""
        return {"photos": [p.name for p in self.photos], "excluded": list(self.excluded),
                "undecided": list(self.undecided)}


def select_photos(run: RegisteredRun) -> ExportSelection:
    """The photos of `run` an export carries, in poses.json order.

    Args:
        run: the finished run.
    Returns:
        the selection.
    Raises:
        InputError: a photo's file is gone, or every photo is failed.
    """
    photos: List[ExportPhoto] = []
    excluded: List[Dict[str, str]] = []
    undecided: List[str] = []
    mapped = set(run.names)
    for name, record in run.poses.items():
        if is_failed(record):
            reason = str(record.get("status_reason") or "the run calls this camera failed")
            excluded.append({"name": name, "reason": f"failed: {reason}"})
            continue
        if name not in mapped:
            excluded.append({"name": name, "reason": f"no coordinate map ({run.folder.map_path(name).name})"})
            continue
        path = run.photo_path(name)
        if path is None:
            raise InputError(run.folder.register, f"names no photo file for {name!r}", _RERUN)
        if not path.is_file():
            raise InputError(path, "the registered photo is gone", "put the photo back where `congeal register` "
                                                                   "read it")
        photos.append(ExportPhoto(name, record, path, CameraGeometry.from_record(name, record)))
        if record.get("undecided") is True or record.get("status") == "undecided":
            undecided.append(name)
    if not photos:
        raise InputError(run.folder.poses, "has no photo an export can carry (every one is failed or unmapped)",
                         "re-register the collection (more or better photos), or check the photos' masks")
    return ExportSelection(photos, excluded, undecided)


def write_photo(photo: ExportPhoto, folder: PathLike) -> Path:
    """Write the photo into `folder` as `<name>.<jpg|jpeg|png>`, upright; returns the file written.

    Raises:
        InputError: the file's size is not the one registered (it changed since).
    """
    from congeal.io.decode import decode_image

    decoded = decode_image(photo.path)
    want = (int(photo.record["height"]), int(photo.record["width"]))
    if decoded.size != want:
        raise InputError(photo.path, f"is {decoded.size[1]}x{decoded.size[0]} pixels but was registered at "
                                     f"{want[1]}x{want[0]}", "the photo changed since registration; " + _RERUN)
    suffix = photo.path.suffix.lower()
    if decoded.orientation == 1 and suffix in _COPYABLE and not decoded.notes:
        target = Path(folder) / f"{photo.name}{suffix}"
        copy_file(photo.path, target)
        return target
    target = Path(folder) / f"{photo.name}.png"
    rgb = decoded.rgb if decoded.alpha is None else np.concatenate([decoded.rgb, decoded.alpha[..., None]], -1)
    save_image(target, (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return target


def photo_mask(run: RegisteredRun, photo: ExportPhoto) -> Bool[np.ndarray, "H W"]:
    """The object mask the run registered `photo` with, on its original (upright) grid."""
    mode = str((run.register.get("config") or {}).get("mask", "auto"))
    if mode == "sam":
        return _state_mask(run, photo)
    from congeal.io.collection import load_image

    return load_image(photo.path, size=32, mask=mode).full_mask()


def _state_mask(run: RegisteredRun, photo: ExportPhoto) -> Bool[np.ndarray, "H W"]:
    """The state file's working-frame mask carried back to every original pixel (nearest working pixel)."""
    import torch

    from congeal.registration.state import load_image_state

    state = load_image_state(run.folder.state_path(photo.name))
    height, width = int(photo.record["height"]), int(photo.record["width"])
    ys, xs = np.mgrid[0:height, 0:width]
    centres = torch.from_numpy(np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float32))
    working = state.to_working(centres.to(state.scale.dtype))
    col, row = working[..., 0].floor().long(), working[..., 1].floor().long()
    size = state.size
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    values = state.image_mask[row.clamp(0, size - 1), col.clamp(0, size - 1)] >= 0.5
    return (values & inside).numpy()


def write_mask(mask: Bool[np.ndarray, "H W"], path: PathLike) -> None:
    """A single-channel 8-bit PNG: 255 = object, 0 = background."""
    save_image(path, np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8))
