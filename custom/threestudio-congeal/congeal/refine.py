"""Refinement: all photos × hypotheses optimised together against the photos' masks (soft IoU, optional features).

    poses = PoseParameters.from_cameras(c2w_w, fovy_w)                    # [M] hypotheses in working frames
    result = refine_poses(renderer, poses, masks, RefineConfig(steps=200))   # masks [M,1,S,S]
    c2w, fovy = result.c2w, result.fovy                                    # [M,4,4], [M]

Camera model (working frame, centred principal point): rotation R = R0 · exp(ω) (ω ∈ so(3), 3 numbers), camera
centre C = R · (u·d, v·d, d), i.e. at distance d behind the image plane of the origin and shifted by the
image-plane offset (u, v) (so the object need not be centred), and the vertical FoV. Rotating R orbits the camera
around the canonical origin. Parameters are log d, (u, v) and log tan(fovy/2) so every step is scale-free.

Every hypothesis has its own parameters and its own loss term, and Adam is element-wise, so a hypothesis's
trajectory does not depend on which others share the batch. Early stopping is per hypothesis too: one that has not
improved for `patience` steps is frozen at its best parameters; the loop ends when all are frozen.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import so3_exp


@dataclass
class RefineConfig:
    """Refinement settings.

    Attributes:
        steps: maximum Adam steps (the paper: 1000).
        resolution: render / mask side used in the loss (px).
        samples: ray-marching samples per ray during refinement.
        lr_rotation: Adam step for ω (radians).
        lr_distance: Adam step for log d.
        lr_offset: Adam step for (u, v).
        lr_fov: Adam step for log tan(fovy/2).
        lr_final_fraction: cosine decay of every step size to this fraction at `steps`.
        patience: steps without a relative loss improvement of `min_improvement` before a hypothesis freezes.
        min_improvement: relative improvement that resets the patience counter.
        feature_weight: weight of the optional feature term (needs a differentiable extractor); 0 = masks only.
        chunk: hypotheses rendered per forward pass (bounds memory; gradients accumulate over chunks).
    """

    steps: int = 1000
    resolution: int = 64
    samples: int = 48
    lr_rotation: float = 0.02
    lr_distance: float = 0.01
    lr_offset: float = 0.01
    lr_fov: float = 0.01
    lr_final_fraction: float = 0.1
    patience: int = 50
    min_improvement: float = 1e-3
    feature_weight: float = 0.0
    chunk: int = 64


@dataclass
class PoseParameters:
    """Optimisable working-frame cameras of M hypotheses (see the module docstring)."""

    rotation0: Tensor  # [M,3,3]
    omega: Tensor  # [M,3]
    log_distance: Tensor  # [M]
    offset: Tensor  # [M,2]
    log_tan_half_fov: Tensor  # [M]

    @staticmethod
    def from_cameras(c2w: Tensor, fovy: Tensor) -> "PoseParameters":
        """Parameters reproducing cameras c2w [M,4,4] (any position) and fovy [M] radians exactly."""
        rotation = c2w[:, :3, :3].float()
        local = torch.einsum("mji,mj->mi", rotation, c2w[:, :3, 3].float())  # R^T C = (u·d, v·d, d)
        distance = local[:, 2].clamp_min(1e-6)
        return PoseParameters(
            rotation0=rotation, omega=torch.zeros_like(local), log_distance=distance.log(),
            offset=local[:, :2] / distance[:, None], log_tan_half_fov=torch.tan(0.5 * fovy.float()).log(),
        )

    def cameras(self) -> "tuple[Tensor, Tensor]":
        """(c2w [M,4,4], fovy [M]) — differentiable in omega, log_distance, offset, log_tan_half_fov."""
        rotation = self.rotation0 @ so3_exp(self.omega)
        distance = self.log_distance.exp()
        local = torch.cat([self.offset * distance[:, None], distance[:, None]], dim=-1)
        centre = torch.einsum("mij,mj->mi", rotation, local)
        top = torch.cat([rotation, centre[:, :, None]], dim=-1)
        bottom = torch.zeros_like(top[:, :1])
        bottom[:, 0, 3] = 1.0
        return torch.cat([top, bottom], dim=1), 2.0 * torch.atan(self.log_tan_half_fov.exp())

    def trainable(self) -> "list[Tensor]":
        return [self.omega, self.log_distance, self.offset, self.log_tan_half_fov]

    def detached(self) -> "PoseParameters":
        return PoseParameters(*(t.detach().clone() for t in (self.rotation0, self.omega, self.log_distance,
                                                              self.offset, self.log_tan_half_fov)))


@dataclass
class RefineResult:
    """Refined cameras: c2w [M,4,4], fovy [M] (working frame), loss [M] (best soft-IoU loss), steps [M] run."""

    c2w: Tensor
    fovy: Tensor
    loss: Tensor
    steps: Tensor


def soft_iou_loss(opacity: Tensor, mask: Tensor) -> Tensor:
    """1 − soft IoU per item: opacity, mask [M,1,r,r] in [0,1] -> [M]."""
    inter = (opacity * mask).flatten(1).sum(-1)
    union = (opacity + mask - opacity * mask).flatten(1).sum(-1)
    return 1.0 - inter / union.clamp_min(1e-6)


def masked_feature_distance(feats_a: Tensor, feats_b: Tensor, weight: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean (1 − cosine) of unit features [M,C,h,w] weighted by weight [M,1,h,w] -> [M]."""
    cos = (feats_a * feats_b).sum(1, keepdim=True)
    return ((1.0 - cos) * weight).flatten(1).sum(-1).add(eps) / weight.flatten(1).sum(-1).add(eps)


