"""A mini registration state without the pipeline: a small SDF canonical rendered at known cameras.

    states = make_mini_run(tmp_path)     # writes state/ and maps/ for images "a" and "b" into tmp_path

The render plays "the render at the estimated pose"; the image is the render pulled through a known smooth warp
(so the true warp is known) and framed by a Crop into an original image larger than the working frame.
"""
import math
from pathlib import Path
from typing import Dict

import torch
import torch.nn.functional as F

from congeal.canonical.bake import canonical_from_sdf
from congeal.canonical.render import GridRenderer
from congeal.geometry.cameras import Cameras, c2w_from_spherical
from congeal.io.crop import Crop
from congeal.registration.mapping import from_norm, pixel_centres, to_norm
from congeal.registration.queries import write_forward_map
from congeal.registration.state import write_image_state
from congeal.run.folder import RunFolder

S = 64


def _sdf(p: torch.Tensor) -> torch.Tensor:
    body = 0.3 * ((p / torch.tensor([0.6, 0.35, 0.3])).norm(dim=-1) - 1.0)
    head = (p - torch.tensor([0.55, 0.0, 0.3])).norm(dim=-1) - 0.2
    return torch.minimum(body, head)


def _colour(p: torch.Tensor) -> torch.Tensor:
    return (p * 0.8 + 0.5).clamp(0, 1)


def known_warp(size: int, amp: float, phase: float = 0.5) -> torch.Tensor:
    """A smooth warp [S,S,2] (working pixels) with displacement amplitude `amp` (normalised units)."""
    u = to_norm(pixel_centres(size), size)
    d = torch.stack([amp * torch.sin(2.0 * u[..., 1] + phase), amp * torch.cos(1.7 * u[..., 0])], -1)
    return from_norm(u + d, size)


def make_mini_run(out_dir: Path) -> Dict[str, dict]:
    """Write state/ and maps/ for two images of one canonical at two poses; returns their inputs."""
    canonical = canonical_from_sdf(_sdf, _colour, resolution=32, radius=1.0)
    renderer = GridRenderer(canonical, num_samples=48)
    cams = {"a": (30.0, 20.0, (-10.0, 15.0, 120.0), (140, 130)), "b": (60.0, 10.0, (5.0, -5.0, 90.0), (100, 110))}
    c2w = c2w_from_spherical(torch.tensor([c[0] for c in cams.values()]), torch.tensor([c[1] for c in cams.values()]),
                             torch.tensor([3.0, 3.0]))
    out = renderer.render(Cameras.centred(c2w, torch.full((2,), math.radians(40.0)), S, S), S, S)
    info = {}
    for i, (name, (az, el, (x0, y0, side), (w, h))) in enumerate(cams.items()):
        warp = known_warp(S, 0.05, phase=0.5 + i)
        op = out["opacity"][i]
        grid = to_norm(warp, S)[None]
        mask = F.grid_sample(op.permute(2, 0, 1)[None], grid, align_corners=False)[0, 0]
        crop = Crop(x0=x0, y0=y0, side=side, size=S)
        camera = {"c2w": c2w[i].tolist()} if i == 0 else {"c2w": c2w[i].tolist(), "width": w, "height": h}
        state = write_image_state(RunFolder(out_dir).state_path(name), name, crop, (h, w), warp, out["xyz"][i], op, mask, camera)
        write_forward_map(RunFolder(out_dir).map_path(name), state)
        info[name] = {"crop": crop, "warp": warp, "mask": mask, "opacity": op, "xyz": out["xyz"][i], "size": (w, h)}
    return info
