"""SDS by view group: one timestep per step and one noise draw per group of `n_view` views, from (seed, step, group).

    out = guidance_by_group(lambda rgb, t, cams: guidance(rgb, prompt_utils, timestep=t, **cams),
                            comp_rgb, cameras, n_view=4, seed=0, step=1500, rank=0, min_step=20, max_step=980,
                            device=torch.device("cpu"))
    out = run_guidance(guidance, prompt_utils, comp_rgb, cameras, by_group=True, seed=0, step=1500, rank=0,
                       device=torch.device("cpu"))                # the same, reading n_view / min / max from it

MVDream denoises `n_view` views of one object together; a camera batch holds several such groups. Group g of rank r
draws its noise from the seed of group `r * groups + g` of the whole batch of all ranks, so N processes train
exactly what one process with N x the batch would (threestudio's own way, every process drawing from its own torch
generator, is the same only statistically). The guidance's loss is a per-view mean, so the mean over groups is the
loss of the whole local batch.
"""
from typing import Any, Callable, Dict, List

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.shape.stream_seeds import stream_seed

GroupGuidance = Callable[[Tensor, int, Dict[str, Any]], Dict[str, Any]]


def group_count(batch: int, n_view: int) -> int:
    """Args: batch: views in the local batch. n_view: views per group.
    Returns: the number of groups. Raises: ValueError when the batch is not a multiple of n_view."""
    if batch % n_view:
        raise ValueError(f"sds_noise_by_group: camera batch {batch} is not a multiple of n_view {n_view}")
    return batch // n_view


def group_cameras(cameras: Dict[str, Any], batch: int, rows: slice) -> Dict[str, Any]:
    """Args: cameras: the camera batch. batch: its size. rows: one group's rows.
    Returns: the group's cameras (tensors with a leading batch axis sliced, everything else as it is)."""
    return {k: v[rows] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == batch else v for k, v in cameras.items()}


def step_timestep(seed: int, step: int, min_step: int, max_step: int) -> int:
    """Args: seed: the run's seed. step: the global step. min_step, max_step: the guidance's range (inclusive).
    Returns: the step's diffusion timestep, the same on every process."""
    pick = torch.Generator().manual_seed(stream_seed(seed, step, "sds-timestep"))
    return int(torch.randint(min_step, max_step + 1, (1,), generator=pick))


def merge_group_outputs(outs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Args: outs: the guidance's outputs, one per group.
    Returns: scalars (one-element tensors, numbers) averaged over groups; anything else from the first group."""
    merged: Dict[str, Any] = {}
    for name, value in outs[0].items():
        if torch.is_tensor(value) and value.numel() == 1:
            merged[name] = torch.stack([o[name].reshape(()) for o in outs]).mean()
        elif isinstance(value, (int, float)):
            merged[name] = sum(o[name] for o in outs) / len(outs)
        else:
            merged[name] = value
    return merged


def guidance_by_group(guidance: GroupGuidance, rgb: Float[Tensor, "B H W 3"], cameras: Dict[str, Any], n_view: int,
                      seed: int, step: int, rank: int, min_step: int, max_step: int,
                      device: torch.device) -> Dict[str, Any]:
    """Run the guidance once per view group with seeded noise; outputs averaged over groups.

    Args:
        guidance: `(rgb [n_view,H,W,3], timestep, cameras) -> outputs`, drawing its noise from torch's generators.
        rgb: the rendered views of the local batch.
        cameras: the local camera batch (the photo keys already removed).
        n_view: views per group (the guidance's `n_view`).
        seed: the run's seed of the by-group noise.
        step: the global step.
        rank: this process's rank (groups are numbered over the whole batch of all ranks).
        min_step, max_step: the guidance's timestep range at this step.
        device: the rendering device; its CUDA generator is seeded too, and every generator is put back after.
    Returns:
        the merged outputs (`merge_group_outputs`).
    """
    batch = rgb.shape[0]
    groups = group_count(batch, n_view)
    timestep = step_timestep(seed, step, min_step, max_step)
    devices = [device] if device.type == "cuda" else []
    outs = []
    for g in range(groups):
        rows = slice(g * n_view, (g + 1) * n_view)
        with torch.random.fork_rng(devices=devices):
            noise_seed = stream_seed(seed, step, f"sds-noise-{rank * groups + g}")
            torch.default_generator.manual_seed(noise_seed)
            if devices:
                torch.cuda.manual_seed(noise_seed)
            outs.append(guidance(rgb[rows], timestep, group_cameras(cameras, batch, rows)))
    return merge_group_outputs(outs)


def run_guidance(guidance: Any, prompt_utils: Any, rgb: Float[Tensor, "B H W 3"], cameras: Dict[str, Any],
                 by_group: bool, seed: int, step: int, rank: int, device: torch.device) -> Dict[str, Any]:
    """The SDS guidance on a rendered batch, by view group or in threestudio's way.

    Args:
        guidance: an SDS guidance: `guidance(rgb, prompt_utils, [timestep=t,] **cameras) -> outputs`, with
            `cfg.n_view` (views per group, 1 when absent) and its current `min_step` / `max_step`.
        prompt_utils: what the guidance conditions on.
        rgb, cameras, seed, step, rank, device: as `guidance_by_group`.
        by_group: True = `guidance_by_group`; False = one call drawing from each process's own generators.
    Returns:
        the guidance's outputs (merged over groups when by group).
    """
    if not by_group:
        return guidance(rgb, prompt_utils, **cameras)
    return guidance_by_group(lambda views, t, cams: guidance(views, prompt_utils, timestep=t, **cams), rgb, cameras,
                             int(getattr(guidance.cfg, "n_view", 1)), seed, step, rank, int(guidance.min_step),
                             int(guidance.max_step), device)