def refine_poses(renderer, init: PoseParameters, masks: Tensor, cfg: RefineConfig,
                 image_feats: Optional[Tensor] = None, extractor=None, progress: bool = False) -> RefineResult:
    """Optimise M hypotheses at once against their photos' masks.

    Args:
        renderer: a `Renderer`.
        init: initial parameters (M hypotheses).
        masks: [M,1,S,S] the photo mask of each hypothesis (photos repeated per hypothesis).
        cfg: RefineConfig.
        image_feats: [M,C,h,w] photo features (only for feature_weight > 0).
        extractor: differentiable extractor (only for feature_weight > 0).
        progress: tqdm bar.
    Returns:
        RefineResult with the best parameters each hypothesis reached.
    """
    from tqdm.auto import tqdm

    params = init.detached()
    for tensor in params.trainable():
        tensor.requires_grad_(True)
    m = params.omega.shape[0]
    device = params.omega.device
    res = cfg.resolution
    target = F.adaptive_avg_pool2d(masks.float(), res).to(device)
    use_features = cfg.feature_weight > 0 and image_feats is not None and extractor is not None
    groups = [
        {"params": [params.omega], "lr": cfg.lr_rotation},
        {"params": [params.log_distance], "lr": cfg.lr_distance},
        {"params": [params.offset], "lr": cfg.lr_offset},
        {"params": [params.log_tan_half_fov], "lr": cfg.lr_fov},
    ]
    optimiser = torch.optim.Adam(groups)
    base_lrs = [g["lr"] for g in optimiser.param_groups]
    best = params.detached()
    best_loss = torch.full((m,), float("inf"), device=device)
    reference = torch.full((m,), float("inf"), device=device)  # loss at the last significant improvement
    stall = torch.zeros(m, dtype=torch.long, device=device)
    active = torch.ones(m, dtype=torch.bool, device=device)
    steps_run = torch.zeros(m, dtype=torch.long, device=device)
    bar = tqdm(range(cfg.steps + 1), desc="refine poses", disable=not progress, leave=False)
    for step in bar:
        # cosine decay, identical for every hypothesis (keeps hypotheses independent of each other)
        scale = cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for group, lr in zip(optimiser.param_groups, base_lrs):
            group["lr"] = lr * scale
        optimiser.zero_grad(set_to_none=False)
        losses = []
        for start in range(0, m, cfg.chunk):
            part = slice(start, start + cfg.chunk)
            sub = PoseParameters(params.rotation0[part], params.omega[part], params.log_distance[part],
                                 params.offset[part], params.log_tan_half_fov[part])
            c2w, fovy = sub.cameras()
            out = renderer.render(c2w, fovy, res, res)
            opacity = out["opacity"].permute(0, 3, 1, 2)
            loss = soft_iou_loss(opacity, target[part])
            if use_features:
                rgb = out["rgb"].permute(0, 3, 1, 2).clamp(0, 1)
                feats = extractor.extract(rgb)
                feats_img = F.interpolate(image_feats[part].float(), size=feats.shape[-2:], mode="bilinear",
                                          align_corners=False)
                weight = F.adaptive_avg_pool2d(opacity * target[part], feats.shape[-2:])
                loss = loss + cfg.feature_weight * masked_feature_distance(feats, F.normalize(feats_img, dim=1), weight)
            # frozen hypotheses contribute no gradient
            (loss * active[part].float()).sum().backward()
            losses.append(loss.detach())
        loss = torch.cat(losses)
        with torch.no_grad():
            improved = active & (loss < best_loss)
            for dst, src in zip(best.trainable(), params.trainable()):
                dst[improved] = src.detach()[improved]
            best_loss = torch.where(improved, loss, best_loss)
            significant = active & (loss < reference * (1 - cfg.min_improvement))
            reference = torch.where(significant, loss, reference)
            stall = torch.where(significant, torch.zeros_like(stall), stall + 1)
            steps_run += active.long()
            active = active & (stall < cfg.patience)
        if step == cfg.steps or not bool(active.any()):
            break
        optimiser.step()
        with torch.no_grad():  # Adam momentum must not drift frozen hypotheses (they are restored from `best`)
            for dst, src in zip(params.trainable(), best.trainable()):
                dst[~active] = src[~active]
        if progress:
            bar.set_postfix(loss=f"{float(best_loss.mean()):.4f}", active=int(active.sum()))
    bar.close()
    c2w, fovy = best.cameras()
    return RefineResult(c2w=c2w.detach(), fovy=fovy.detach(), loss=best_loss, steps=steps_run)
