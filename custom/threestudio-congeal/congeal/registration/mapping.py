"""Per-image coordinate maps: a smooth 2D warp from each photo's working frame onto its canonical render.

    warps = fit_warps(image_feats, render_feats, image_masks, render_opacity, MappingConfig(steps=300))
    write_image_state(out, "cat", crop, (H, W), warps[0], xyz[0], opacity[0], masks[0, 0], camera)
    xyz, ok = forward_points(load_image_state(out, "cat"), pts)   # original pixels -> canonical xyz

Parameterisation (why): the warp is φ(u) = u + D(u), where D is a coarse displacement grid of G×G nodes per
image (default 16×16) spanning the frame corner to corner, evaluated anywhere by bilinear interpolation. That is
(1) smooth by construction — no high-frequency fold-overs — so the regulariser only has to damp the remaining
stretch; (2) cheap: G·G·2 parameters per image, one `grid_sample` to evaluate, all images in one batched tensor;
(3) resolution independent: the same D serves the S×S output, the loss grid and any original-pixel query. A small
MLP would be as smooth but needs many more steps per unit of displacement and a full forward pass per query.
Loss per image (each normalised by its own mask area): w_feature · masked ‖f_img(p) − f_render(φ(p))‖² on an L×L
grid + w_silhouette · Σ (mask(p) − opacity(φ(p)))² over the whole frame on a finer grid (lighting-independent: it
lands mask pixels on the render's opaque region and keeps background off it; it is what moves tips and thin parts)
+ w_smooth · mean ‖∇D‖² + w_identity · mean ‖D‖². Optimisation runs coarse-to-fine over box-blurred feature maps
and silhouettes so that shifts larger than a feature cell still see a gradient. Coordinates inside the optimiser
are normalised to [-1, 1] (align_corners=False, pixel centres).

Defaults were measured on the synthetic sets (fast preset, rgb features, 8 photos; keypoint PCK through the
canonical): the silhouette term carries most of the gain; rgb features help cross-instance but, against unshaded
renders of shaded photos, pull same-instance warps off, hence w_feature = 0.1. Richer features (DINOv2) likely
deserve a higher w_feature — a config field.

Forward map: original pixel -> working pixel (Crop) -> φ -> render xyz (bilinear, opacity-weighted, only where the
render is opaque). Reverse map: xyz -> its projection with the image's camera where that lands on the opaque render
within `reverse_behind` of the surface seen there (a point on the far side of the same thin part: the nearest visible
point would move it to the part's rim — measured on the synthetic same-instance set, PCK@0.05 0.76 -> 0.86); else
(occluded by another part, or a state without a camera) the nearest opaque render pixel (chunked `torch.cdist`) ->
sub-pixel step along the local xyz Jacobian; then -> nearest warp sample (inverse of φ) -> sub-pixel step along
φ's Jacobian -> original pixel; a 3D or a 2D distance beyond its threshold reports the point invalid instead of
guessing.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from congeal.common import atomic
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

STATE_FORMAT = "congeal-state-v1"


@dataclass
class MappingConfig:
    """Warp optimisation and forward/reverse-map settings (all serialisable)."""

    steps: int = 4000  # the paper's step count; the fast preset passes fewer
    lr: float = 0.02  # Adam step in normalised frame units ([-1, 1] spans the frame)
    lr_final: float = 0.002  # cosine decay target
    grid_size: int = 16  # displacement nodes per side (G)
    loss_resolution: int = 64  # loss evaluated on an L×L grid of pixel centres, L = min(S, this, oversample·h)
    loss_oversample: int = 2  # finer loss grids than 2× the feature map add cost, not information
    silhouette_resolution: int = 128  # the silhouette term's grid, min(S, this)
    blur_levels: Tuple[float, ...] = (0.25, 0.125, 0.0)  # box-blur width / feature-map side, one stage each
    w_feature: float = 0.1  # masked squared feature distance (low: rgb features see shading as misalignment)
    w_smooth: float = 0.5  # mean squared displacement gradient (dimensionless)
    w_identity: float = 0.05  # mean squared displacement (pull towards identity)
    w_silhouette: float = 1.0  # image mask at p vs render opacity at φ(p), over the whole frame (lighting-free)
    opacity_threshold: float = 0.5  # render pixels above this count as "object"
    mask_threshold: float = 0.5  # image-mask pixels above this count as "object"
    forward_snap: float = 0.03  # point queries: snap distance onto the mask / the render, fraction of S
    reverse_max_3d: float = 0.05  # reverse map: max 3D distance, fraction of the visible render's bbox diagonal
    reverse_max_2d: float = 0.04  # reverse map: max distance to a warp sample, fraction of S
    reverse_behind: float = 0.1  # reverse map: a point projecting onto the render at most this far (fraction of the
    #   visible render's bbox diagonal) from the surface seen there is taken at its projection (the far side of the
    #   same part); farther (occluded by another part) or off the render: the nearest visible point
    chunk_elements: int = 1 << 22  # cdist chunk size (rows × columns) for the nearest-neighbour searches


# ----------------------------------------------------------------------------------------------------------------
# coordinates and sampling


def pixel_centres(size: int, device=None, dtype=torch.float32) -> Tensor:
    """Working-pixel centres of an S×S frame. Returns [S,S,2] (x, y) = (j + 0.5, i + 0.5)."""
    r = torch.arange(size, device=device, dtype=dtype) + 0.5
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _to_norm(xy: Tensor, size: int) -> Tensor:
    """Working pixels -> grid_sample coordinates (align_corners=False)."""
    return xy * (2.0 / size) - 1.0


def _from_norm(u: Tensor, size: int) -> Tensor:
    return (u + 1.0) * (size / 2.0)


def _sample(field_hwc: Tensor, xy: Tensor, padding: str = "zeros") -> Tensor:
    """Bilinear sample of one S×S field at working-pixel points.

    Args:
        field_hwc: [S,S,C] field on working pixels.
        xy: [P,2] working-pixel points.
    Returns:
        [P,C].
    """
    size = field_hwc.shape[0]
    grid = _to_norm(xy, size).to(field_hwc.dtype).view(1, 1, -1, 2)
    out = F.grid_sample(field_hwc.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode=padding,
                        align_corners=False)
    return out[0, :, 0].transpose(0, 1)


def _displacement(disp: Tensor, u: Tensor) -> Tensor:
    """Displacement grid [N,2,G,G] (nodes at the frame corners) evaluated at normalised points u [N,h,w,2]."""
    return F.grid_sample(disp, u, mode="bilinear", padding_mode="border", align_corners=True).permute(0, 2, 3, 1)


def _box_blur(x: Tensor, width: int) -> Tensor:
    if width <= 1:
        return x
    k = width | 1  # odd so the blur is centred
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


# ----------------------------------------------------------------------------------------------------------------
# warp optimisation


def fit_warps(image_feats: Tensor, render_feats: Tensor, image_masks: Tensor, render_opacity: Tensor,
              cfg: Optional[MappingConfig] = None, progress: bool = True) -> Tensor:
    """Optimise one warp per image, all images at once.

    Each image's loss is normalised by its own mask area and its parameters are its own, so (with Adam) the result
    for an image does not depend on which other images share the batch.

    Args:
        image_feats: [N,C,h,w] features of the working images (L2-normalised along C).
        render_feats: [N,C,h,w] features of the canonical rendered at each image's pose, same extractor.
        image_masks: [N,1,S,S] object masks of the working images in [0,1].
        render_opacity: [N,1,S,S] render opacity in [0,1].
        cfg: MappingConfig; steps=0 returns the identity.
        progress: show a tqdm bar.
    Returns:
        warps [N,S,S,2]: for every working pixel centre of image n, the working-pixel (x, y) in its render.
    """
    cfg = cfg or MappingConfig()
    if image_feats.shape != render_feats.shape:
        raise ValueError(f"image_feats {tuple(image_feats.shape)} and render_feats {tuple(render_feats.shape)} differ")
    n, _, h, w = image_feats.shape
    size = image_masks.shape[-1]
    device = image_feats.device
    dtype = image_feats.dtype if image_feats.dtype in (torch.float32, torch.float64) else torch.float32
    img_f_full = image_feats.to(dtype)
    rnd_f_full = render_feats.to(dtype)
    opacity = render_opacity.to(device=device, dtype=dtype)
    masks = image_masks.to(device=device, dtype=dtype)
    grid_n = max(2, int(cfg.grid_size))
    disp = torch.zeros(n, 2, grid_n, grid_n, device=device, dtype=dtype, requires_grad=True)
    if cfg.steps <= 0 or n == 0:
        return _warps_at(disp.detach(), size)

    res = int(min(size, cfg.loss_resolution, cfg.loss_oversample * max(h, w)))
    u = _to_norm(pixel_centres(res, device, dtype), res).expand(n, res, res, 2)
    weights = F.adaptive_avg_pool2d(masks, res)  # [N,1,L,L]
    area = weights.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    # silhouettes are one channel: compare them on a finer grid than the features (thin parts, tips)
    res_s = int(min(size, cfg.silhouette_resolution))
    u_s = _to_norm(pixel_centres(res_s, device, dtype), res_s).expand(n, res_s, res_s, 2)
    area_s = F.adaptive_avg_pool2d(masks, res_s).sum(dim=(1, 2, 3)).clamp_min(1e-6)
    node_step = 2.0 / (grid_n - 1)

    opt = torch.optim.Adam([disp], lr=cfg.lr)
    levels = list(cfg.blur_levels) or [0.0]
    bounds = [round(cfg.steps * (i + 1) / len(levels)) for i in range(len(levels))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="mapping", leave=False)
    level_idx, img_f, rnd_f = -1, None, None
    for step in range(cfg.steps):
        li = next(i for i, b in enumerate(bounds) if step < b)
        if li != level_idx:  # coarse-to-fine: blur both feature maps the same way, then drop the blur
            level_idx = li
            width = int(round(levels[li] * max(h, w)))
            rnd_f = _box_blur(rnd_f_full, width)
            img_f = F.grid_sample(_box_blur(img_f_full, width), u, mode="bilinear", align_corners=False)
            sil_width = int(round(levels[li] * size))
            rnd_o = _box_blur(opacity, sil_width)
            img_o = F.grid_sample(_box_blur(masks, sil_width), u_s, mode="bilinear", align_corners=False)
        frac = step / max(1, cfg.steps - 1)
        for group in opt.param_groups:
            group["lr"] = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1.0 + math.cos(math.pi * frac))
        phi = u + _displacement(disp, u)
        warped = F.grid_sample(rnd_f, phi, mode="bilinear", padding_mode="zeros", align_corners=False)
        feat = (warped - img_f).pow(2).sum(dim=1, keepdim=True)
        phi_s = u_s + _displacement(disp, u_s)
        on_render = F.grid_sample(rnd_o, phi_s, mode="bilinear", padding_mode="zeros", align_corners=False)
        l_feat = (weights * feat).sum(dim=(1, 2, 3)) / area
        l_sil = (img_o - on_render).pow(2).sum(dim=(1, 2, 3)) / area_s
        gx = (disp[..., :, 1:] - disp[..., :, :-1]) / node_step
        gy = (disp[..., 1:, :] - disp[..., :-1, :]) / node_step
        l_smooth = gx.pow(2).mean(dim=(1, 2, 3)) + gy.pow(2).mean(dim=(1, 2, 3))
        l_id = disp.pow(2).mean(dim=(1, 2, 3))
        loss = (cfg.w_feature * l_feat + cfg.w_silhouette * l_sil + cfg.w_smooth * l_smooth
                + cfg.w_identity * l_id).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _warps_at(disp.detach(), size)


def _warps_at(disp: Tensor, size: int) -> Tensor:
    """Evaluate displacement grids [N,2,G,G] at the S×S pixel centres. Returns [N,S,S,2] working pixels."""
    n = disp.shape[0]
    u = _to_norm(pixel_centres(size, disp.device, disp.dtype), size).expand(n, size, size, 2)
    return _from_norm(u + _displacement(disp, u), size)


def identity_warp(size: int, device=None, dtype=torch.float32) -> Tensor:
    """The identity warp of an S×S frame. Returns [S,S,2]."""
    return pixel_centres(size, device, dtype)


# ----------------------------------------------------------------------------------------------------------------
# run-state files


@dataclass
class ImageState:
    """One image's working-frame data, as written by `write_image_state`.

    `scale`, `offset` [2]: working = original * scale + offset (the Crop, as an affine map).
    """

    name: str
    warp: Tensor  # [S,S,2] working pixel -> render working pixel
    render_xyz: Tensor  # [S,S,3], 0 where the render is empty
    render_opacity: Tensor  # [S,S,1]
    image_mask: Tensor  # [S,S]
    scale: Tensor  # [2]
    offset: Tensor  # [2]
    width: int
    height: int
    camera: Dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.warp.shape[0])

    def to_working(self, xy: Tensor) -> Tensor:
        """Original pixels [...,2] -> working pixels [...,2]."""
        return xy * self.scale + self.offset

    def to_original(self, xy: Tensor) -> Tensor:
        """Working pixels [...,2] -> original pixels [...,2]."""
        return (xy - self.offset) / self.scale

    def with_identity_warp(self) -> "ImageState":
        """A copy whose warp is the identity (mapping switched off)."""
        kw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        kw["warp"] = identity_warp(self.size, self.warp.device, self.warp.dtype)
        return ImageState(**kw)


def _call_crop(crop: Any, pts: np.ndarray) -> np.ndarray:
    for arg in (torch.as_tensor(pts, dtype=torch.float64), pts):
        try:
            out = crop.to_working(arg)
            return np.asarray(out.detach().cpu() if isinstance(out, Tensor) else out, dtype=np.float64)
        except Exception:  # noqa: BLE001 - try the other array type
            continue
    raise TypeError("crop.to_working accepts neither a tensor nor an array")


def crop_affine(crop: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The Crop (original -> working) as `working = original * scale + offset`.

    Args:
        crop: an `images.Crop` (uses `to_working`), a dict/object with x0, y0, side, size, or a (scale, offset) pair.
    Returns:
        scale [2], offset [2] float64 arrays.
    """
    if isinstance(crop, (tuple, list)) and len(crop) == 2:
        return np.asarray(crop[0], np.float64).reshape(2), np.asarray(crop[1], np.float64).reshape(2)
    if hasattr(crop, "to_working"):
        pts = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
        out = _call_crop(crop, pts)
        offset = out[0]
        scale = np.array([(out[1, 0] - out[0, 0]) / 100.0, (out[2, 1] - out[0, 1]) / 100.0])
        return scale, offset
    get = crop.get if isinstance(crop, dict) else lambda k: getattr(crop, k)
    x0, y0, side, size = (float(get(k)) for k in ("x0", "y0", "side", "size"))
    s = size / side
    return np.array([s, s]), np.array([-x0 * s, -y0 * s])


