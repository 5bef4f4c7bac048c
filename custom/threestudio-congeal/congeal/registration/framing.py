"""Framing: crop renders to their object's bounding box, made square with a margin, resized to the working size.

    boxes = square_boxes(opacity, margin=0.1)                         # opacity [B,H,W,1] -> Boxes (x0, y0, side)
    framed = crop_resize(torch.cat([rgb, opacity], -1).permute(0, 3, 1, 2), boxes, size=64)   # [B,4,64,64]
    c2w, fovy_w, principal = camera_in_frame(c2w, fovy, render_size, boxes, 64)   # that frame's camera (exact)
    out = render_in_frame(renderer, c2w, fovy_w, principal, 64)      # render straight into a working frame

Photos get the same treatment from `congeal.io.collection.Crop`, so a photo and a render are compared in the same
normalised frame and neither translation nor scale has to be searched. Pixel-centre convention throughout: the
centre of working pixel (row i, col j) is `(j + 0.5, i + 0.5)` and lies at `(x0 + (j+0.5)·side/S, ...)` in the
render. Working-frame cameras keep an explicit principal point (`principal` [B,2] in working pixels): a crop
moves the principal point, it does not move the camera.
"""
from dataclasses import dataclass
import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from congeal.geometry.cameras import focal_from_fovy


@dataclass
class Boxes:
    """Square crop windows in (render) pixel coordinates: top-left `x0`, `y0` [B] and `side` [B]."""

    x0: Tensor
    y0: Tensor
    side: Tensor

    def centre(self) -> Tensor:
        """[B,2] (x, y) centre of each window."""
        return torch.stack([self.x0 + 0.5 * self.side, self.y0 + 0.5 * self.side], dim=-1)

    def index(self, idx: Tensor) -> "Boxes":
        return Boxes(self.x0[idx], self.y0[idx], self.side[idx])

    def to(self, device) -> "Boxes":
        return Boxes(self.x0.to(device), self.y0.to(device), self.side.to(device))


def bounding_boxes(opacity: Tensor, threshold: float = 0.5) -> Tensor:
    """Tight pixel bounding boxes of `opacity > threshold`.

    Args:
        opacity: [B,H,W,1] or [B,H,W].
        threshold: opacity above which a pixel belongs to the object.
    Returns:
        [B,4] (x0, y0, x1, y1) in continuous pixel coordinates (pixel edges); an empty mask gives the full frame.
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


def square_boxes(opacity: Tensor, margin: float = 0.1, threshold: float = 0.5) -> Boxes:
    """Square windows around each object: the bbox's longer side grown by `margin` on every side.

    Args:
        opacity: [B,H,W,1] or [B,H,W].
        margin: fraction of the longer bbox side added on each side (side = longer · (1 + 2·margin)); must equal the
            photos' crop margin so both are framed alike.
        threshold: object threshold on opacity.
    Returns:
        Boxes with x0, y0, side [B] (render pixels); windows may extend past the render (zero padding).
    """
    box = bounding_boxes(opacity, threshold)
    centre = 0.5 * (box[:, :2] + box[:, 2:])
    longer = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]).clamp_min(1.0)
    side = longer * (1.0 + 2.0 * margin)
    return Boxes(centre[:, 0] - 0.5 * side, centre[:, 1] - 0.5 * side, side)


def crop_resize(images: Tensor, boxes: Boxes, size: int, supersample: int = 2) -> Tensor:
    """Resample each image's square window to `size`×`size`, batched with per-item affine grids.

    Args:
        images: [B,C,H,W].
        boxes: windows in the images' pixel coordinates.
        size: output side S.
        supersample: samples per output pixel per axis, averaged (anti-aliasing when the window is larger than S).
    Returns:
        [B,C,S,S]; outside the source image the result is 0.
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


