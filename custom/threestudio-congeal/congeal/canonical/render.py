"""The renderer protocol and the baked-grid ray marcher.

    renderer = GridRenderer(load_canonical("canonical.safetensors"), num_samples=64)
    cameras = Cameras.from_spherical(torch.tensor([30.0]), torch.tensor([15.0]), torch.tensor([3.0]),
                                     fovy=0.7, height=64, width=64)
    out = renderer.render(cameras, 64, 64)
    out["rgb"], out["opacity"], out["xyz"], out["depth"]   # [B,H,W,3], [B,H,W,1], [B,H,W,3], [B,H,W,1]

Registration never calls a NeRF directly: it calls anything with `render(cameras, height, width)`. The grid
renderer marches every ray through the occupied part of the canonical's box with `num_samples` evenly spaced
midpoint samples (deterministic, so renders are reproducible and finite differences are meaningful), reads density
by trilinear interpolation, alpha-composites, and reads colour only at the samples that contribute. Trilinear reads
are two bilinear `grid_sample`s on a 2D atlas of the grid's z-slices blended along z: exactly trilinear, and several
times faster on CPU than 3D `grid_sample` (whose CPU kernel is not vectorised). It is differentiable w.r.t. the
cameras (sample positions move with the rays), batched over all rays, and chunked over the rays that hit the box
so memory is bounded at any batch size. The dtype follows `cameras.c2w` (fp32 by default; fp64 for gradient
checks).
"""
from typing import Dict, Protocol, Tuple, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.geometry.cameras import Cameras, get_rays
from congeal.canonical.grid import Canonical, validate_canonical

__all__ = ["Renderer", "GridRenderer", "ray_box_intersection"]

#: Samples (rays × num_samples) per marching step on CPU, whatever `chunk_rays` says: keeps the per-sample arrays
#: in cache, about twice as fast as big steps (the work is memory-bound).
CPU_CHUNK_SAMPLES = 2**18


@runtime_checkable
class Renderer(Protocol):
    """Anything registration can render candidates and hypotheses with."""

    def render(self, cameras: Cameras, height: int, width: int) -> Dict[str, Tensor]:
        """B cameras seen at height×width (`cameras.rescaled(height, width)`, principal point honoured) ->
        {"rgb" [B,H,W,3] premultiplied (black background), "opacity" [B,H,W,1], "xyz" [B,H,W,3] expected
        termination point / opacity (0 where empty), optionally "depth" [B,H,W,1]}; differentiable w.r.t. the
        cameras' tensors."""
        ...


def ray_box_intersection(origins: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"], lo: Float[Tensor, "3"],
                         hi: Float[Tensor, "3"]) -> Tuple[Float[Tensor, "N"], Float[Tensor, "N"]]:
    """Slab test of rays against an axis-aligned box [lo, hi].

    Returns:
        near, far ray parameters (near clamped at 0); the ray hits where far > near.
    """
    # Axis-parallel rays: a tiny direction component gives ±huge slab distances, which min/max handle.
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    inv = 1.0 / safe
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far


def _atlas(volume: Tensor) -> Tensor:
    """Lay a volume [R,R,R] indexed [ix,iy,iz] out as a 2D image [(R+2)·(R+1), R] for bilinear lookups.

    Slice s (rows s·(R+1) … s·(R+1)+R-1) holds iz = s-1; slices 0 and R+1 are zero and every slice is followed by
    one zero row, so bilinear reads at a slice's border blend with zeros exactly like 3D zero padding does.
    """
    r = volume.shape[0]
    zyx = volume.permute(2, 1, 0)  # [Z,Y,X]
    zyx = F.pad(zyx, (0, 0, 0, 1, 1, 1))  # gap row after each slice, zero slice at both ends
    return zyx.reshape((r + 2) * (r + 1), r)


