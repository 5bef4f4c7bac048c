"""NAVI loader: `annotations.json` scenes (in-the-wild `wild_set/` by default), cameras in our convention.

    scene = load_navi_scene("navi_v1/3d_dollhouse_sink/wild_set")
    R, t = scene.w2c_opencv()                  # [N,3,3], [N,3]: x_cam = R x_object + t (OpenCV camera axes)
    c2w = scene.c2w_opengl()                   # [N,4,4]: the same cameras in threestudio's convention

Layout (NAVI v1.0/v1.5): `<root>/<object_id>/<scene>/annotations.json`, `images/<filename>`, `masks/<stem>.png`,
with `<scene>` = `wild_set` (in-the-wild collection) or `multiview-XX-<camera>` / `video-XX-<camera>`.
Each annotation: `camera.q` [w,x,y,z] and `camera.t` [3] are the object-to-camera extrinsics, `camera.focal_length`
in pixels, `image_size` [height, width] of the image *after* its EXIF orientation is applied.

Convention we assume (and test): NAVI cameras are OpenCV-style world(=object)-to-camera, `x_cam = R(q) x + t`,
camera looking down +z with y down; projection `u = f x/z + w/2`, `v = f y/z + h/2` in continuous pixel
coordinates on the EXIF-transposed image. Images must be read with their EXIF orientation applied
(`load_upright_rgb` does; masks are PNGs without orientation).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from jaxtyping import Bool, Float, Float64
from torch import Tensor

from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.geometry.conventions import opencv_w2c_to_opengl_c2w, quaternion_to_matrix
from congeal.io.decode import decode_image

DEFAULT_SCENE = "wild_set"


@dataclass
class NaviImage:
    """One annotated NAVI image."""

    name: str  # file stem, e.g. "000"
    image_path: Path
    mask_path: Path
    q: Float64[np.ndarray, " 4"]  # w, x, y, z
    t: Float64[np.ndarray, " 3"]
    focal_length: float  # pixels
    height: int
    width: int
    annotation: dict


@dataclass
class NaviScene:
    """An annotated NAVI scene (one object, one collection)."""

    object_id: str
    scene_name: str
    folder: Path
    images: List[NaviImage]

    @property
    def names(self) -> List[str]:
        return [image.name for image in self.images]

    def w2c_opencv(self, dtype: torch.dtype = torch.float64) -> Tuple[Float[Tensor, "N 3 3"], Float[Tensor, "N 3"]]:
        """Ground-truth world(object)-to-camera extrinsics, OpenCV axes: (R, t)."""
        q = torch.as_tensor(np.stack([im.q for im in self.images]), dtype=dtype)
        t = torch.as_tensor(np.stack([im.t for im in self.images]), dtype=dtype)
        return quaternion_to_matrix(q), t

    def c2w_opengl(self, dtype: torch.dtype = torch.float64) -> Float[Tensor, "N 4 4"]:
        """Ground-truth cameras in threestudio's convention (OpenGL axes, camera-to-world)."""
        return opencv_w2c_to_opengl_c2w(*self.w2c_opencv(dtype))

    def fovy_deg(self) -> Float64[np.ndarray, " N"]:
        """Vertical field of view per image in degrees: 2 atan(h / 2f)."""
        return np.degrees(2 * np.arctan2([im.height / 2 for im in self.images],
                                         [im.focal_length for im in self.images]))