def _original_wh(original_size: Sequence[int], camera: Dict[str, Any]) -> Tuple[int, int]:
    """(width, height): taken from the camera when it says, else original_size read as `ImageCollection`'s (H, W)."""
    if camera and "width" in camera and "height" in camera:
        return int(camera["width"]), int(camera["height"])
    h, w = (int(v) for v in original_size)
    return w, h


def write_image_state(out_dir: PathLike, name: str, crop: Any, original_size: Sequence[int], warp: Tensor,
                      render_xyz: Tensor, render_opacity: Tensor, image_mask: Tensor, camera: Dict[str, Any],
                      cfg: Optional[MappingConfig] = None) -> None:
    """Write OUT/state/<name>.safetensors (internal) and OUT/maps/<name>.npz (public), atomically.

    Args:
        out_dir: the run directory.
        name: image name (file stem).
        crop: the image's `images.Crop` (original <-> working pixels).
        original_size: (height, width) of the original image, as `ImageCollection.original_sizes` (the camera's
            width/height win when present).
        warp: [S,S,2] from `fit_warps`.
        render_xyz: [S,S,3] canonical xyz of the render at the image's pose (working frame).
        render_opacity: [S,S,1] (or [S,S]) its opacity.
        image_mask: [S,S] the working image's object mask.
        camera: the image's poses.json entry (kept in the state's metadata).
        cfg: thresholds for the forward map.
    """
    cfg = cfg or MappingConfig()
    out_dir = Path(out_dir)
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
    atomic.write_safetensors(out_dir / "state" / f"{name}.safetensors", tensors, metadata=meta)
    state = _state_from(name, tensors, meta)
    xyz_map, valid = forward_map(state, cfg)
    atomic.write_npz(out_dir / "maps" / f"{name}.npz", xyz=xyz_map.numpy().astype(np.float32),
                     valid=valid.numpy().astype(bool))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Tensor, np.ndarray)):
        return np.asarray(obj.detach().cpu() if isinstance(obj, Tensor) else obj).tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _state_from(name: str, tensors: Dict[str, Tensor], meta: Dict[str, str], device=None) -> ImageState:
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


