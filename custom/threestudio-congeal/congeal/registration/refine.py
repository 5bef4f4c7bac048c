"""Refinement: all photos × hypotheses optimised together against the photos' masks (soft IoU, optional features).

    poses = PoseParameters.from_cameras(working)           # M working-frame hypotheses (S×S `Cameras`)
    result = refine_poses(SilhouetteRenderer(canonical), poses, masks, RefineConfig(steps=200))  # masks [M,1,S,S]
    result.cameras, result.loss                             # the refined S×S `Cameras`, the best loss [M]

Camera model (a photo's S×S working frame): a real pinhole camera with 6 DoF and a known principal point.
Rotation R = R0 · exp(ω) (ω ∈ so(3), 3 numbers); camera centre C = R · (l·d, d) with the lateral offset l (2 numbers,
where the object sits in the photo) and the distance d, so changing ω orbits the camera around the canonical origin
without moving the object in the frame; the vertical FoV of the frame (the focal length). The principal point is the
photo's own (its centre mapped into the crop) and stays fixed unless `free_principal`. Parameters are ω, l,
log tan(fovy/2), a size parameter and principal / S, so every step size is scale-free. The size parameter is log d, or
with `dolly_fov` the extent log(d·tan(fovy/2)) (half the frame's height at the object: its size in the frame), so that
a change of focal length alone is a dolly zoom: the object keeps its size and only the perspective changes.
Silhouettes fix the size well and the perspective weakly; with log d, Adam's per-parameter steps have to move the
distance and the FoV together along that narrow valley and stop short of it (same-instance centred sets, tuning
seeds, colour weight 0.1: FoV error medians 2.0–5.1° with log d, 0.9–1.7° with the extent). On cross-instance photos
the freer FoV costs (the silhouette is biased there), so the extent is used only in the polish of the photos the
canonical fits (`polish`, both presets; docs/evaluation.md).

Optionally (`lr_stretch`) each hypothesis also stretches the canonical along its three axes (volume kept): another
instance of the category, longer or wider than the canonical, is then explained by a stretch rather than by a
turned camera (benchmark sets: see docs/evaluation.md).

Every hypothesis has its own parameters and its own loss term, and Adam is element-wise, so a hypothesis's
trajectory does not depend on which others share the batch. Early stopping is per hypothesis too: one that has not
improved for `patience` steps is frozen at its best parameters; the loop ends when all are frozen. With
`prune_step`, each photo's hypotheses also compete once: after that step only its `prune_keep` best go on (so a
photo's hypotheses depend on each other, never on other photos').
"""
import math
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from congeal.features.extractors import FeatureExtractor
from congeal.geometry.cameras import Cameras, so3_exp
from congeal.registration.framing import render_in_frame
from congeal.registration.losses import binary_iou, masked_feature_distance, sharpen, soft_iou_loss


