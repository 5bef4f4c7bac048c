"""Every photo's camera: search -> refine -> select, batched over photos and hypotheses.

    renderers = PoseRenderers.from_canonical(canonical, cfg)
    estimates = estimate_poses(photos, masks, bank, extractor, renderers, cfg, StageTimer(device))
    estimates.best            # [N] index of each photo's chosen hypothesis (h = n*k + j)

Search scores the N photos against the K framed candidates of the bank and keeps k hypotheses per photo; refinement
optimises all N*k hypotheses at once (soft IoU, optional colour term); selection renders every refined hypothesis at the
working size and scores each by feature distance + iou_weight * (1 - IoU); the collection then chooses one per photo
jointly (`consensus.choose_jointly`: the photos' features must agree at the canonical points their hypotheses map them
to), and reports each photo's ambiguity. The others stay alternatives. Last, with `refine.polish_feature_weight`, the
chosen hypothesis of each photo the rigid canonical fits is polished on its silhouette (`refine.polish`), after the
choice so that it never changes which reading a photo gets.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from congeal.common.stage_timer import StageTimer
from congeal.features.extractors import FeatureExtractor, RGBFeatures
from congeal.geometry.cameras import turned_to_principal
from congeal.registration.registration_config import RegistrationConfig
from congeal.registration.consensus import ConsensusField, JointChoice, choose_jointly
from congeal.registration.framing import render_in_frame
from congeal.registration.losses import binary_iou, masked_feature_distance
from congeal.registration.refine import PoseParameters, RefineResult, polish, refine_then_stretch
from congeal.registration.search import CandidateBank, score_candidates, score_grid, top_k_hypotheses


@dataclass
class PoseRenderers:
    """The renderers of each step: search (candidate bank), refine (mask loss), feature (colour term), final."""

    search: Any
    """renders the candidate bank."""
    refine: Any
    """renders opacity for the mask loss (the closed-form silhouette renderer when the canonical is a grid)."""
    feature: Optional[Any]
    """renders colour for the refinement's and the polish's feature term (None when neither has one)."""
    final: Any
    """renders every refined hypothesis at the working size (selection, mapping, pictures)."""

    @classmethod
    def from_canonical(cls, canonical: Any, cfg: RegistrationConfig) -> "PoseRenderers":
        """Grid renderers over a baked canonical, each with its step's sample count."""
        from congeal.canonical.render import GridRenderer
        from congeal.canonical.silhouette import SilhouetteRenderer

        # the mask loss needs opacity alone: the closed-form silhouette renderer is several times cheaper; the
        # optional colour term gets a full renderer at its own resolution
        return cls(search=GridRenderer(canonical, num_samples=cfg.search.render_samples),
                   refine=SilhouetteRenderer(canonical, num_samples=cfg.refine.samples),
                   feature=(GridRenderer(canonical, num_samples=cfg.refine.samples)
                            if needs_colour(cfg) else None),
                   final=GridRenderer(canonical, num_samples=cfg.final_samples, front_level=cfg.final_front_level,
                                      front_gap_cells=cfg.final_front_gap_cells))

    @classmethod
    def shared(cls, renderer: Any, cfg: RegistrationConfig) -> "PoseRenderers":
        """One external renderer (e.g. a threestudio renderer through the protocol) for every step."""
        return cls(search=renderer, refine=renderer, feature=renderer if needs_colour(cfg) else None,
                   final=renderer)


def needs_colour(cfg: RegistrationConfig) -> bool:
    """Does the refinement or the polish compare colours? (`refine.feature_weight=0` alone leaves the polish's own
    `polish_feature_weight`: the polish then still needs a colour renderer.)"""
    polish = cfg.refine.polish_feature_weight
    return cfg.refine.feature_weight > 0 or (polish is not None and polish > 0)