def _atlas_grid(gx: Tensor, gy: Tensor, uz: Tensor, resolution: int, rows: int) -> Tuple[Tensor, Tensor]:
    """grid_sample coordinates of two atlas reads per point (slices ⌊uz⌋ and ⌊uz⌋+1).

    Args:
        gx: [...] normalised x (grid_sample's −1…1 across the atlas width).
        gy: [...] normalised y of the point within slice 0 of the atlas (see `_atlas_coords`).
        uz: [...] z in cell units (cell i's centre at i), inside [-1, R].
        resolution: R; rows: the atlas height (R+2)·(R+1).
    Returns:
        grid [1,M,2,2] (M = numel), fz [...] the blend weight along z.
    """
    kz = torch.floor(uz).detach()
    fz = uz - kz
    slice_step = (resolution + 1) * (2.0 / rows)  # one slice down the atlas, normalised
    gy0 = torch.add(gy, kz, alpha=slice_step)
    gy1 = gy0 + slice_step
    return torch.stack([gx, gy0, gx, gy1], dim=-1).reshape(1, -1, 2, 2), fz


def _normalisers(resolution: int, rows: int) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """(scale, shift) taking cell-unit x to normalised atlas x, and cell-unit y to normalised y in slice 0."""
    r = resolution
    return (2.0 / r, 1.0 / r - 1.0), (2.0 / rows, (r + 1.5) * (2.0 / rows) - 1.0)


def _atlas_coords(ux: Tensor, uy: Tensor, uz: Tensor, resolution: int, rows: int) -> Tuple[Tensor, Tensor]:
    """`_atlas_grid` from cell coordinates (ux, uy, uz) [...] (cell i's centre at i, each inside [-1, R])."""
    (sx, tx), (sy, ty) = _normalisers(resolution, rows)
    # Slice s = iz + 1 starts at row s·(R+1); +0.5 turns a row index into grid_sample's pixel-centre position.
    return _atlas_grid(ux * sx + tx, uy * sy + ty, uz, resolution, rows)