@dataclass
class RefineConfig:
    """Refinement settings."""

    steps: int = 1000
    """Maximum Adam steps (the paper: 1000)."""
    resolution: int = 64
    """Render / mask side used in the loss (px)."""
    samples: int = 48
    """Ray-marching samples per ray during refinement."""
    lr_rotation: float = 0.02
    """Adam step for ω (radians)."""
    lr_distance: float = 0.01
    """Adam step for the size parameter (log d, or the extent with `dolly_fov`: at a fixed FoV either step moves log d
    by as much)."""
    lr_principal: float = 0.005
    """Adam step for the principal point (fraction of the frame); used only with `free_principal`."""
    lr_lateral: float = 0.005
    """Adam step for the camera's offset parallel to its image plane (fraction of its distance): where the object
    sits in the photo."""
    known_focal: str = "fixed"
    """How a photo's known focal length (EXIF or given) is used: "fixed" (not optimised) or "prior" (the start, and a
    penalty `focal_prior_weight` * (log f - log f_known)^2 pulls towards it)."""
    focal_prior_weight: float = 1.0
    """Weight of the focal-length prior (with known_focal = "prior")."""
    free_principal: bool = False
    """Also optimise the principal point (for photos that were themselves cropped from larger ones). Off: a photo's
    principal point is known (its centre, or given intrinsics) and stays fixed, so the pose keeps all 6 DoF."""
    lr_fov: float = 0.01
    """Adam step for log tan(fovy/2)."""
    lr_stretch: float = 0.0
    """Adam step for each hypothesis' stretch of the canonical along its three axes (log scale, volume kept); 0 =
    the canonical stays rigid. Another instance of the category (a longer body, a wider seat) is then explained by
    a stretch instead of by a turned camera. The stretch is a nuisance: it is not part of the reported camera.
    In `refine_then_stretch` it is a second phase, for the photos the rigid canonical does not fit."""
    stretch_prior_weight: float = 0.5
    """Penalty weight · |log stretch|² (keeps stretches small where the masks do not ask for them)."""
    stretch_below_iou: float = 0.94
    """`refine_then_stretch`: a photo whose best rigid hypothesis reaches this silhouette IoU keeps a rigid
    canonical (a photo of the canonical's own instance does; a stretch would only absorb rendering differences)."""
    stretch_steps: int = 100
    """`refine_then_stretch`: Adam steps of the stretched second phase."""
    lr_final_fraction: float = 0.1
    """Cosine decay of every step size to this fraction at `steps`."""
    patience: int = 50
    """Steps without a relative loss improvement of `min_improvement` before a hypothesis freezes."""
    min_improvement: float = 1e-3
    """Relative improvement that resets the patience counter."""
    opacity_sharpness: float = 10.0
    """The rendered opacity o enters the loss as sigmoid(k·(o − 0.5)) with this k (0 = raw o). Photo masks are
    binary (alpha ≥ 0.5); comparing them with a soft opacity biases the soft IoU towards poses that fit the soft
    fringe, while the sharpened opacity puts the edge on the same 0.5 contour."""
    feature_weight: float = 0.0
    """Weight of the colour term: colour features (`features.extractors.RGBFeatures`) of the render vs the photo,
    whatever features the search uses; 0 = masks only."""
    dolly_fov: bool = False
    """A FoV step alone is a dolly zoom (the object keeps its size in the frame; see the module docstring); False: it
    keeps the camera's distance. The rigid and stretched phases keep the distance: on cross-instance photos that
    holds the camera better (docs/evaluation.md)."""
    polish_dolly_fov: bool = True
    """`dolly_fov` of the polish (`polish_feature_weight`)."""
    polish_steps: int = 60
    """Adam steps of the polish (`polish`)."""
    polish_cover: bool = True
    """The polish fits the fraction of each working pixel the photo's object covers (`mask_cover` of
    `registration.poses.estimate_poses`) instead of the binary mask: a 64 px working crop thresholded at 0.5 loses
    where inside its pixel an edge runs, which is what separates cameras a fraction of a degree apart (held-out
    same-instance sets: median photo 1.19° -> 0.94°; docs/evaluation.md). Only the polish: in the rigid and
    stretched phases the finer target made cross-instance photos worse (more > 10° off)."""
    polish_edge_levels: Tuple[float, ...] = (0.5, 0.7, 0.9)
    """The opacity contours the polish tries as the canonical's edge (the centre of `losses.sharpen`; every other phase
    uses 0.5), one for the whole collection: every chosen photo is polished at each (up to `polish_level_step`), and
    the level whose cameras fit the collection's masks best (lowest summed loss) is kept. A density field has no
    surface; where its rendered opacity crosses 0.5 depends on how blurred it is, so a canonical coarser or softer
    than the photos is fatter at 0.5 than the object in them (spot's 64³ bake against 128³ photos: 2 % more area).
    Photos rendered from the canonical itself keep 0.5 (docs/evaluation.md, stop 26)."""
    polish_level_step: int = 20
    """The polish refines every edge level up to this step; then only the level with the lowest summed loss goes on
    (the others freeze) and is the one kept. Adam goes on without a restart, so its cameras are bit for bit those of
    polishing that level alone. 0 = every level to the end, at three times the cost (docs/evaluation.md, stop 27)."""
    polish_focal_factors: Tuple[float, ...] = (1.0, 1.5, 1.0 / 1.5)
    """The polish starts every chosen camera whose focal length is estimated at these multiples of its focal length
    too (a dolly zoom: the object keeps its size in the frame), and keeps for each photo the start whose loss is the
    lowest at `polish_start_step` (only it goes on). Silhouettes fix the focal length weakly: the loss has minima
    along the focal length–distance valley, and a camera that refinement left 1.5× off in focal length stays there
    (same-instance photos 15–22° off in FoV were the ones 3–8° off in rotation; docs/evaluation.md, stop 27).
    (1.0,) = one start."""
    polish_start_step: int = 40
    """The polish step at which each photo keeps its best start of `polish_focal_factors` (the others freeze); the
    level is chosen at `polish_level_step` from each photo's best start then. A start at the right focal length can
    need more than 20 steps to overtake (held-out same-instance sets: 8 of 16 medians lower with 40 than with 20, 4
    higher by ≤ 0.14°; docs/evaluation.md, stop 27); 0 = every start to the end."""
    polish_feature_weight: Optional[float] = None
    """The colour weight of the polish: after the collection's choice, each photo the rigid canonical fits (its chosen
    hypothesis' silhouette IoU ≥ `stretch_below_iou`) refines its chosen hypothesis `polish_steps` more steps
    (`registration.poses.estimate_poses`); None = no polish (both presets: 0.1)."""
    feature_resolution: int = 0
    """Render side for the feature term (0 = `resolution`); colour features are coarse, so a lower resolution than
    the silhouette's costs little accuracy and saves most of the colour render."""
    chunk: int = 64
    """Hypotheses rendered per forward pass (bounds memory; gradients accumulate over chunks)."""
    prune_step: int = 0
    """At this step each photo keeps its `prune_keep` best hypotheses refining; the others freeze where they are
    (they stay alternatives). Many hypotheses can then start (a search's top k misses the right side of a nearly
    symmetric object more often than a short refinement does) for the price of a few. 0 = no pruning."""
    prune_keep: int = 2
    """Hypotheses per photo refined after `prune_step`."""


