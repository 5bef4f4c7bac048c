"""Silhouette renderer: opacity only, in closed form, for fast mask-based pose refinement.

    silhouette = SilhouetteRenderer(load_canonical("canonical.safetensors"), num_samples=24)
    opacity = silhouette.render_rays(origins, directions)["opacity"]      # [N,3],[N,3] -> [N,1]
    out = framing.render_in_frame(silhouette, cameras, 32)                # {"opacity": [B,32,32,1]}

A ray's opacity is 1 − exp(−∫σ dt); with evenly spaced samples that is 1 − exp(−δ·Σσ), so no colour, no
transmittance cumsum and no compositing are needed. The marching itself is `render.GridRenderer`'s (same box, same
midpoint samples, same trilinear atlas reads, only the rays that hit the box), so both agree on opacity; this class
only exposes the opacity path as `render_rays`, which is what `framing.render_in_frame` calls. That makes a
refinement step several times cheaper than a full RGB render, which matters on a CPU.
"""
from typing import Dict

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.canonical.grid import Canonical
from congeal.canonical.render import GridRenderer


class SilhouetteRenderer(torch.nn.Module):
    """Opacity-only ray marcher over a canonical's density grid (differentiable w.r.t. the rays).

    Args:
        canonical: the baked grid.
        num_samples: evenly spaced samples per ray inside the occupied box.
        occupancy_threshold: as in `GridRenderer` (cells under it do not enlarge the marching box).
    """

    def __init__(self, canonical: Canonical, num_samples: int = 32, occupancy_threshold: float = 1e-4):
        super().__init__()
        self.marcher = GridRenderer(canonical, num_samples=num_samples, occupancy_threshold=occupancy_threshold)

    def render_rays(self, origins: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]) -> Dict[str, Tensor]:
        """Rays (unit directions) -> {"opacity": [N,1]}."""
        return self.marcher.render_opacity_rays(origins, directions)
