"""Framing: crop renders to their object's bounding box, made square with a margin, resized to the working size.

    boxes = square_boxes(opacity, margin=0.1)                         # opacity [B,H,W,1] -> Boxes (x0, y0, side)
    framed = crop_resize(torch.cat([rgb, opacity], -1).permute(0, 3, 1, 2), boxes, size=64)   # [B,4,64,64]
    working = camera_in_frame(cameras, boxes, 64)                     # that frame's `Cameras` (exact)
    out = render_in_frame(renderer, working, 64)                      # render straight into a working frame

Photos get the same treatment from `congeal.io.crop.Crop`, so a photo and a render are compared in the same
normalised frame and neither translation nor scale has to be searched. Pixel-centre convention throughout: the
centre of working pixel (row i, col j) is `(j + 0.5, i + 0.5)` and lies at `(x0 + (j+0.5)·side/S, ...)` in the
render. A crop moves the principal point, it does not move the camera: working-frame cameras are `Cameras` with
the principal point where the crop put it.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.geometry.cameras import Cameras, get_rays
from congeal.io.crop import square_window


@dataclass
class Boxes:
    """Square crop windows in (render) pixel coordinates."""

    x0: Float[Tensor, "B"]
    """Left edge of each window."""
    y0: Float[Tensor, "B"]
    """Top edge of each window."""
    side: Float[Tensor, "B"]
    """Side length of each window."""

    def centre(self) -> Float[Tensor, "B 2"]:
        """(x, y) centre of each window."""
        return torch.stack([self.x0 + 0.5 * self.side, self.y0 + 0.5 * self.side], dim=-1)

    def index(self, idx: Tensor) -> "Boxes":
        """The windows at `idx` (an index or mask tensor)."""
        return Boxes(self.x0[idx], self.y0[idx], self.side[idx])

    def to(self, device: Union[str, torch.device]) -> "Boxes":
        return Boxes(self.x0.to(device), self.y0.to(device), self.side.to(device))


def bounding_boxes(opacity: Union[Float[Tensor, "B H W 1"], Float[Tensor, "B H W"]],
                   threshold: float = 0.5) -> Float[Tensor, "B 4"]:
    """Tight pixel bounding boxes of `opacity > threshold`.

    Returns:
        (x0, y0, x1, y1) in continuous pixel coordinates (pixel edges); an empty mask gives the full frame.
    """
    mask = (opacity.reshape(opacity.shape[0], opacity.shape[1], opacity.shape[2]) > threshold)
    height, width = mask.shape[1:]
    cols = mask.any(dim=1)  # [B,W]
    rows = mask.any(dim=2)  # [B,H]
    # first / last True via argmax on a boolean (first maximum wins)
    x0 = cols.float().argmax(dim=1)
    x1 = width - cols.flip(1).float().argmax(dim=1)
    y0 = rows.float().argmax(dim=1)
    y1 = height - rows.flip(1).float().argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(opacity.dtype if opacity.is_floating_point() else torch.float32)
    empty = ~cols.any(dim=1)
    full = torch.tensor([0.0, 0.0, width, height], dtype=boxes.dtype, device=boxes.device)
    return torch.where(empty[:, None], full, boxes)


def square_boxes(opacity: Union[Float[Tensor, "B H W 1"], Float[Tensor, "B H W"]], margin: float = 0.1,
                 threshold: float = 0.5) -> Boxes:
    """Square windows around each object: the bbox's longer side grown by `margin` on every side.

    Args:
        opacity: the renders' opacity.
        margin: fraction of the longer bbox side added on each side (side = longer · (1 + 2·margin)); must equal the
            photos' crop margin so both are framed alike.
        threshold: object threshold on opacity.
    Returns:
        Boxes with x0, y0, side [B] (render pixels); windows may extend past the render (zero padding).
    """
    x0, y0, side = square_window(bounding_boxes(opacity, threshold), margin).unbind(-1)
    return Boxes(x0, y0, side)


def crop_resize(images: Float[Tensor, "B C H W"], boxes: Boxes, size: int,
                supersample: int = 2) -> Float[Tensor, "B C {size} {size}"]:
    """Resample each image's square window to `size`×`size`, batched with per-item affine grids.

    Args:
        images: the images.
        boxes: windows in the images' pixel coordinates.
        size: output side S.
        supersample: samples per output pixel per axis, averaged (anti-aliasing when the window is larger than S).
    Returns:
        the S×S windows; outside the source image the result is 0.
    """
    batch, _, height, width = images.shape
    n = size * supersample
    steps = (torch.arange(n, device=images.device, dtype=images.dtype) + 0.5) / n  # [n] in (0,1)
    x0, y0, side = (t.to(images.dtype)[:, None] for t in (boxes.x0, boxes.y0, boxes.side))
    xs = x0 + steps[None] * side  # [B,n] source pixel coordinates
    ys = y0 + steps[None] * side
    # align_corners=False: normalised u = 2x/W - 1 with x a continuous pixel coordinate
    u = (2.0 * xs / width - 1.0)[:, None, :].expand(batch, n, n)
    v = (2.0 * ys / height - 1.0)[:, :, None].expand(batch, n, n)
    grid = torch.stack([u, v], dim=-1)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if supersample > 1:
        out = F.avg_pool2d(out, supersample)
    return out


def camera_in_frame(cameras: Cameras, boxes: Boxes, size: int) -> Cameras:
    """Express the cameras' cropped and resized view as working-frame cameras (exact).

    Cropping keeps the camera and its focal length; only the principal point moves: the working frame (window of
    side `side`, resampled to S) has focal `f·S/side` and principal point `(p − (x0, y0))·S/side`.

    Args:
        cameras: the render cameras (boxes are in pixels of their height×width frame).
        boxes: crop windows in render pixels.
        size: working size S.
    Returns:
        S×S cameras: the same c2w, fovy spanning the window, the principal point in working pixels.
    """
    focal = cameras.focal  # [B] render pixels
    side = boxes.side.to(focal)
    fovy_w = 2.0 * torch.atan(0.5 * side / focal)
    principal = cameras.principal.to(focal)
    principal = torch.stack([principal[:, 0] - boxes.x0.to(focal), principal[:, 1] - boxes.y0.to(focal)], dim=-1)
    return Cameras(cameras.c2w, fovy_w, principal * (size / side)[:, None], int(size), int(size))


def render_in_frame(renderer: Any, cameras: Cameras, size: int,
                    stretch: Optional[Float[Tensor, "B 3"]] = None) -> Dict[str, Tensor]:
    """Render cameras at S×S (`cameras.rescaled(S, S)`): the working frame of a photo, or any frame.

    Uses the renderer's `render_rays(origins [N,3], directions [N,3])` when it has one (e.g. a
    `SilhouetteRenderer`, which has nothing else), otherwise the `Renderer` protocol's `render`.
    `stretch`: render camera b's view of the canonical stretched by stretch[b] along its axes (x ↦ stretch·x); it
    needs `render_rays`. xyz stays in the unstretched canonical.

    Returns:
        dict of [B,S,S,C] tensors (rgb, opacity, xyz, ...), as `Renderer.render`.
    """
    cameras = cameras.rescaled(size, size)
    if stretch is not None and not hasattr(renderer, "render_rays"):
        raise ValueError(f"a stretched canonical needs a renderer with render_rays, not {type(renderer).__name__}")
    if hasattr(renderer, "render_rays"):
        origins, dirs = get_rays(cameras)
        if stretch is not None:
            # the ray o + t·d through the stretched object is o/s + t·d/s through the canonical; t keeps world units,
            # so densities still integrate over world length
            inverse = 1.0 / stretch[:, None, None, :].to(origins)
            origins, dirs = origins * inverse, dirs * inverse
        out = renderer.render_rays(origins.reshape(-1, 3), dirs.reshape(-1, 3))
        return {k: v.reshape(len(cameras), size, size, -1) for k, v in out.items() if v.dim() == 2}
    return renderer.render(cameras, size, size)