@dataclass
class PoseParameters:
    """Optimisable working-frame cameras of M hypotheses (see the module docstring)."""

    rotation0: Float[Tensor, "M 3 3"]
    """Initial rotation R0 (fixed)."""
    lateral: Float[Tensor, "M 2"]
    """Camera offset parallel to its image plane / distance (0 for look-at cameras)."""
    omega: Float[Tensor, "M 3"]
    """Rotation update ω ∈ so(3): R = R0 · exp(ω)."""
    log_size: Float[Tensor, "M"]
    """With `dolly`: the extent log(d · tan(fovy/2)), half the frame's height at the camera's distance d along its
    axis (the object's size in the frame; d = extent / tan(fovy/2)). Without: log d."""
    principal: Float[Tensor, "M 2"]
    """Principal point / S."""
    log_tan_half_fov: Float[Tensor, "M"]
    """log tan(fovy / 2)."""
    size: int
    """Working size S."""
    log_stretch: Optional[Float[Tensor, "M 3"]] = None
    """log of the canonical's stretch along its axes (see `RefineConfig.lr_stretch`); None = zeros."""
    dolly: bool = True
    """What `log_size` holds: the object's extent in the frame (a FoV step alone is a dolly zoom) or log d (a FoV
    step alone keeps the distance and changes the object's size)."""

    def __post_init__(self):
        if self.log_stretch is None:
            self.log_stretch = torch.zeros_like(self.omega)

    def stretch(self) -> Float[Tensor, "M 3"]:
        """The canonical's stretch per axis, with volume kept (the object's size is the camera distance's job)."""
        return (self.log_stretch - self.log_stretch.mean(-1, keepdim=True)).exp()

    @staticmethod
    def from_cameras(cameras: Cameras) -> "PoseParameters":
        """Parameters reproducing square working-frame cameras exactly."""
        if cameras.height != cameras.width:
            raise ValueError(f"working frames are square, got {cameras.height}×{cameras.width}")
        c2w, size = cameras.c2w, cameras.height
        rotation = c2w[:, :3, :3].float()
        local = torch.einsum("mji,mj->mi", rotation, c2w[:, :3, 3].float())  # R^T C
        distance = local[:, 2].clamp_min(1e-6)
        log_tan = torch.tan(0.5 * cameras.fovy.float()).log()
        return PoseParameters(
            rotation0=rotation, lateral=local[:, :2] / distance[:, None], omega=torch.zeros_like(local),
            log_size=distance.log() + log_tan, principal=cameras.principal.float() / size,
            log_tan_half_fov=log_tan, size=int(size),
        )

    def with_fovy(self, fovy: Float[Tensor, "M"], known: Bool[Tensor, "M"]) -> "PoseParameters":
        """The hypotheses with a known vertical FoV where `known`; the distance scales with the focal length so the
        object keeps its size in the frame."""
        log_tan = torch.where(known, torch.tan(0.5 * fovy.float()).log(), self.log_tan_half_fov)
        log_size = self.log_size if self.dolly else self.log_size + (self.log_tan_half_fov - log_tan)
        return PoseParameters(self.rotation0, self.lateral, self.omega, log_size, self.principal, log_tan,
                              self.size, self.log_stretch, self.dolly)

    def cameras(self) -> Cameras:
        """The S×S working-frame cameras, differentiable in the trainable tensors."""
        rotation = self.rotation0 @ so3_exp(self.omega)
        distance = (self.log_size - self.log_tan_half_fov).exp() if self.dolly else self.log_size.exp()
        local = torch.cat([self.lateral * distance[:, None], distance[:, None]], dim=-1)
        centre = torch.einsum("mij,mj->mi", rotation, local)
        top = torch.cat([rotation, centre[:, :, None]], dim=-1)
        bottom = torch.zeros_like(top[:, :1])
        bottom[:, 0, 3] = 1.0
        fovy = 2.0 * torch.atan(self.log_tan_half_fov.exp())
        return Cameras(torch.cat([top, bottom], dim=1), fovy, self.principal * self.size, self.size, self.size)

    def trainable(self) -> List[Tensor]:
        """Every tensor refinement may update (what a best-so-far copy must hold)."""
        return [self.omega, self.log_size, self.lateral, self.principal, self.log_tan_half_fov, self.log_stretch]

    def subset(self, part: Union[slice, Tensor]) -> "PoseParameters":
        """The hypotheses at `part` (indexed from the same tensors: gradients reach the full set)."""
        return PoseParameters(self.rotation0[part], self.lateral[part], self.omega[part], self.log_size[part],
                              self.principal[part], self.log_tan_half_fov[part], self.size, self.log_stretch[part],
                              self.dolly)

    def detached(self) -> "PoseParameters":
        """A detached copy."""
        rotation0, lateral, omega, log_size, principal, log_tan, log_stretch = (
            t.detach().clone() for t in (self.rotation0, self.lateral, self.omega, self.log_size, self.principal,
                                         self.log_tan_half_fov, self.log_stretch))
        return PoseParameters(rotation0, lateral, omega, log_size, principal, log_tan, self.size, log_stretch,
                              self.dolly)

    def with_dolly(self, dolly: bool) -> "PoseParameters":
        """The same cameras with `log_size` meaning the extent (dolly) or log d (see `log_size`)."""
        if dolly == self.dolly:
            return self
        shift = self.log_tan_half_fov if dolly else -self.log_tan_half_fov
        return PoseParameters(self.rotation0, self.lateral, self.omega, self.log_size + shift, self.principal,
                              self.log_tan_half_fov, self.size, self.log_stretch, dolly)


