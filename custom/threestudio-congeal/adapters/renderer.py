"""A threestudio renderer seen through congeal's renderer protocol (`render(cameras, H, W)`).

    renderer = ThreestudioRenderer(run.renderer)
    out = renderer.render(cameras, 64, 64)   # {"rgb", "opacity", "xyz", "depth"}, differentiable w.r.t. the cameras

Rays come from `congeal.geometry.cameras.get_rays` (threestudio's convention; `Cameras` carry their principal
point, so working-frame cameras render directly) or arrive through `render_rays`; the threestudio renderer marches them with a black background (so
`rgb` is premultiplied, like the baked grid renderer's), and `xyz` is the expected termination point
`rays_o + (depth / opacity) · rays_d` (threestudio's `depth` is the weight-sum of distances, not normalised by
opacity). Rays are rendered in chunks so memory stays bounded at any batch size.
"""
from typing import Any, Dict

import torch
from jaxtyping import Float
from torch import Tensor


class ThreestudioRenderer:
    """Renderer protocol over any threestudio `Renderer` (nerf-volume, NeuS, ...).

    Args:
        renderer: a configured threestudio renderer (its geometry/material/background inside).
        chunk_rays: rays per renderer call.
        light_distance: the point light (for shading materials) sits at the camera, scaled by this factor.
    """

    def __init__(self, renderer: Any, chunk_rays: int = 8192, light_distance: float = 1.0):
        self.renderer, self.chunk_rays, self.light_distance = renderer, int(chunk_rays), float(light_distance)

    @property
    def identity(self) -> str:
        """Names the renderer in cache keys: its type and config."""
        cfg = getattr(self.renderer, "cfg", None)
        return f"threestudio:{type(self.renderer).__name__}:{cfg}"

    def render_rays(self, origins: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]) -> Dict[str, Tensor]:
        """Render arbitrary rays (unit directions) -> rgb [N,3] (premultiplied), opacity [N,1],
        t [N,1] (expected distance, 0 where empty), xyz [N,3] (0 where empty). Each ray is its own batch item of
        threestudio's [B,H,W,3] layout (B = rays, H = W = 1), so the point light can sit at each ray's camera."""
        rgb, opacity, depth = [], [], []
        for start in range(0, origins.shape[0], self.chunk_rays):  # bounded memory, any number of rays
            o = origins[start:start + self.chunk_rays]
            d = directions[start:start + self.chunk_rays]
            out = self.renderer(o[:, None, None], d[:, None, None], o * self.light_distance,
                                bg_color=torch.zeros_like(o)[:, None, None], height=1, width=1)
            rgb.append(out.get("comp_rgb_fg", out["comp_rgb"]).reshape(-1, 3))
            opacity.append(out["opacity"].reshape(-1, 1))
            depth.append(out["depth"].reshape(-1, 1))
        rgb, opacity, depth = torch.cat(rgb), torch.cat(opacity), torch.cat(depth)
        hit = opacity > 1e-6
        t = torch.where(hit, depth / opacity.clamp_min(1e-6), torch.zeros_like(depth))
        return {"rgb": rgb, "opacity": opacity, "t": t, "xyz": (origins + directions * t) * hit}

    def render(self, cameras: Any, height: int, width: int) -> Dict[str, Tensor]:
        """Render B `congeal.geometry.cameras.Cameras` at height×width (renderer protocol).

        Returns:
            {"rgb" [B,H,W,3] premultiplied, "opacity" [B,H,W,1], "depth" [B,H,W,1] along the viewing axis (as
            `GridRenderer` and `geometry.cameras.project`), "xyz" [B,H,W,3]}.
        """
        from congeal.geometry.cameras import get_rays

        cameras = cameras.rescaled(height, width)
        origins, directions = get_rays(cameras)
        out = self.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
        shape = (len(cameras), height, width)
        # t runs along the ray; depth is along the viewing axis: t times the cosine between the two
        cos = (directions * -cameras.c2w[:, None, None, :3, 2]).sum(-1, keepdim=True)
        return {"rgb": out["rgb"].reshape(*shape, 3), "opacity": out["opacity"].reshape(*shape, 1),
                "depth": out["t"].reshape(*shape, 1) * cos, "xyz": out["xyz"].reshape(*shape, 3)}