@dataclass
class PoseEstimates:
    """Search, refinement and selection results of N photos with k hypotheses each (hypothesis h = n*k + j)."""

    candidates: Int[Tensor, "NK"]
    """the grid candidate each hypothesis started from."""
    search_scores: Float[Tensor, "N K"]
    """every photo's search score against every candidate (lower is better)."""
    score_grid: Float[Tensor, "N E A"]
    """the best search score over FoVs at each (elevation, azimuth)."""
    refined: RefineResult
    """refined working-frame cameras of all hypotheses, with their loss and step count."""
    iou: Float[Tensor, "NK"]
    """binary IoU of each refined hypothesis' final render with its photo's mask."""
    feature_distance: Float[Tensor, "NK"]
    """masked feature distance of each final render to its photo."""
    score: Float[Tensor, "NK"]
    """selection score: feature_distance + iou_weight * (1 - iou) (lower is better)."""
    joint: JointChoice
    """the collection's choice: each hypothesis' disagreement with the other photos, joint score, each photo's
    ambiguity."""
    order: Int[Tensor, "N k"]
    """each photo's hypotheses, best joint score first (indices j into its k)."""
    best: Int[Tensor, "N"]
    """each photo's chosen hypothesis h."""
    image_feats: Float[Tensor, "N C h w"]
    """the photos' features."""
    render: Dict[str, Tensor]
    """final renders of the chosen hypotheses: rgb [N,S,S,3], opacity [N,S,S,1], xyz [N,S,S,3]."""
    render_feats: Float[Tensor, "N C h w"]
    """features of the chosen hypotheses' final renders."""
    edge_level: Float[Tensor, "NK"]
    """the opacity contour each hypothesis was last fitted to as the canonical's edge: the collection's level
    (`RefineConfig.polish_edge_levels`) for the polished ones, 0.5 for the others."""

    @property
    def k(self) -> int:
        """Hypotheses per photo."""
        return self.order.shape[1]

    def scores_of(self, photo: int, h: int) -> Dict[str, float]:
        """Photo `photo`'s scores of hypothesis `h`, JSON-ready."""
        values = {"iou": self.iou[h], "feature_distance": self.feature_distance[h], "score": self.score[h],
                  "disagreement": self.joint.disagreement[h], "joint_score": self.joint.joint_score[h],
                  "search_score": self.search_scores[photo, self.candidates[h]], "refine_loss": self.refined.loss[h],
                  "refine_steps": self.refined.steps[h], "edge_level": self.edge_level[h]}
        return {key: float(v) for key, v in values.items()}


def binary_at(masks: Float[Tensor, "N 1 S S"], size: int) -> Float[Tensor, "N 1 r r"]:
    """`masks` (binary, or each pixel's covered fraction) at `size` px, binary: the fraction of each pixel they
    cover, thresholded at 0.5 (the working masks themselves when `size` is the working size)."""
    return (F.adaptive_avg_pool2d(masks.float(), size) >= 0.5).float()