@dataclass
class RefineResult:
    """Refined hypotheses."""

    cameras: Cameras
    """The best working-frame cameras each hypothesis reached (S×S)."""
    loss: Float[Tensor, "M"]
    """Each hypothesis's best loss."""
    steps: Int[Tensor, "M"]
    """Steps each hypothesis ran before it froze."""
    stretch: Float[Tensor, "M 3"]
    """The canonical's stretch per axis at each hypothesis' best (ones with a rigid canonical)."""


def refine_poses(renderer: Any, init: PoseParameters, masks: Float[Tensor, "M 1 S S"], cfg: RefineConfig,
                 image_feats: Optional[Float[Tensor, "M C h w"]] = None, extractor: Optional[FeatureExtractor] = None,
                 progress: bool = False, feature_renderer: Any = None,
                 known_fovy: Optional[Bool[Tensor, "M"]] = None,
                 photo_of: Optional[Int[Tensor, "M"]] = None,
                 edge_level: Optional[Float[Tensor, "M"]] = None, level_step: int = 0) -> RefineResult:
    """Optimise M hypotheses at once against their photos' masks.

    Args:
        renderer: a `Renderer` or anything with `render_rays` (only "opacity" is used unless feature_weight > 0;
            a `SilhouetteRenderer` is the fast choice then).
        init: initial parameters (M hypotheses).
        masks: the photo mask of each hypothesis (photos repeated per hypothesis).
        cfg: RefineConfig.
        image_feats: photo features (only for feature_weight > 0).
        extractor: differentiable extractor (only for feature_weight > 0).
        feature_renderer: renders the colour for the feature term at `feature_resolution` (e.g. a `GridRenderer`
            beside a `SilhouetteRenderer`); None = take "rgb" from `renderer`.
        progress: tqdm bar.
        known_fovy: hypotheses whose FoV in `init` is a photo's known focal length (kept or pulled towards it, see
            `RefineConfig.known_focal`); None = every FoV is estimated.
        photo_of: each hypothesis' photo (for `RefineConfig.prune_step`); None = no pruning.
        edge_level: each hypothesis' opacity contour taken as the canonical's edge (`losses.sharpen`); None = 0.5.
        level_step: with several `edge_level` values, at this step only the hypotheses of the level with the lowest
            summed loss go on (the others freeze); 0 = all go on. With `photo_of`, a level's sum counts only each
            group's `cfg.prune_keep` best.
    Returns:
        RefineResult with the best parameters each hypothesis reached.
    """
    from tqdm.auto import tqdm

    params = init.detached().with_dolly(cfg.dolly_fov)
    m = params.omega.shape[0]
    device = params.omega.device
    res = cfg.resolution
    target = F.adaptive_avg_pool2d(masks.float(), res).to(device)
    use_features = cfg.feature_weight > 0 and image_feats is not None and extractor is not None
    groups = [
        {"params": [params.omega], "lr": cfg.lr_rotation},
        {"params": [params.log_size], "lr": cfg.lr_distance},
        {"params": [params.lateral], "lr": cfg.lr_lateral},
        {"params": [params.log_tan_half_fov], "lr": cfg.lr_fov},
    ]
    if cfg.free_principal:
        groups.append({"params": [params.principal], "lr": cfg.lr_principal})
    stretched = cfg.lr_stretch > 0
    if stretched:
        groups.append({"params": [params.log_stretch], "lr": cfg.lr_stretch})
    for group in groups:
        group["params"][0].requires_grad_(True)
    optimiser = torch.optim.Adam(groups)
    base_lrs = [g["lr"] for g in optimiser.param_groups]
    known = torch.zeros(m, dtype=torch.bool, device=device) if known_fovy is None else known_fovy.to(device)
    known_log_tan = params.log_tan_half_fov.detach().clone()
    prior = cfg.focal_prior_weight if cfg.known_focal == "prior" else 0.0
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
        # only hypotheses still refining are rendered (after pruning, half of them or fewer); each one's render and
        # loss are its own, whatever shares its chunk (tests/registration/test_refine.py checks bit-equality)
        running = active.nonzero().squeeze(-1)
        for start in range(0, len(running), cfg.chunk):
            part = running[start:start + cfg.chunk]
            hypotheses = params.subset(part)
            cameras = hypotheses.cameras()
            stretch = hypotheses.stretch() if stretched else None
            out = render_in_frame(renderer, cameras, res, stretch)
            level = 0.5 if edge_level is None else edge_level[part, None, None, None]
            opacity = sharpen(out["opacity"].permute(0, 3, 1, 2), cfg.opacity_sharpness, level)
            loss = soft_iou_loss(opacity, target[part])
            if use_features:
                colour = out
                if feature_renderer is not None:  # colour at its own (lower) resolution, silhouette above
                    fres = cfg.feature_resolution or res
                    colour = render_in_frame(feature_renderer, cameras, fres, stretch)
                rgb = colour["rgb"].permute(0, 3, 1, 2).clamp(0, 1)
                feats = extractor.extract(rgb)
                feats_img = F.interpolate(image_feats[part].float(), size=feats.shape[-2:], mode="bilinear",
                                          align_corners=False)
                weight = F.adaptive_avg_pool2d(opacity * target[part], feats.shape[-2:])
                distance = masked_feature_distance(feats, F.normalize(feats_img, dim=1), weight)
                loss = loss + cfg.feature_weight * distance
            if prior > 0:
                gap = params.log_tan_half_fov[part] - known_log_tan[part]
                loss = loss + prior * known[part].float() * gap.square()
            if stretched:
                loss = loss + cfg.stretch_prior_weight * stretch.log().square().sum(-1)
            loss.sum().backward()
            losses.append(loss.detach())
        loss = best_loss.clone()  # frozen hypotheses keep their best (they are masked out below)
        loss[running] = torch.cat(losses)
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
            if step == cfg.prune_step and photo_of is not None:
                active = active & _best_of_each_photo(best_loss, photo_of, cfg.prune_keep)
            if step == level_step > 0 and edge_level is not None:
                # a level's summed loss counts each group's `prune_keep` best (what the pruning keeps or will keep)
                counted = (torch.ones_like(active) if photo_of is None
                           else _best_of_each_photo(best_loss, photo_of, cfg.prune_keep))
                active = active & _of_the_best_level(best_loss, edge_level, counted)
        if step == cfg.steps or not bool(active.any()):
            break
        optimiser.step()
        with torch.no_grad():  # Adam momentum must not drift frozen hypotheses (they are restored from `best`)
            for dst, src in zip(params.trainable(), best.trainable()):
                dst[~active] = src[~active]
            if cfg.known_focal == "fixed":
                params.log_tan_half_fov[known] = known_log_tan[known]
        if progress:
            bar.set_postfix(loss=f"{float(best_loss.mean()):.4f}", active=int(active.sum()))
    bar.close()
    return RefineResult(cameras=best.cameras().detach(), loss=best_loss, steps=steps_run,
                        stretch=best.stretch().detach())


