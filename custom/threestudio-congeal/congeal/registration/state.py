"""The per-image state file: what the coordinate maps of one photo need (a run keeps it at
`RunFolder(out).state_path(name)`, `OUT/state/<name>.safetensors`).

    state = write_image_state(run.state_path("cat"), "cat", crop, (H, W), warps[0], xyz[0], opacity[0], masks[0, 0],
                              camera)
    state = load_image_state(run.state_path("cat"))   # ImageState: warp, render xyz/opacity, mask, crop, camera
    working = state.to_working(torch.tensor([[120.0, 80.0]]))   # original pixels -> working pixels

File format ("congeal-state-v1", internal): safetensors with `warp` [S,S,2] (working pixel -> render working
pixel), `render_xyz` [S,S,3] (0 where the render is empty), `render_opacity` [S,S,1], `image_mask` [S,S] (float32)
and the crop as `working = original * scale + offset` (`scale`, `offset` [2], float64); metadata `format`, `name`,
`width`, `height` (the original image) and `camera` (the image's poses.json entry as JSON).
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common import atomic
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.io.crop import Crop
from congeal.registration.mapping import identity_warp

__all__ = ["STATE_FORMAT", "ImageState", "crop_affine", "write_image_state", "load_image_state"]

STATE_FORMAT = "congeal-state-v1"


@dataclass
class ImageState:
    """One image's working-frame data, as written by `write_image_state`."""

    name: str
    """The image name (file stem)."""
    warp: Float[Tensor, "S S 2"]
    """Working pixel -> render working pixel."""
    render_xyz: Float[Tensor, "S S 3"]
    """Canonical xyz of the render at the image's pose, 0 where the render is empty."""
    render_opacity: Float[Tensor, "S S 1"]
    """The render's opacity."""
    image_mask: Float[Tensor, "S S"]
    """The working image's object mask."""
    scale: Float[Tensor, "2"]
    """The crop as an affine map: working = original * scale + offset."""
    offset: Float[Tensor, "2"]
    """See `scale`."""
    width: int
    """Width of the original image."""
    height: int
    """Height of the original image."""
    camera: Dict[str, Any] = field(default_factory=dict)
    """The image's poses.json entry (empty when unknown)."""

    @property
    def size(self) -> int:
        """Working size S."""
        return int(self.warp.shape[0])

    def to_working(self, xy: Float[Tensor, "*batch 2"]) -> Float[Tensor, "*batch 2"]:
        """Original pixels -> working pixels."""
        return xy * self.scale + self.offset

    def to_original(self, xy: Float[Tensor, "*batch 2"]) -> Float[Tensor, "*batch 2"]:
        """Working pixels -> original pixels."""
        return (xy - self.offset) / self.scale

    def with_identity_warp(self) -> "ImageState":
        """A copy whose warp is the identity (mapping switched off)."""
        kw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        kw["warp"] = identity_warp(self.size, self.warp.device, self.warp.dtype)
        return ImageState(**kw)


def crop_affine(crop: Crop) -> Tuple[np.ndarray, np.ndarray]:
    """The crop (original -> working) as `working = original * scale + offset`: scale [2], offset [2] (float64)."""
    matrix = crop.working_from_original()  # [[s, 0, tx], [0, s, ty]]
    return np.array([matrix[0, 0], matrix[1, 1]]), np.array([matrix[0, 2], matrix[1, 2]])


def _original_wh(original_size: Sequence[int], camera: Dict[str, Any]) -> Tuple[int, int]:
    """(width, height): taken from the camera when it says, else original_size read as `ImageCollection`'s (H, W)."""
    if camera and "width" in camera and "height" in camera:
        return int(camera["width"]), int(camera["height"])
    h, w = (int(v) for v in original_size)
    return w, h


def write_image_state(path: PathLike, name: str, crop: Crop, original_size: Sequence[int],
                      warp: Float[Tensor, "S S 2"], render_xyz: Float[Tensor, "S S 3"],
                      render_opacity: Union[Float[Tensor, "S S 1"], Float[Tensor, "S S"]],
                      image_mask: Float[Tensor, "S S"], camera: Dict[str, Any]) -> ImageState:
    """Write a photo's state file atomically; the public map is `queries.write_forward_map`'s.

    Args:
        path: the state file (`RunFolder.state_path(name)`).
        name: image name (file stem).
        crop: the image's crop (original <-> working pixels).
        original_size: (height, width) of the original image, as `ImageCollection.original_sizes` (the camera's
            width/height win when present).
        warp: from `fit_warps`.
        render_xyz: canonical xyz of the render at the image's pose (working frame).
        render_opacity: its opacity.
        image_mask: the working image's object mask.
        camera: the image's poses.json entry (kept in the state's metadata).
    Returns:
        the state as `load_image_state` reads it back (on the CPU).
    """
    scale, offset = crop_affine(crop)
    width, height = _original_wh(original_size, camera)
    size = warp.shape[0]
    opacity = render_opacity.reshape(size, size, 1).detach().float().cpu()
    xyz = torch.nan_to_num(render_xyz.detach().float().cpu(), nan=0.0) * (opacity > 0).float()
    tensors = {
        "warp": warp.detach().float().cpu(),
        "render_xyz": xyz,
        "render_opacity": opacity,
        "image_mask": image_mask.reshape(size, size).detach().float().cpu(),
        "scale": torch.tensor(scale, dtype=torch.float64),
        "offset": torch.tensor(offset, dtype=torch.float64),
    }
    meta = {"format": STATE_FORMAT, "name": name, "width": str(width), "height": str(height),
            "camera": json.dumps(_jsonable(camera))}
    atomic.write_safetensors(path, tensors, metadata=meta)
    return _state_from(name, tensors, meta)


def _jsonable(obj: Any) -> Any:
    """Tensors and numpy values inside a poses.json entry as plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Tensor, np.ndarray)):
        return np.asarray(obj.detach().cpu() if isinstance(obj, Tensor) else obj).tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _state_from(name: str, tensors: Dict[str, Tensor], meta: Dict[str, str],
                device: Optional[Union[str, torch.device]] = None) -> ImageState:
    return ImageState(
        name=name,
        warp=tensors["warp"].float().to(device),
        render_xyz=tensors["render_xyz"].float().to(device),
        render_opacity=tensors["render_opacity"].float().to(device),
        image_mask=tensors["image_mask"].float().to(device),
        scale=tensors["scale"].float().to(device),
        offset=tensors["offset"].float().to(device),
        width=int(meta["width"]),
        height=int(meta["height"]),
        camera=json.loads(meta.get("camera", "{}")),
    )


def load_image_state(path: PathLike, device: Optional[Union[str, torch.device]] = None) -> ImageState:
    """Read a photo's state file (`RunFolder.state_path(name)`; the photo's name is the file's stem).

    Raises:
        InputError: the run has no state for that name, or the file has another format.
    """
    from safetensors import safe_open

    path = Path(path)
    name = path.stem
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.safetensors"))
        raise InputError(path, f"no registered image named {name!r} in this run",
                         f"use one of: {', '.join(known[:20]) or '(none: run `congeal register` first)'}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: one line, not a Rust traceback
        message = (str(error).splitlines() or [""])[0][:200]
        raise InputError(path, f"is not a readable state file ({type(error).__name__}: {message})",
                         "re-run `congeal register`") from None
    if meta.get("format") != STATE_FORMAT:
        raise InputError(path, f"unknown state format {meta.get('format')!r}", "re-run `congeal register`")
    return _state_from(name, tensors, meta, device)
