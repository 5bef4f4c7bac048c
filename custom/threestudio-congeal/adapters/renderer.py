"""A threestudio renderer seen through congeal's renderer protocol (`render(c2w, fovy, H, W)`).

    renderer = ThreestudioRenderer(run.renderer)
    out = renderer.render(c2w, fovy, 64, 64)   # {"rgb", "opacity", "xyz", "depth"}, differentiable w.r.t. c2w

Rays come from `congeal.cameras.get_rays` (threestudio's convention), the threestudio renderer marches them with
a black background (so `rgb` is premultiplied, like the baked grid renderer's), and `xyz` is the expected
termination point `rays_o + (depth / opacity) · rays_d` (threestudio's `depth` is the weight-sum of distances,
not normalised by opacity). Rays are rendered in chunks so memory stays bounded at any batch size.
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

    def __init__(self, renderer: Any, chunk_rays: int = 16384, light_distance: float = 1.0):
        self.renderer, self.chunk_rays, self.light_distance = renderer, int(chunk_rays), float(light_distance)

    def render(self, c2w: Tensor, fovy: Tensor, height: int, width: int) -> Dict[str, Tensor]:
        """Render B cameras.

        Args:
            c2w: [B,4,4] camera-to-world (threestudio convention).
            fovy: [B] vertical FoV in radians.
            height, width: output size.
        Returns:
            {"rgb" [B,H,W,3] premultiplied, "opacity" [B,H,W,1], "depth" [B,H,W,1], "xyz" [B,H,W,3]}.
        """
        from congeal.cameras import get_rays

        origins, directions = get_rays(c2w, fovy, height, width)
        batch = c2w.shape[0]
        lights = c2w[:, :3, 3] * self.light_distance
        black = torch.zeros(batch, 3, device=c2w.device, dtype=c2w.dtype)
        rows = max(1, self.chunk_rays // max(1, batch * width))
        rgb, opacity, depth = [], [], []
        for r0 in range(0, height, rows):  # all cameras at once, a band of rows at a time
            o, d = origins[:, r0:r0 + rows], directions[:, r0:r0 + rows]
            out = self.renderer(o, d, lights, bg_color=black, height=o.shape[1], width=o.shape[2])
            rgb.append(out.get("comp_rgb_fg", out["comp_rgb"]))
            opacity.append(out["opacity"])
            depth.append(out["depth"])
        rgb, opacity, depth = torch.cat(rgb, dim=1), torch.cat(opacity, dim=1), torch.cat(depth, dim=1)
        expected = depth / opacity.clamp_min(1e-6)
        xyz = (origins + directions * expected) * (opacity > 1e-6)
        return {"rgb": rgb[..., :3], "opacity": opacity, "depth": expected * (opacity > 1e-6), "xyz": xyz}