def refine_then_stretch(renderer: Any, init: PoseParameters, masks: Float[Tensor, "M 1 S S"], cfg: RefineConfig,
                        photo_of: Int[Tensor, "M"], image_feats: Optional[Float[Tensor, "M C h w"]] = None,
                        known_fovy: Optional[Bool[Tensor, "M"]] = None, **kwargs: Any) -> RefineResult:
    """`refine_poses` with a rigid canonical; then, with `cfg.lr_stretch` > 0, the hypotheses of every photo whose
    best rigid fit has a silhouette IoU below `cfg.stretch_below_iou` (those still refining after `prune_step`) go on
    for `cfg.stretch_steps` steps with a stretched canonical, from where they are, so their loss only goes down.
    Other arguments as `refine_poses`."""
    rigid = refine_poses(renderer, init, masks, replace(cfg, lr_stretch=0.0), image_feats=image_feats,
                         known_fovy=known_fovy, photo_of=photo_of, **kwargs)
    if cfg.lr_stretch <= 0:
        return rigid
    with torch.no_grad():
        target = F.adaptive_avg_pool2d(masks.float(), cfg.resolution).to(rigid.loss.device)
        opacity = torch.cat([render_in_frame(renderer, part, cfg.resolution)["opacity"]
                             for part in rigid.cameras.split(cfg.chunk)]).permute(0, 3, 1, 2)
        iou = binary_iou(opacity, target)
        photo_best = iou.new_zeros(int(photo_of.max()) + 1).scatter_reduce(0, photo_of, iou, "amax")
        loose = photo_best[photo_of] < cfg.stretch_below_iou
        if cfg.prune_step > 0:  # hypotheses the pruning stopped stay alternatives
            loose &= _best_of_each_photo(rigid.loss, photo_of, cfg.prune_keep)
    return _continued(renderer, rigid, loose.nonzero().squeeze(-1), masks, replace(cfg, steps=cfg.stretch_steps,
                      prune_step=0), image_feats, known_fovy, **kwargs)