def load_image_state(run_dir: PathLike, name: str, device=None) -> ImageState:
    """Read OUT/state/<name>.safetensors.

    Raises:
        InputError: the run has no state for that name.
    """
    from safetensors import safe_open

    path = Path(run_dir) / "state" / f"{name}.safetensors"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(run_dir) / "state").glob("*.safetensors"))
        raise InputError(path, f"no registered image named {name!r} in this run",
                         f"use one of: {', '.join(known[:20]) or '(none: run `congeal register` first)'}")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if meta.get("format") != STATE_FORMAT:
        raise InputError(path, f"unknown state format {meta.get('format')!r}", "re-run `congeal register`")
    return _state_from(name, tensors, meta, device)


# ----------------------------------------------------------------------------------------------------------------
# forward map


def forward_points(state: ImageState, points: Tensor, cfg: Optional[MappingConfig] = None, snap: bool = False
                   ) -> Tuple[Tensor, Tensor]:
    """Original pixels -> canonical xyz through the image's warp.

    Args:
        state: the image's ImageState (use `state.with_identity_warp()` to switch mapping off).
        points: [P,2] original-pixel (x, y).
        cfg: thresholds.
        snap: for sparse queries (keypoints often sit right on the silhouette): accept points within
            `cfg.forward_snap`·S working pixels of the mask, and move a warped point that misses the render's opaque
            region by at most that much onto the nearest opaque render pixel. Off for the dense map.
    Returns:
        xyz [P,3] (NaN where invalid), valid [P] bool.
    """
    cfg = cfg or MappingConfig()
    size = state.size
    pts = torch.as_tensor(points, dtype=torch.float32, device=state.warp.device).reshape(-1, 2)
    w = state.to_working(pts)
    inside = ((w >= 0) & (w <= size)).all(dim=-1)
    in_mask = _sample(state.image_mask[..., None], w)[:, 0] > cfg.mask_threshold
    q = _sample(state.warp, w, padding="border")
    opacity = state.render_opacity
    op = _sample(opacity, q)[:, 0]
    if snap and cfg.forward_snap > 0:
        radius = cfg.forward_snap * size
        centres = pixel_centres(size, pts.device)
        miss = ~in_mask
        if bool(miss.any()):
            _, dist = _nearest(w[miss], centres[state.image_mask > cfg.mask_threshold], cfg.chunk_elements)
            in_mask = in_mask.clone()
            in_mask[miss] = dist <= radius
        off = op <= cfg.opacity_threshold
        if bool(off.any()):
            opaque = centres[opacity[..., 0] > cfg.opacity_threshold]
            idx, dist = _nearest(q[off], opaque, cfg.chunk_elements)
            near = dist <= radius
            if opaque.shape[0] > 0:
                q = q.clone()
                q[off] = torch.where(near[:, None], opaque[idx], q[off])
                op = _sample(opacity, q)[:, 0]
    xyz = _sample(state.render_xyz * opacity, q) / op.clamp_min(1e-6)[:, None]  # opacity-weighted: no halo
    valid = inside & in_mask & (op > cfg.opacity_threshold) & torch.isfinite(xyz).all(dim=-1)
    xyz = torch.where(valid[:, None], xyz, torch.full_like(xyz, float("nan")))
    return xyz, valid


