"""The SDS stage's regularisers (the ones threestudio-mvdream offers), computed from a renderer's outputs.

    terms = sds_regularisers(out, weight=lambda key: schedule(cfg.loss.get(key, 0.0)))
    # {"loss_sparsity": tensor(...), ...}: only the terms whose weight is > 0 at this step

`out` is a threestudio volume renderer's output: `opacity` [B,H,W,1]; per ray sample `weights` [N,1], `normal` and
`t_dirs` [N,3] (orient); `z_variance` [B,H,W,1]; `sdf_grad` [N,3] for SDF geometries (eikonal).
"""
from typing import Any, Callable, Dict

import torch
from jaxtyping import Float
from torch import Tensor


def orientation(normal: Float[Tensor, "*n 3"], view_dirs: Float[Tensor, "*n 3"], weights: Float[Tensor, "*n 1"],
                opacity: Float[Tensor, "*rays 1"]) -> Float[Tensor, ""]:
    """Normals facing away from the camera, weighted by the samples' (detached) weights, per covered ray.

    Args:
        normal: per-sample normals. view_dirs: per-sample ray directions (from the camera). weights: render weights.
        opacity: per-ray opacity (the rays with opacity > 0 are the ones counted).
    Returns:
        sum(w * max(0, n·d)^2) / #covered rays.
    """
    facing = (normal * view_dirs).sum(-1, keepdim=True).clamp_min(0.0) ** 2
    return (weights.detach() * facing).sum() / (opacity > 0).sum()


def sparsity(opacity: Float[Tensor, "*rays 1"]) -> Float[Tensor, ""]:
    """Args: opacity: per-ray opacity. Returns: mean sqrt(opacity^2 + 0.01) (a smooth L1 towards empty space)."""
    return (opacity ** 2 + 0.01).sqrt().mean()


def opaqueness(opacity: Float[Tensor, "*rays 1"]) -> Float[Tensor, ""]:
    """Args: opacity: per-ray opacity. Returns: the entropy of the clamped opacity (low when each ray is 0 or 1).

    Written out rather than `F.binary_cross_entropy`, which is not stable in mixed precision."""
    p = opacity.clamp(1.0e-3, 1.0 - 1.0e-3)
    return -(p * torch.log(p) + (1 - p) * torch.log(1 - p)).mean()


def z_variance(variance: Float[Tensor, "*rays 1"], opacity: Float[Tensor, "*rays 1"]) -> Float[Tensor, ""]:
    """Args: variance: per-ray depth variance. opacity: per-ray opacity.
    Returns: the mean depth variance of the rays with opacity > 0.5 (thin surfaces)."""
    return variance[opacity > 0.5].mean()


def eikonal(sdf_grad: Float[Tensor, "*n 3"]) -> Float[Tensor, ""]:
    """Args: sdf_grad: the SDF's gradient at the samples. Returns: mean (|grad| - 1)^2."""
    return ((torch.linalg.norm(sdf_grad, ord=2, dim=-1) - 1.0) ** 2).mean()


def sds_regularisers(out: Dict[str, Any], weight: Callable[[str], float]) -> Dict[str, Tensor]:
    """The regularisers whose weight is > 0.

    Args:
        out: the renderer's outputs (see the module docstring).
        weight: `lambda_<name>` -> its value at this step (0 for a weight the config does not name).
    Returns:
        {"loss_<name>": scalar} for orient, sparsity, opaque, z_variance, eikonal, as weighted on.
    Raises:
        ValueError: lambda_orient > 0 and the renderer gives no normals.
    """
    terms: Dict[str, Tensor] = {}
    if weight("lambda_orient") > 0:
        if "normal" not in out:
            raise ValueError("lambda_orient > 0 needs normals: set the geometry's normal_type")
        terms["loss_orient"] = orientation(out["normal"], out["t_dirs"], out["weights"], out["opacity"])
    if weight("lambda_sparsity") > 0:
        terms["loss_sparsity"] = sparsity(out["opacity"])
    if weight("lambda_opaque") > 0:
        terms["loss_opaque"] = opaqueness(out["opacity"])
    if weight("lambda_z_variance") > 0:
        terms["loss_z_variance"] = z_variance(out["z_variance"], out["opacity"])
    if weight("lambda_eikonal") > 0:
        terms["loss_eikonal"] = eikonal(out["sdf_grad"])
    return terms