def load_upright_rgb(path: PathLike) -> Image.Image:
    """The photo as an RGB PIL image on its upright grid (EXIF orientation applied: the grid NAVI annotates).

    Decoded by `congeal.io.decode.decode_image`, the one photo decoder (a bad file is an InputError naming it).
    """
    photo = decode_image(Path(path))
    return Image.fromarray((np.clip(photo.rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _number_list(value, n: int, path: Path, where: str) -> Float64[np.ndarray, " n"]:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(n)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.isfinite(array).all():
        raise InputError(path, f"{where} is not a list of {n} numbers", "re-extract annotations.json from the archive")
    return array


def load_navi_scene(folder: PathLike) -> NaviScene:
    """Read `<folder>/annotations.json` and validate every entry.

    Args:
        folder: a scene folder (holding annotations.json, images/, masks/).
    Returns:
        NaviScene with images in file order (sorted by filename).
    Raises:
        InputError naming annotations.json for a missing file, bad JSON or a malformed entry.
    """
    folder = Path(folder)
    path = folder / "annotations.json"
    data = read_json(path, "re-extract annotations.json from the archive",
                     missing_fix="pass a NAVI scene folder (e.g. <object>/wild_set) or the NAVI root")
    if not isinstance(data, list) or not data:
        raise InputError(path, "is not a non-empty list of image annotations", "re-extract it from the archive")
    images = []
    for k, entry in enumerate(data):
        where = f"entry {k}"
        if not isinstance(entry, dict) or not isinstance(entry.get("camera"), dict) or "filename" not in entry:
            raise InputError(path, f"{where} has no 'camera' object or 'filename'", "re-extract it from the archive")
        camera = entry["camera"]
        for key in ("q", "t", "focal_length"):
            if key not in camera:
                raise InputError(path, f"{where} camera has no '{key}'", "re-extract it from the archive")
        q = _number_list(camera["q"], 4, path, f"{where} camera.q")
        if np.linalg.norm(q) < 1e-8:
            raise InputError(path, f"{where} camera.q is a zero quaternion", "re-extract it from the archive")
        t = _number_list(camera["t"], 3, path, f"{where} camera.t")
        focal = float(_number_list(camera["focal_length"], 1, path, f"{where} camera.focal_length")[0])
        size = _number_list(entry.get("image_size"), 2, path, f"{where} image_size")
        if focal <= 0 or (size <= 0).any():
            raise InputError(path, f"{where} has a non-positive focal_length or image_size", "re-extract it")
        filename = str(entry["filename"])
        stem = Path(filename).stem
        images.append(NaviImage(
            name=stem, image_path=folder / "images" / filename, mask_path=folder / "masks" / f"{stem}.png",
            q=q / np.linalg.norm(q), t=t, focal_length=focal, height=int(size[0]), width=int(size[1]),
            annotation=entry,
        ))
    images.sort(key=lambda im: im.name)
    first = data[0]
    return NaviScene(object_id=str(first.get("object_id", folder.parent.name)),
                     scene_name=str(first.get("scene_name", folder.name)), folder=folder, images=images)


def find_scenes(root: PathLike, scene: str = DEFAULT_SCENE,
                objects: Optional[List[str]] = None) -> List[Path]:
    """Scene folders under `root`: the root itself if it is a scene, `<root>/<scene>` for an object folder, or
    `<root>/<object>/<scene>` for the NAVI root (optionally only `objects`). Sorted by object id."""
    root = Path(root)
    if (root / "annotations.json").is_file():
        return [root]
    if (root / scene / "annotations.json").is_file():
        return [root / scene]
    if not root.is_dir():
        raise InputError(root, "is not a folder", "pass the NAVI root, an object folder or a scene folder")
    found = sorted(p.parent for p in root.glob(f"*/{scene}/annotations.json"))
    if objects:
        missing = [o for o in objects if not (root / o / scene / "annotations.json").is_file()]
        if missing:
            raise InputError(root, f"has no {scene}/annotations.json for object(s) {missing}",
                             "check the object ids (folder names under the NAVI root)")
        found = [root / o / scene for o in objects]
    if not found:
        raise InputError(root, f"holds no */{scene}/annotations.json", "pass the NAVI root, an object folder or "
                         "a scene folder (or choose --scene)")
    return found


def load_mask(image: NaviImage) -> Bool[np.ndarray, "H W"]:
    """The image's mask (non-zero = object) from masks/<stem>.png."""
    if not image.mask_path.is_file():
        raise InputError(image.mask_path, "mask is missing", "re-extract masks/ from the NAVI archive")
    with Image.open(image.mask_path) as mask:
        array = np.asarray(mask)
    return (array.reshape(array.shape[0], array.shape[1], -1).max(-1) > 0)