def forward_map(state: ImageState, cfg: Optional[MappingConfig] = None, rows_per_chunk: int = 256
                ) -> Tuple[Tensor, Tensor]:
    """Canonical xyz for every pixel of the ORIGINAL image grid.

    Returns:
        xyz [H,W,3] float32 (NaN outside the object), valid [H,W] bool.
    """
    cfg = cfg or MappingConfig()
    device = state.warp.device
    xs = torch.arange(state.width, device=device, dtype=torch.float32) + 0.5
    xyz_rows, valid_rows = [], []
    for r0 in range(0, state.height, rows_per_chunk):  # chunks of rows bound the memory on large photos
        ys = torch.arange(r0, min(state.height, r0 + rows_per_chunk), device=device, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        xyz, valid = forward_points(state, torch.stack([xx, yy], -1).reshape(-1, 2), cfg)
        xyz_rows.append(xyz.reshape(len(ys), state.width, 3))
        valid_rows.append(valid.reshape(len(ys), state.width))
    return torch.cat(xyz_rows).cpu(), torch.cat(valid_rows).cpu()


# ----------------------------------------------------------------------------------------------------------------
# reverse map


def _nearest(queries: Tensor, keys: Tensor, chunk_elements: int) -> Tuple[Tensor, Tensor]:
    """Nearest key for every query, in chunks. queries [P,D], keys [M,D] -> (index [P], distance [P])."""
    if keys.shape[0] == 0:
        return (torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device),
                torch.full((queries.shape[0],), float("inf"), device=queries.device))
    step = max(1, chunk_elements // max(1, keys.shape[0]))
    idx, dist = [], []
    for i in range(0, queries.shape[0], step):
        d = torch.cdist(queries[i:i + step], keys)
        best = d.min(dim=1)
        idx.append(best.indices)
        dist.append(best.values)
    if not idx:
        return torch.zeros(0, dtype=torch.long, device=queries.device), torch.zeros(0, device=queries.device)
    return torch.cat(idx), torch.cat(dist)


def _jacobian(field_hwc: Tensor, valid: Tensor) -> Tensor:
    """Per-pixel derivative of a field along x and y, using only valid neighbours.

    Args:
        field_hwc: [S,S,D]; valid: [S,S] bool.
    Returns:
        [S,S,D,2] (d/dx, d/dy) per working pixel; 0 where no valid neighbour exists.
    """
    out = []
    for dim in (1, 0):  # x then y
        fwd = torch.roll(field_hwc, -1, dims=dim)
        bwd = torch.roll(field_hwc, 1, dims=dim)
        vf = torch.roll(valid, -1, dims=dim)
        vb = torch.roll(valid, 1, dims=dim)
        n = valid.shape[dim]
        edge = torch.arange(n, device=valid.device)
        last = (edge == n - 1).view(-1, 1) if dim == 0 else (edge == n - 1).view(1, -1)
        first = (edge == 0).view(-1, 1) if dim == 0 else (edge == 0).view(1, -1)
        vf = vf & ~last & valid
        vb = vb & ~first & valid
        both = (vf & vb)[..., None]
        d = torch.where(both, (fwd - bwd) / 2.0,
                        torch.where(vf[..., None], fwd - field_hwc,
                                    torch.where(vb[..., None], field_hwc - bwd, torch.zeros_like(field_hwc))))
        out.append(d)
    return torch.stack(out, dim=-1)


def _subpixel_step(jac: Tensor, residual: Tensor, limit: float = 1.0) -> Tensor:
    """Least-squares δ with jac·δ ≈ residual, damped and clamped. jac [P,D,2], residual [P,D] -> δ [P,2]."""
    jtj = jac.transpose(1, 2) @ jac
    damp = 1e-3 * jtj.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)
    eye = torch.eye(2, device=jac.device, dtype=jac.dtype)
    delta = torch.linalg.solve(jtj + damp[:, None, None] * eye, (jac.transpose(1, 2) @ residual[..., None]))[..., 0]
    return delta.clamp(-limit, limit)


