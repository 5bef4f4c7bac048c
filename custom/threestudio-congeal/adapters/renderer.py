"""A threestudio renderer seen through congeal's renderer protocol (`render(c2w, fovy, H, W)`).

    renderer = ThreestudioRenderer(run.renderer)
    out = renderer.render(c2w, fovy, 64, 64)   # {"rgb", "opacity", "xyz", "depth"}, differentiable w.r.t. c2w

Rays come from `congeal.geometry.cameras.get_rays` (threestudio's convention) or, through `render_rays`, from the engine's
working-frame cameras (explicit principal point); the threestudio renderer marches them with a black background (so
`rgb` is premultiplied, like the baked grid renderer's), and `xyz` is the expected termination point
`rays_o + (depth / opacity) · rays_d` (threestudio's `depth` is the weight-sum of distances, not normalised by
opacity). Rays are rendered in chunks so memory stays bounded at any batch size.
"""
from typing import Any, Dict

import torch
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

    def render_rays(self, origins: Tensor, directions: Tensor) -> Dict[str, Tensor]:
        """Render arbitrary rays: origins [N,3], unit directions [N,3] -> rgb [N,3] (premultiplied), opacity [N,1],
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

    def render(self, c2w: Tensor, fovy: Tensor, height: int, width: int) -> Dict[str, Tensor]:
        """Render B cameras (renderer protocol).

        Args:
            c2w: [B,4,4] camera-to-world (threestudio convention).
            fovy: [B] vertical FoV in radians.
            height, width: output size.
        Returns:
            {"rgb" [B,H,W,3] premultiplied, "opacity" [B,H,W,1], "depth" [B,H,W,1], "xyz" [B,H,W,3]}.
        """
        from congeal.geometry.cameras import get_rays

        origins, directions = get_rays(c2w, fovy, height, width)
        out = self.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
        shape = (c2w.shape[0], height, width)
        return {"rgb": out["rgb"].reshape(*shape, 3), "opacity": out["opacity"].reshape(*shape, 1),
                "depth": out["t"].reshape(*shape, 1), "xyz": out["xyz"].reshape(*shape, 3)}