def polish(renderer: Any, refined: RefineResult, chosen: Int[Tensor, "K"], masks: Float[Tensor, "M 1 S S"],
           cfg: RefineConfig, image_feats: Optional[Float[Tensor, "M C h w"]] = None,
           known_fovy: Optional[Bool[Tensor, "M"]] = None, **kwargs: Any) -> Tuple[RefineResult, float]:
    """`refined` with the hypotheses `chosen` refined `cfg.polish_steps` more steps from where they are, at colour
    weight `cfg.polish_feature_weight` with `cfg.polish_dolly_fov`, on a rigid canonical (their loss only goes down).
    Meant for the hypotheses the collection chose for photos the canonical's own shape fits: there the silhouette is
    the reliable cue and the colour term, which a photo's shading biases, pulls the camera off.

    Each of `cfg.polish_edge_levels` is tried for all `chosen` at once (one batch: hypotheses are independent), each
    from every start of `cfg.polish_focal_factors`. At `cfg.polish_level_step` the level whose photos' best starts
    have the lowest summed loss is the collection's and only its starts go on; at `cfg.polish_start_step` each photo
    keeps its best start. Their cameras are kept. Other arguments as `refine_poses`.

    Returns:
        (refined with the chosen hypotheses polished, the edge level kept).
    """
    weight = cfg.feature_weight if cfg.polish_feature_weight is None else cfg.polish_feature_weight
    levels = tuple(cfg.polish_edge_levels) or (0.5,)
    factors = tuple(cfg.polish_focal_factors) or (1.0,)
    if len(chosen) == 0:
        return refined, levels[0]
    k, n_levels, n_factors = len(chosen), len(levels), len(factors)
    device = chosen.device
    # level-major, then focal start: row (l * F + f) * K + j is level l, start f, photo chosen[j]
    tried = chosen.repeat(n_levels * n_factors)
    level_of = torch.tensor(levels, dtype=torch.float32, device=device).repeat_interleave(n_factors * k)
    factor_of = torch.tensor(factors, dtype=torch.float32, device=device).repeat_interleave(k).repeat(n_levels)
    group = torch.arange(n_levels * k, device=device).view(n_levels, 1, k).expand(n_levels, n_factors, k).reshape(-1)
    known = torch.zeros_like(factor_of, dtype=torch.bool) if known_fovy is None else known_fovy[tried]
    # a photo whose focal length is known keeps it: its other starts would be copies of its first (same results)
    first_start = (torch.arange(n_levels * n_factors * k, device=device) // k) % n_factors == 0
    run = (~known | first_start).nonzero().squeeze(-1)
    tried, level_of, factor_of, group, known = (t[run] for t in (tried, level_of, factor_of, group, known))
    start = PoseParameters.from_cameras(refined.cameras[tried])
    # a focal length f·factor: tan(fovy / 2) / factor, at the same extent (the object keeps its size)
    start = start.with_fovy(2.0 * torch.atan(start.log_tan_half_fov.exp() / factor_of), ~known & (factor_of != 1.0))
    step = cfg.polish_level_step
    pruned = n_factors > 1 and cfg.polish_start_step > 0  # else every start goes on to the end
    more = replace(cfg, steps=cfg.polish_steps, prune_step=cfg.polish_start_step if pruned else 0, prune_keep=1,
                   lr_stretch=0.0, feature_weight=weight, dolly_fov=cfg.polish_dolly_fov)
    result = refine_poses(renderer, start, masks[tried], more,
                          image_feats=None if image_feats is None else image_feats[tried],
                          known_fovy=None if known_fovy is None else known_fovy[tried],
                          photo_of=group if pruned else None, edge_level=level_of, level_step=step, **kwargs)
    # the level and the starts chosen went on and only lowered their loss: still the lowest here (starts not run: inf)
    loss = result.loss.new_full((n_levels * n_factors * k,), float("inf"))
    loss[run] = result.loss
    loss = loss.view(n_levels, n_factors, k)
    best_start = loss.argmin(1)  # [L, K]
    best = int(torch.argmin(loss.gather(1, best_start[:, None]).squeeze(1).sum(1)))
    keep = (best * n_factors + best_start[best]) * k + torch.arange(k, device=device)
    row_of = torch.full((n_levels * n_factors * k,), -1, dtype=torch.long, device=device)
    row_of[run] = torch.arange(len(run), device=device)
    return _merged(refined, chosen, result, row_of[keep]), float(levels[best])


def _continued(renderer: Any, previous: RefineResult, chosen: Int[Tensor, "K"], masks: Float[Tensor, "M 1 S S"],
               cfg: RefineConfig, image_feats: Optional[Float[Tensor, "M C h w"]],
               known_fovy: Optional[Bool[Tensor, "M"]], **kwargs: Any) -> RefineResult:
    """`previous` with the hypotheses `chosen` refined further under `cfg`, from their cameras."""
    if len(chosen) == 0:
        return previous
    more = refine_poses(renderer, PoseParameters.from_cameras(previous.cameras[chosen]), masks[chosen], cfg,
                        image_feats=None if image_feats is None else image_feats[chosen],
                        known_fovy=None if known_fovy is None else known_fovy[chosen], **kwargs)
    return _merged(previous, chosen, more, torch.arange(len(chosen), device=chosen.device))


def _merged(previous: RefineResult, chosen: Int[Tensor, "K"], more: RefineResult, rows: Int[Tensor, "K"]
            ) -> RefineResult:
    """`previous` with hypothesis chosen[i] replaced by row rows[i] of `more` (steps added up)."""
    c2w, fovy, principal = (t.clone() for t in (previous.cameras.c2w, previous.cameras.fovy,
                                                previous.cameras.principal))
    c2w[chosen], fovy[chosen], principal[chosen] = (more.cameras.c2w[rows], more.cameras.fovy[rows],
                                                    more.cameras.principal[rows])
    loss, steps, stretch = previous.loss.clone(), previous.steps.clone(), previous.stretch.clone()
    loss[chosen], steps[chosen], stretch[chosen] = more.loss[rows], steps[chosen] + more.steps[rows], more.stretch[rows]
    cameras = Cameras(c2w, fovy, principal, previous.cameras.height, previous.cameras.width)
    return RefineResult(cameras=cameras, loss=loss, steps=steps, stretch=stretch)


def _of_the_best_level(loss: Float[Tensor, "M"], edge_level: Float[Tensor, "M"], counted: Bool[Tensor, "M"]
                       ) -> Bool[Tensor, "M"]:
    """The hypotheses of the edge level whose summed loss over the `counted` ones is the lowest (ties: the lowest
    level)."""
    levels, group = torch.unique(edge_level, return_inverse=True)
    summed = loss.new_zeros(len(levels)).scatter_add(0, group, torch.where(counted, loss, torch.zeros_like(loss)))
    return group == int(torch.argmin(summed))


def _best_of_each_photo(loss: Float[Tensor, "M"], photo_of: Int[Tensor, "M"], keep: int) -> Bool[Tensor, "M"]:
    """The `keep` lowest-loss hypotheses of each photo."""
    order = torch.argsort(loss, stable=True)
    order = order[torch.argsort(photo_of[order], stable=True)]  # by photo, best first within a photo
    _, counts = torch.unique_consecutive(photo_of[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order), device=loss.device) - starts.repeat_interleave(counts)
    chosen = torch.zeros_like(photo_of, dtype=torch.bool)
    chosen[order[rank < keep]] = True
    return chosen
