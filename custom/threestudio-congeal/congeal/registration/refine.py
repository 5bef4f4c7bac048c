"""Refinement: all photos × hypotheses optimised together against the photos' masks (soft IoU, optional features).

    poses = PoseParameters.from_cameras(c2w_w, fovy_w, principal_w, size=64)   # [M] working-frame hypotheses
    result = refine_poses(SilhouetteRenderer(canonical), poses, masks, RefineConfig(steps=200))  # masks [M,1,S,S]
    c2w, fovy, principal = result.c2w, result.fovy, result.principal         # [M,4,4], [M], [M,2]

Camera model (a photo's S×S working frame): rotation R = R0 · exp(ω) (ω ∈ so(3), 3 numbers); camera centre
C = R · (0, 0, d) (R0's lateral offset, 0 for grid cameras, is kept), so rotating R orbits the camera around the
canonical origin; the vertical FoV of the frame; and an explicit principal point (the object need not be centred
on the origin's projection: a crop moves the principal point). Parameters are log d, principal / S and
log tan(fovy/2), so every step size is scale-free.

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

from congeal.geometry.cameras import so3_exp
from congeal.registration.framing import render_in_frame


@dataclass
class RefineConfig:
    """Refinement settings.

    Attributes:
        steps: maximum Adam steps (the paper: 1000).
        resolution: render / mask side used in the loss (px).
        samples: ray-marching samples per ray during refinement.
        lr_rotation: Adam step for ω (radians).
        lr_distance: Adam step for log d.
        lr_principal: Adam step for the principal point (fraction of the frame).
        lr_fov: Adam step for log tan(fovy/2).
        lr_final_fraction: cosine decay of every step size to this fraction at `steps`.
        patience: steps without a relative loss improvement of `min_improvement` before a hypothesis freezes.
        min_improvement: relative improvement that resets the patience counter.
        opacity_sharpness: the rendered opacity o enters the loss as sigmoid(k·(o − 0.5)) with this k (0 = raw o).
            Photo masks are binary (alpha ≥ 0.5); comparing them with a soft opacity biases the soft IoU towards
            poses that fit the soft fringe, while the sharpened opacity puts the edge on the same 0.5 contour.
        feature_weight: weight of the optional feature term (needs a differentiable extractor); 0 = masks only.
        feature_resolution: render side for the feature term (0 = `resolution`); colour features are coarse, so a
            lower resolution than the silhouette's costs little accuracy and saves most of the colour render.
        chunk: hypotheses rendered per forward pass (bounds memory; gradients accumulate over chunks).
    """

    steps: int = 1000
    resolution: int = 64
    samples: int = 48
    lr_rotation: float = 0.02
    lr_distance: float = 0.01
    lr_principal: float = 0.005
    lr_fov: float = 0.01
    lr_final_fraction: float = 0.1
    patience: int = 50
    min_improvement: float = 1e-3
    opacity_sharpness: float = 10.0
    feature_weight: float = 0.0
    feature_resolution: int = 0
    chunk: int = 64


@dataclass
class PoseParameters:
    """Optimisable working-frame cameras of M hypotheses (see the module docstring)."""

    rotation0: Tensor  # [M,3,3]
    lateral: Tensor  # [M,2] fixed lateral camera offset / distance (0 for look-at cameras)
    omega: Tensor  # [M,3]
    log_distance: Tensor  # [M]
    principal: Tensor  # [M,2] principal point / S
    log_tan_half_fov: Tensor  # [M]
    size: int  # S

    @staticmethod
    def from_cameras(c2w: Tensor, fovy: Tensor, principal: Tensor, size: int) -> "PoseParameters":
        """Parameters reproducing working-frame cameras exactly: c2w [M,4,4], fovy [M] radians, principal [M,2] px."""
        rotation = c2w[:, :3, :3].float()
        local = torch.einsum("mji,mj->mi", rotation, c2w[:, :3, 3].float())  # R^T C
        distance = local[:, 2].clamp_min(1e-6)
        return PoseParameters(
            rotation0=rotation, lateral=local[:, :2] / distance[:, None], omega=torch.zeros_like(local),
            log_distance=distance.log(), principal=principal.float() / size,
            log_tan_half_fov=torch.tan(0.5 * fovy.float()).log(), size=int(size),
        )

    def cameras(self) -> "tuple[Tensor, Tensor, Tensor]":
        """(c2w [M,4,4], fovy [M] radians, principal [M,2] working px) — differentiable in the trainable tensors."""
        rotation = self.rotation0 @ so3_exp(self.omega)
        distance = self.log_distance.exp()
        local = torch.cat([self.lateral * distance[:, None], distance[:, None]], dim=-1)
        centre = torch.einsum("mij,mj->mi", rotation, local)
        top = torch.cat([rotation, centre[:, :, None]], dim=-1)
        bottom = torch.zeros_like(top[:, :1])
        bottom[:, 0, 3] = 1.0
        fovy = 2.0 * torch.atan(self.log_tan_half_fov.exp())
        return torch.cat([top, bottom], dim=1), fovy, self.principal * self.size

    def trainable(self) -> "list[Tensor]":
        return [self.omega, self.log_distance, self.principal, self.log_tan_half_fov]

    def subset(self, part) -> "PoseParameters":
        return PoseParameters(self.rotation0[part], self.lateral[part], self.omega[part], self.log_distance[part],
                              self.principal[part], self.log_tan_half_fov[part], self.size)

    def detached(self) -> "PoseParameters":
        return PoseParameters(*(t.detach().clone() for t in (self.rotation0, self.lateral, self.omega,
                                                              self.log_distance, self.principal,
                                                              self.log_tan_half_fov)), self.size)


@dataclass
class RefineResult:
    """Refined working-frame cameras: c2w [M,4,4], fovy [M], principal [M,2]; loss [M] (best), steps [M] run."""

    c2w: Tensor
    fovy: Tensor
    principal: Tensor
    loss: Tensor
    steps: Tensor


def soft_iou_loss(opacity: Tensor, mask: Tensor) -> Tensor:
    """1 − soft IoU per item: opacity, mask [M,1,r,r] in [0,1] -> [M]."""
    inter = (opacity * mask).flatten(1).sum(-1)
    union = (opacity + mask - opacity * mask).flatten(1).sum(-1)
    return 1.0 - inter / union.clamp_min(1e-6)


def binary_iou(opacity: Tensor, mask: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of `opacity > threshold` and `mask > threshold`: [M,1,r,r] each -> [M] (the reported "iou")."""
    a, b = opacity > threshold, mask > threshold
    inter = (a & b).flatten(1).sum(-1).float()
    union = (a | b).flatten(1).sum(-1).float()
    return inter / union.clamp_min(1.0)