def _project_working(state: ImageState, xyz: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
    """Project canonical points with the state's camera (its poses.json record) into working pixels.

    Returns:
        (working-pixel xy [P,2], depth along the viewing axis [P]) or None when the state has no camera.
    """
    cam = state.camera or {}
    if not all(k in cam for k in ("c2w", "fl_x", "fl_y", "cx", "cy")):
        return None
    c2w = torch.as_tensor(cam["c2w"], dtype=torch.float64, device=xyz.device)
    local = (xyz.double() - c2w[:3, 3]) @ c2w[:3, :3]  # R^T (p - t), camera axes OpenGL (looks down -z)
    depth = -local[:, 2]
    safe = torch.where(depth.abs() > 1e-9, depth, torch.full_like(depth, 1e-9))
    x = float(cam["fl_x"]) * local[:, 0] / safe + float(cam["cx"])
    y = -float(cam["fl_y"]) * local[:, 1] / safe + float(cam["cy"])
    return state.to_working(torch.stack([x, y], dim=-1).to(xyz.dtype)), depth.to(xyz.dtype)


def reverse_points(state: ImageState, xyz: Tensor, cfg: Optional[MappingConfig] = None) -> Tuple[Tensor, Tensor]:
    """Canonical xyz -> original pixels of this image (the inverse of `forward_points`).

    Args:
        state: the target image's ImageState (use `state.with_identity_warp()` to switch mapping off).
        xyz: [P,3] canonical points (NaN rows come back invalid).
        cfg: thresholds (`reverse_max_3d`, `reverse_max_2d`, `opacity_threshold`, `mask_threshold`).
    Returns:
        points [P,2] original-pixel (x, y) (NaN where invalid), valid [P] bool.
    """
    cfg = cfg or MappingConfig()
    size = state.size
    device = state.warp.device
    xyz = torch.as_tensor(xyz, dtype=torch.float32, device=device).reshape(-1, 3)
    finite = torch.isfinite(xyz).all(dim=-1)
    queries = torch.where(finite[:, None], xyz, torch.zeros_like(xyz))
    centres = pixel_centres(size, device)

    # 1) nearest visible rendered point, then a sub-pixel step along the render's xyz Jacobian
    visible = state.render_opacity[..., 0] > cfg.opacity_threshold
    keys = state.render_xyz[visible]
    key_px = centres[visible]
    j, d3 = _nearest(queries, keys, cfg.chunk_elements)
    if keys.shape[0] > 0:
        diag = (keys.max(0).values - keys.min(0).values).norm().clamp_min(1e-6)
        jac = _jacobian(state.render_xyz, visible)[visible][j]  # [P,3,2]
        q = key_px[j] + _subpixel_step(jac, queries - keys[j])
    else:
        diag = torch.tensor(1.0, device=device)
        q = torch.zeros_like(queries[:, :2])
    ok3 = finite & (d3 <= cfg.reverse_max_3d * diag)
    # 1b) where the state knows its camera: the point's own projection, when it lands on the render near the surface
    #     seen there (the nearest visible point moves points on the far side of a thin part to its rim)
    proj = _project_working(state, queries)
    if proj is not None and keys.shape[0] > 0:
        qp, depth = proj
        op = _sample(state.render_opacity, qp)[:, 0]
        seen = _sample(state.render_xyz * state.render_opacity, qp) / op.clamp_min(1e-6)[:, None]
        inside = ((qp >= 0) & (qp <= size)).all(dim=-1)
        on = finite & inside & (depth > 0) & (op > cfg.opacity_threshold) & (
            (seen - queries).norm(dim=-1) <= cfg.reverse_behind * diag)
        q = torch.where(on[:, None], qp, q)
        ok3 = ok3 | on

    # 2) inverse warp: nearest warp sample inside the image mask, then a step along φ's Jacobian
    in_mask = state.image_mask > cfg.mask_threshold
    samples = state.warp[in_mask]
    k, d2 = _nearest(q, samples, cfg.chunk_elements)
    if samples.shape[0] > 0:
        wjac = _jacobian(state.warp, torch.ones_like(in_mask))[in_mask][k]  # [P,2,2]
        p = centres[in_mask][k] + _subpixel_step(wjac, q - samples[k])
    else:
        p = torch.zeros_like(q)
    ok2 = d2 <= cfg.reverse_max_2d * size
    valid = ok3 & ok2
    out = state.to_original(p)
    out = torch.where(valid[:, None], out, torch.full_like(out, float("nan")))
    return out, valid


def config_dict(cfg: MappingConfig) -> Dict[str, Any]:
    """MappingConfig as a JSON-able dict."""
    d = asdict(cfg)
    d["blur_levels"] = list(d["blur_levels"])
    return d