def _sample_atlas(atlas: Tensor, grid: Tensor, fz: Tensor) -> Tensor:
    """Trilinear read: two bilinear `grid_sample`s (slices ⌊uz⌋, ⌊uz⌋+1) blended along z.

    This is exactly trilinear interpolation with zero padding, and PyTorch's single-channel 2D CPU kernel is
    vectorised while its 3D kernel is not (several times faster here).

    Args:
        atlas: [C,1,Ha,R] stacked single-channel atlases; grid [1,M,2,2], fz [...] (M = fz.numel()): from
            `_atlas_coords`.
    Returns:
        [C,...] values shaped like fz (zero outside the grid).
    """
    out = []
    for channel in atlas.unbind(0):  # one call per channel: the 1-channel kernel is the fast one
        values = F.grid_sample(channel[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        values = values.reshape(*fz.shape, 2)
        v0 = values[..., 0]
        out.append(torch.addcmul(v0, fz, values[..., 1] - v0))
    return torch.stack(out, dim=0)


class GridRenderer(torch.nn.Module):
    """Ray-marches a `Canonical` grid; implements `Renderer`.

    Args:
        canonical: the baked grid.
        num_samples: samples per ray, the midpoints of equal steps between the ray's entry into and exit from the
            occupied box (deterministic).
        chunk_rays: rays marched per step; bounds memory at ~ chunk_rays · num_samples · 60 bytes (fp32) without
            autograd. On CPU at most CPU_CHUNK_SAMPLES / num_samples rays (4096 at 64 samples) at once.
        occupancy_threshold: per-cell opacity under which a cell counts as empty when fitting the marching box.
        colour_weight_threshold: colour is read only at samples whose compositing weight exceeds this (the few
            near the surface); the rgb error is at most num_samples × threshold and in practice far smaller.
            0 reads colour at every sample with non-zero weight.
        front_level, front_gap_cells: 0 (default): xyz and depth are the expected termination point. > 0: where
            the ray's opacity first reaches `front_level` more than `front_gap_cells` cells before that point — a thin
            or faint part in front of another surface (an ear before the head), where the expected point falls in
            the empty space between them — xyz and depth are that first crossing instead (not differentiable).
    """

    def __init__(
        self,
        canonical: Canonical,
        num_samples: int = 64,
        chunk_rays: int = 2**18,
        occupancy_threshold: float = 1e-4,
        colour_weight_threshold: float = 1e-4,
        front_level: float = 0.0,
        front_gap_cells: float = 2.0,
    ):
        super().__init__()
        validate_canonical(canonical)
        if num_samples < 1 or chunk_rays < 1:
            raise ValueError("num_samples and chunk_rays must be positive")
        self.radius = float(canonical.radius)
        self.resolution = int(canonical.resolution)
        self.num_samples = int(num_samples)
        self.chunk_rays = int(chunk_rays)
        self.colour_weight_threshold = float(colour_weight_threshold)
        self.front_level = float(front_level)
        self.front_gap_cells = float(front_gap_cells)
        density = canonical.density.detach().float().cpu()
        rgb = canonical.rgb.detach().float().cpu()
        self.register_buffer("density_atlas", _atlas(density)[None, None], persistent=False)  # [1,1,Ha,R]
        rgb_atlas = torch.stack([_atlas(rgb[..., c]) for c in range(3)])[:, None]  # [3,1,Ha,R]
        self.register_buffer("rgb_atlas", rgb_atlas, persistent=False)
        lo, hi = self._occupied_box(canonical, occupancy_threshold)
        self.register_buffer("box_lo", lo, persistent=False)
        self.register_buffer("box_hi", hi, persistent=False)
        self.to(canonical.density.device)
        self._cast: Dict[Tuple, Tuple[Tensor, Tensor]] = {}

    @staticmethod
    def _occupied_box(canonical: Canonical, threshold: float) -> Tuple[Tensor, Tensor]:
        """Corners [3], [3] of the box around cells with any visible density, padded by one cell (the trilinear
        footprint) and clipped to the grid; marching only there concentrates the samples on the object."""
        cell = canonical.cell_size
        occupied = (1.0 - torch.exp(-canonical.density.detach().float().cpu() * cell)) > threshold
        if not bool(occupied.any()):
            centre = torch.zeros(3)
            return centre, centre  # empty grid: no ray hits
        index = occupied.nonzero()
        first = index.amin(0).float()
        last = index.amax(0).float()
        lo = (-canonical.radius + (first - 1.0) * cell).clamp_min(-canonical.radius)
        hi = (-canonical.radius + (last + 2.0) * cell).clamp_max(canonical.radius)
        return lo, hi

    def _chunk(self, device: torch.device) -> int:
        """Rays per marching step: `chunk_rays`, capped on CPU to CPU_CHUNK_SAMPLES samples."""
        if device.type != "cpu":
            return self.chunk_rays
        return max(1, min(self.chunk_rays, CPU_CHUNK_SAMPLES // self.num_samples))

    def _atlases(self, like: Tensor) -> Tuple[Tensor, Tensor]:
        if self.density_atlas.dtype == like.dtype and self.density_atlas.device == like.device:
            return self.density_atlas, self.rgb_atlas
        key = (like.dtype, like.device)
        if key not in self._cast:
            self._cast[key] = (self.density_atlas.to(like), self.rgb_atlas.to(like))
        return self._cast[key]

    def _march(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor) -> Tensor:
        """Render hit rays: [n,3],[n,3],[n],[n] -> [n,5] (rgb 3, opacity, Σ weight·t).

        Written for few passes over the [n,S] sample arrays: on CPU the cost is memory traffic, not arithmetic.
        """
        density_atlas, rgb_atlas = self._atlases(origins)
        r, s = self.resolution, self.num_samples
        t, span, (grid, fz) = self._ray_coords(origins, directions, near, far)  # t [n,S]
        sigma = _sample_atlas(density_atlas, grid, fz)[0]  # [n,S]
        # Weights w_i = T_i − T_{i+1} with T_i = exp(−Σ_{j<i} σ_j δ): one exp, exact compositing.
        survive = torch.exp(torch.cumsum(sigma, dim=-1) * (-span / s))  # T_{i+1}, [n,S]
        weights = F.pad(survive[:, :-1], (1, 0), value=1.0) - survive
        opacity = 1.0 - survive[:, -1]
        t_sum = (weights * t).sum(-1)
        if self.front_level > 0:
            front, t_front = self._front_surface(t_sum, survive, opacity, t, span)
            t_sum = torch.where(front, t_front * opacity, t_sum)
        flat_w = weights.reshape(-1)
        with torch.no_grad():
            keep = (flat_w > self.colour_weight_threshold).nonzero().squeeze(-1)
        ray = keep // s
        scale = r / (2.0 * self.radius)
        points = torch.addcmul(origins[ray], t.reshape(-1)[keep, None], directions[ray])  # near-surface samples
        u_keep = points * scale + (0.5 * r - 0.5)
        colour = _sample_atlas(rgb_atlas, *_atlas_coords(*u_keep.unbind(-1), r, density_atlas.shape[-2]))  # [3,k]
        rgb = origins.new_zeros(t.shape[0], 3).index_add(0, ray, flat_w[keep, None] * colour.t())
        return torch.cat([rgb, opacity[:, None], t_sum[:, None]], dim=-1)

    def render_rays(self, origins: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]) -> Dict[str, Tensor]:
        """Render arbitrary rays (unit directions) -> rgb [N,3], opacity [N,1], xyz [N,3] (0 where empty),
        t [N,1] expected ray distance (0 where empty)."""
        n = origins.shape[0]
        lo = self.box_lo.to(origins)
        hi = self.box_hi.to(origins)
        near, far = ray_box_intersection(origins, directions, lo, hi)
        with torch.no_grad():
            index = (far > near + 1e-9).nonzero().squeeze(-1)
        packed = origins.new_zeros(n, 5)
        if index.numel() > 0:
            # On CPU, cache-sized chunks run about twice as fast as big ones (the work is memory-bound).
            size = self._chunk(origins.device)
            parts = [
                self._march(origins[chunk], directions[chunk], near[chunk], far[chunk])
                for chunk in index.split(size)
            ]
            packed = packed.index_copy(0, index, torch.cat(parts, dim=0))
        rgb, opacity, t_sum = packed[:, :3], packed[:, 3:4], packed[:, 4:5]
        # Normalise by opacity where there is any; empty rays get exact zeros (and zero gradient).
        nonempty = opacity > 1e-6
        t_mean = torch.where(nonempty, t_sum / torch.where(nonempty, opacity, torch.ones_like(opacity)),
                             torch.zeros_like(opacity))
        xyz = torch.where(nonempty, origins + directions * t_mean, torch.zeros_like(origins))
        return {"rgb": rgb, "opacity": opacity, "xyz": xyz, "t": t_mean}

    @torch.no_grad()
    def _front_surface(self, t_sum: Tensor, survive: Tensor, opacity: Tensor, t: Tensor, span: Tensor
                       ) -> Tuple[Tensor, Tensor]:
        """(rays whose opacity first reaches `front_level` more than `front_gap_cells` cells before their expected
        termination point [n] bool, the ray distance of that crossing [n])."""
        s = self.num_samples
        reached = (1.0 - survive) >= self.front_level  # after each sample, [n,S]
        i = reached.float().argmax(-1)  # the first sample at or above the level (0 where none)
        before = torch.where(i > 0, 1.0 - survive.gather(1, (i - 1).clamp_min(0)[:, None])[:, 0],
                             torch.zeros_like(opacity))
        after = 1.0 - survive.gather(1, i[:, None])[:, 0]
        step = span[:, 0] / s
        fraction = ((self.front_level - before) / (after - before).clamp_min(1e-9)).clamp(0, 1)
        t_front = t.gather(1, i[:, None])[:, 0] - 0.5 * step + fraction * step  # linear within the sample's step
        t_mean = t_sum / opacity.clamp_min(1e-6)
        gap = self.front_gap_cells * 2.0 * self.radius / self.resolution
        return reached.any(-1) & (t_mean - t_front > gap), t_front

    def _ray_coords(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor):
        """Sample distances t [n,S] (midpoints of S equal steps), the span [n,1] and atlas coordinates (grid, fz)
        of every sample."""
        r, s = self.resolution, self.num_samples
        steps = (torch.arange(s, device=origins.device, dtype=origins.dtype) + 0.5) / s
        span = (far - near)[:, None]
        t = torch.addcmul(near[:, None], span, steps)
        # Cell coordinates are affine in t per ray: u = a + t·b with u = p·R/(2·radius) + R/2 − 0.5; so are the
        # normalised atlas x and slice-0 y, which are therefore computed straight from t (fewer passes).
        rows = self.density_atlas.shape[-2]
        scale = r / (2.0 * self.radius)
        a = origins * scale + (0.5 * r - 0.5)
        b = directions * scale
        (sx, tx), (sy, ty) = _normalisers(r, rows)
        gx = torch.addcmul(a[:, 0:1] * sx + tx, t, b[:, 0:1] * sx)
        gy = torch.addcmul(a[:, 1:2] * sy + ty, t, b[:, 1:2] * sy)
        uz = torch.addcmul(a[:, 2:3], t, b[:, 2:3])
        return t, span, _atlas_grid(gx, gy, uz, r, rows)

    def render_opacity_rays(self, origins: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]) -> Dict[str, Tensor]:
        """Opacity only, for silhouette losses: unit-direction rays -> {"opacity": [N,1]}.

        Same samples as `render_rays`, so the opacity is the same, but in closed form 1 − exp(−δ·Σσ): no colour,
        no transmittance, about half the work of a full render. Differentiable w.r.t. the rays.
        """
        near, far = ray_box_intersection(origins, directions, self.box_lo.to(origins), self.box_hi.to(origins))
        with torch.no_grad():
            index = (far > near + 1e-9).nonzero().squeeze(-1)
        opacity = origins.new_zeros(origins.shape[0], 1)
        if index.numel() == 0:
            return {"opacity": opacity}
        density_atlas, _ = self._atlases(origins)
        size = self._chunk(origins.device)
        parts = []
        for chunk in index.split(size):
            _, span, (grid, fz) = self._ray_coords(origins[chunk], directions[chunk], near[chunk], far[chunk])
            sigma = _sample_atlas(density_atlas, grid, fz)[0]
            parts.append(1.0 - torch.exp(sigma.sum(-1, keepdim=True) * (-span / self.num_samples)))
        return {"opacity": opacity.index_copy(0, index, torch.cat(parts, dim=0))}

    def render(self, cameras: Cameras, height: int, width: int) -> Dict[str, Tensor]:
        """Render B cameras at height×width (`Renderer` protocol).

        Args:
            cameras: threestudio-convention cameras (`cameras.c2w`'s dtype sets the computation's dtype); they are
                seen at height×width through `cameras.rescaled`.
            height, width: image size.
        Returns:
            rgb [B,H,W,3] premultiplied (black background); opacity [B,H,W,1]; xyz [B,H,W,3] expected termination
            point (canonical coordinates) normalised by opacity, 0 where empty; depth [B,H,W,1] that point's depth
            along the camera's viewing axis (same as `congeal.geometry.cameras.project`'s depth), 0 where empty.
        """
        cameras = cameras.rescaled(height, width)
        c2w = cameras.c2w
        b = c2w.shape[0]
        origins, directions = get_rays(cameras)
        out = self.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
        forward = -c2w[:, :3, 2]  # [B,3] viewing direction
        cos = (directions * forward[:, None, None, :]).sum(-1, keepdim=True)  # [B,H,W,1]
        depth = out["t"].reshape(b, height, width, 1) * cos
        return {
            "rgb": out["rgb"].reshape(b, height, width, 3),
            "opacity": out["opacity"].reshape(b, height, width, 1),
            "xyz": out["xyz"].reshape(b, height, width, 3),
            "depth": depth,
        }

    forward = render