def estimate_poses(photos: Float[Tensor, "N 3 S S"], masks: Float[Tensor, "N 1 S S"],
                   principals: Float[Tensor, "N 2"], known_fovy: Float[Tensor, "N"], bank: CandidateBank,
                   extractor: FeatureExtractor,
                   renderers: PoseRenderers, cfg: RegistrationConfig, timer: StageTimer,
                   progress: bool = False, prior: Optional[ConsensusField] = None,
                   mask_cover: Optional[Float[Tensor, "N 1 S S"]] = None) -> PoseEstimates:
    """Search, refine and select every photo's camera.

    Args:
        photos: working crops composited on black outside their masks (like the premultiplied renders).
        masks: the photos' masks in [0,1].
        principals: each photo's principal point in its working frame (its centre, or its known intrinsics, mapped
            into its crop).
        known_fovy: each photo's vertical FoV in its working frame where its focal length is known (EXIF or given),
            NaN where it is estimated.
        bank: the framed candidate renders and their features (`search.build_candidate_bank`).
        extractor: the bank's feature extractor.
        renderers: each step's renderer.
        cfg: the stages' settings.
        timer: times the "search", "refine", "select" and (with `refine.polish_feature_weight`) "polish" stages.
        progress: tqdm bar for the refinement.
        prior: the consensus field of photos registered before (`--add`): they vote in the joint choice.
        mask_cover: the fraction of each working pixel the photo's object covers (`masks` thresholded at 0.5 is
            binary): the polish's silhouette target with `refine.polish_cover`. None: `masks`.
    Returns:
        PoseEstimates.
    """
    n, device = photos.shape[0], photos.device
    k = min(cfg.search.top_k, len(bank))
    polish_target = mask_cover if mask_cover is not None and cfg.refine.polish_cover else masks
    # the rigid and stretched phases fit a binary mask at the refinement's resolution whatever the working size: a
    # fractional target there (a 224 px mask pooled to 64 px) makes cross-instance photos worse; only the polish
    # fits each pixel's covered fraction (docs/evaluation.md, stops 25 and 27)
    rigid_target = binary_at(masks if mask_cover is None else mask_cover, cfg.refine.resolution)

    def search():
        with torch.no_grad():
            feats = extractor.extract(photos)
            scores = score_candidates(feats, masks, bank, cfg.search)["score"]
            top = top_k_hypotheses(scores, bank, k, cfg.search.nms_deg)  # [N,k]
        return feats, scores, top

    image_feats, search_scores, top = timer.run("search", search)
    candidates = top.reshape(-1)
    photo_of = torch.arange(n, device=device).repeat_interleave(k)

    known = ~torch.isnan(known_fovy[photo_of])
    # the refinement's feature term is a colour term whatever the search's features: it runs at every step for
    # every hypothesis, where a DINOv2 forward and backward pass would cost more than all the rest
    colour = RGBFeatures(grid=cfg.features.rgb_grid, normalise=cfg.features.rgb_normalise)
    refine_kwargs = dict(known_fovy=known, extractor=colour, progress=progress, feature_renderer=renderers.feature)

    def refine():
        # candidates are look-at cameras framed like the photo; turned about their centres to the photo's own
        # principal point, they see the object from the same side at the same place in the frame
        init = PoseParameters.from_cameras(turned_to_principal(bank.cameras[candidates], principals[photo_of]))
        init = init.with_fovy(torch.nan_to_num(known_fovy[photo_of], nan=1.0), known)
        colour_feats = image_feats if extractor.identity == colour.identity else colour.extract(photos)
        refine_kwargs["image_feats"] = colour_feats[photo_of]
        return refine_then_stretch(renderers.refine, init, rigid_target[photo_of], cfg.refine, photo_of,
                                   **refine_kwargs)

    refined = timer.run("refine", refine)

    def final_render(cameras: Any) -> Dict[str, Tensor]:
        """The rigid canonical at `cameras` (not its stretch: maps, pictures and every reader of poses.json project
        canonical points with the camera alone)."""
        with torch.no_grad():
            outs = [render_in_frame(renderers.final, part, cfg.working_size)
                    for part in cameras.split(cfg.search.chunk)]
            out = {key: torch.cat([o[key] for o in outs]) for key in ("rgb", "opacity", "xyz")}
            return out

    def scored(out: Dict[str, Tensor], of: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Final renders' features, IoU, feature distance and selection score against the photos `of`."""
        with torch.no_grad():
            opacity = out["opacity"].permute(0, 3, 1, 2)
            rgb = out["rgb"].permute(0, 3, 1, 2).clamp(0, 1)
            iou = binary_iou(opacity, masks[of])
            render_feats = extractor.extract(rgb)
            weight = F.adaptive_avg_pool2d(opacity * masks[of], render_feats.shape[-2:])
            fdist = masked_feature_distance(render_feats, image_feats[of], weight)
            return render_feats, iou, fdist, fdist + cfg.search.iou_weight * (1.0 - iou)

    def select():
        out = final_render(refined.cameras)
        render_feats, iou, fdist, score = scored(out, photo_of)
        with torch.no_grad():
            joint = choose_jointly(score.view(n, k), out["xyz"], out["opacity"], masks, image_feats, cfg.consensus,
                                   prior, rotations=refined.cameras.c2w[:, :3, :3])
        return out, render_feats, iou, fdist, score, joint

    out, render_feats, iou, fdist, score, joint = timer.run("select", select)
    order = joint.order
    best = torch.arange(n, device=device) * k + order[:, 0]

    edge_level = torch.full((n * k,), 0.5, dtype=torch.float64, device=device)
    if cfg.refine.polish_feature_weight is not None:
        # after the collection's choice, so the polish never changes which reading a photo gets: the chosen
        # hypothesis of each photo the rigid canonical fits goes on, on its silhouette (registration.refine.polish)
        rigid = (refined.stretch[best] == 1.0).all(-1) & (iou[best] >= cfg.refine.stretch_below_iou)
        chosen = best[rigid]

        def polish_chosen():
            polished, level = polish(renderers.refine, refined, chosen, polish_target[photo_of], cfg.refine,
                                     **refine_kwargs)
            again = final_render(polished.cameras[chosen])
            return polished, level, again, scored(again, photo_of[chosen])

        if len(chosen):
            refined, level, again, (feats_c, iou_c, fdist_c, score_c) = timer.run("polish", polish_chosen)
            edge_level[chosen] = level
            for key in out:
                out[key][chosen] = again[key]
            render_feats[chosen], iou[chosen], fdist[chosen], score[chosen] = feats_c, iou_c, fdist_c, score_c
    return PoseEstimates(candidates=candidates, search_scores=search_scores,
                         score_grid=score_grid(search_scores, cfg.grid), refined=refined, iou=iou,
                         feature_distance=fdist, score=score, joint=joint, order=order, best=best, image_feats=image_feats,
                         render={key: value[best] for key, value in out.items()}, render_feats=render_feats[best],
                         edge_level=edge_level)