def sharpen(opacity: Tensor, k: float) -> Tensor:
    """sigmoid(k·(o − 0.5)) rescaled so 0 -> 0 and 1 -> 1 (k = 0: o unchanged)."""
    if k <= 0:
        return opacity
    lo, hi = torch.sigmoid(torch.tensor(-0.5 * k)), torch.sigmoid(torch.tensor(0.5 * k))
    return (torch.sigmoid(k * (opacity - 0.5)) - lo.to(opacity)) / (hi - lo).to(opacity)


def masked_feature_distance(feats_a: Tensor, feats_b: Tensor, weight: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean (1 − cosine) of unit features [M,C,h,w] weighted by weight [M,1,h,w] -> [M]."""
    cos = (feats_a * feats_b).sum(1, keepdim=True)
    return ((1.0 - cos) * weight).flatten(1).sum(-1).add(eps) / weight.flatten(1).sum(-1).add(eps)


def refine_poses(renderer, init: PoseParameters, masks: Tensor, cfg: RefineConfig,
                 image_feats: Optional[Tensor] = None, extractor=None, progress: bool = False,
                 feature_renderer=None) -> RefineResult:
    """Optimise M hypotheses at once against their photos' masks.

    Args:
        renderer: a `Renderer` (only "opacity" is used unless feature_weight > 0; a `SilhouetteRenderer` is the
            fast choice then).
        init: initial parameters (M hypotheses).
        masks: [M,1,S,S] the photo mask of each hypothesis (photos repeated per hypothesis).
        cfg: RefineConfig.
        image_feats: [M,C,h,w] photo features (only for feature_weight > 0).
        extractor: differentiable extractor (only for feature_weight > 0).
        feature_renderer: renders the colour for the feature term at `feature_resolution` (e.g. a `GridRenderer`
            beside a `SilhouetteRenderer`); None = take "rgb" from `renderer`.
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
        {"params": [params.principal], "lr": cfg.lr_principal},
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
        cosine = 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        scale = cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * cosine
        for group, lr in zip(optimiser.param_groups, base_lrs):
            group["lr"] = lr * scale
        optimiser.zero_grad(set_to_none=False)
        losses = []
        for start in range(0, m, cfg.chunk):
            part = slice(start, start + cfg.chunk)
            c2w, fovy, principal = params.subset(part).cameras()
            out = render_in_frame(renderer, c2w, fovy, principal * (res / params.size), res)
            opacity = sharpen(out["opacity"].permute(0, 3, 1, 2), cfg.opacity_sharpness)
            loss = soft_iou_loss(opacity, target[part])
            if use_features:
                colour = out
                if feature_renderer is not None:  # colour at its own (lower) resolution, silhouette above
                    fres = cfg.feature_resolution or res
                    colour = render_in_frame(feature_renderer, c2w, fovy, principal * (fres / params.size), fres)
                rgb = colour["rgb"].permute(0, 3, 1, 2).clamp(0, 1)
                feats = extractor.extract(rgb)
                feats_img = F.interpolate(image_feats[part].float(), size=feats.shape[-2:], mode="bilinear",
                                          align_corners=False)
                weight = F.adaptive_avg_pool2d(opacity * target[part], feats.shape[-2:])
                distance = masked_feature_distance(feats, F.normalize(feats_img, dim=1), weight)
                loss = loss + cfg.feature_weight * distance
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
    c2w, fovy, principal = best.cameras()
    return RefineResult(c2w=c2w.detach(), fovy=fovy.detach(), principal=principal.detach(), loss=best_loss,
                        steps=steps_run)
