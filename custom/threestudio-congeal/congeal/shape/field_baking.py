"""Bake a threestudio geometry + material into a `congeal.canonical.grid.Canonical` (density + rgb on a dense grid).

    canonical = bake_canonical(geometry, material, resolution=128)
    save_canonical("canonical.safetensors", canonical)

The grid is the one of the `canonical.safetensors` format: cell centres at `-radius + (i + 0.5)·2·radius/R`,
indexed `[ix, iy, iz]` along world x, y, z, radius = the geometry's bounding radius. SDF geometries (implicit-sdf,
NeuS) are turned into a density with a Laplace CDF of the SDF (as VolSDF does), the same function the core uses
(`congeal.canonical.bake.density_from_sdf`).
"""
from typing import Any

import torch
import torch.nn.functional as F


@torch.no_grad()
def bake_canonical(geometry: Any, material: Any, resolution: int = 128, chunk: int = 65536, sdf_beta: float = 0.01,
                   sdf_max_density: float = 100.0) -> Any:
    """Query `geometry` and `material` at the cell centres of an R³ grid.

    Args:
        geometry: a threestudio implicit geometry (`geometry(points [N,3], output_normal=False)` → density or sdf,
            and features).
        material: a threestudio material (`material(features=..., viewdirs=..., positions=..., light_positions=...)`).
        resolution: R, cells per side.
        chunk: points per query (bounded memory).
        sdf_beta, sdf_max_density: the Laplace-CDF density of SDF geometries.
    Returns:
        `Canonical(density [R,R,R] ≥ 0, rgb [R,R,R,3] in [0,1], radius)` on the geometry's device.
    """
    from congeal.canonical.bake import density_from_sdf
    from congeal.canonical.grid import Canonical, grid_points

    radius = float(geometry.cfg.radius)
    device = next(iter(geometry.parameters()), torch.zeros(())).device
    points = grid_points(int(resolution), radius, device=device).reshape(-1, 3)
    densities, colours = [], []
    for part in points.split(int(chunk)):
        geo = geometry(part, output_normal=False)
        if "density" in geo:
            sigma = geo["density"][..., 0]
        else:
            sigma = density_from_sdf(geo["sdf"][..., 0], sdf_beta, sdf_max_density)
        # view each point from outside along its own direction: view-dependent materials need a view direction
        view = -F.normalize(part, dim=-1)
        extra = {k: v for k, v in geo.items() if k not in ("features", "density", "sdf")}
        rgb = material(features=geo["features"], viewdirs=view, positions=part, light_positions=part - view,
                       shading="albedo", **extra)
        densities.append(sigma.float().clamp_min(0.0))
        colours.append(rgb[..., :3].float().clamp(0.0, 1.0))
    shape = (int(resolution),) * 3
    return Canonical(torch.cat(densities).reshape(shape), torch.cat(colours).reshape(*shape, 3), radius)