def camera_in_frame(c2w: Tensor, fovy: Tensor, render_size: Tuple[int, int], boxes: Boxes,
                    size: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Express a centred camera's cropped and resized view as a working-frame camera (exact).

    Cropping keeps the camera and its focal length; only the principal point moves: the working frame (window of
    side `side`, resampled to S) has focal `f·S/side` and principal point `(W/2 − x0, H/2 − y0)·S/side`.

    Args:
        c2w: [B,4,4] render cameras (principal point at the render centre).
        fovy: [B] radians, vertical FoV of the render.
        render_size: (height, width) of the render in pixels.
        boxes: crop windows in render pixels.
        size: working size S.
    Returns:
        c2w [B,4,4] (unchanged), fovy_w [B] (radians, FoV spanned by the working frame's height),
        principal [B,2] (x, y) in working pixels.
    """
    height, width = render_size
    focal = focal_from_fovy(fovy, height)  # [B] render pixels
    side = boxes.side.to(focal)
    fovy_w = 2.0 * torch.atan(0.5 * side / focal)
    principal = torch.stack([0.5 * width - boxes.x0.to(focal), 0.5 * height - boxes.y0.to(focal)], dim=-1)
    return c2w, fovy_w, principal * (size / side)[:, None]


def frame_rays(c2w: Tensor, fovy: Tensor, principal: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """World rays through the pixel centres of S×S working frames with an explicit principal point.

    Args:
        c2w: [B,4,4]; fovy: [B] radians spanning the frame height; principal: [B,2] (x, y) working pixels.
        size: S.
    Returns:
        origins, directions [B,S,S,3] (unit directions); differentiable in all inputs.
    """
    dtype = c2w.dtype
    focal = focal_from_fovy(fovy.to(dtype), size)  # [B]
    centres = torch.arange(size, device=c2w.device, dtype=dtype) + 0.5
    x = (centres[None, None, :] - principal[:, 0, None, None].to(dtype)) / focal[:, None, None]  # [B,1,S]
    y = -(centres[None, :, None] - principal[:, 1, None, None].to(dtype)) / focal[:, None, None]  # [B,S,1]
    x, y = torch.broadcast_tensors(x, y)
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # camera looks down -z, y up
    dirs = F.normalize(torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], dirs_cam), dim=-1)
    return c2w[:, None, None, :3, 3].expand_as(dirs), dirs


def render_in_frame(renderer, c2w: Tensor, fovy: Tensor, principal: Tensor, size: int) -> Dict[str, Tensor]:
    """Render working-frame cameras at S×S.

    Uses the renderer's `render_rays(origins [N,3], directions [N,3])` when it has one (exact, no wasted rays);
    otherwise renders a centred image large enough to hold the window and crops it.

    Returns:
        dict of [B,S,S,C] tensors (rgb, opacity, xyz, ...), as `Renderer.render`.
    """
    batch = c2w.shape[0]
    if hasattr(renderer, "render_rays"):
        origins, dirs = frame_rays(c2w, fovy, principal, size)
        out = renderer.render_rays(origins.reshape(-1, 3), dirs.reshape(-1, 3))
        return {k: v.reshape(batch, size, size, -1) for k, v in out.items() if v.dim() == 2}
    # centred render of side L whose centre is the principal point, then crop the S-window out of it
    reach = torch.cat([principal, size - principal], dim=-1).abs().amax().item()
    big = int(math.ceil(2 * reach))
    focal = focal_from_fovy(fovy, size)
    fovy_big = 2.0 * torch.atan(0.5 * big / focal)
    out = renderer.render(c2w, fovy_big, big, big)
    boxes = Boxes(0.5 * big - principal[:, 0], 0.5 * big - principal[:, 1], torch.full_like(fovy, float(size)))
    result = {}
    for key, value in out.items():
        framed = crop_resize(value.permute(0, 3, 1, 2), boxes, size, supersample=1)
        result[key] = framed.permute(0, 2, 3, 1)
    return result
