"""Pose search: every photo against every candidate camera of the grid, in one batched scoring operation.

    bank = build_candidate_bank(renderer, extractor, CandidateGridConfig(), radius, SearchConfig())   # once
    scores = score_candidates(image_feats, image_masks, bank, SearchConfig())         # [N,K], lower is better
    top = top_k_hypotheses(scores, bank, k=3, nms_deg=25.0)                           # [N,k] candidate indices

The K candidates are rendered ONCE (chunked), each framed like the photos (object bbox -> square + margin -> S×S),
and their features extracted ONCE; the bank can be saved to / loaded from the run's cache. The score of photo n
and candidate k is

    feature_distance(n, k) + iou_weight · (1 − IoU(n, k))

where the feature distance is the mean of (1 − cosine) over the overlap of the photo's mask and the candidate's
opacity (background features never enter), and IoU is the IoU of the two binarised masks at `mask_size`. Both
are matrix products over all N×K pairs.
"""
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from congeal.common.atomic import write_safetensors
from congeal.common.paths import PathLike
from congeal.features.extractors import FeatureExtractor
from congeal.geometry.cameras import Cameras, rotation_angle_deg
from congeal.geometry.candidates import CandidateGridConfig, candidate_poses
from congeal.registration.framing import camera_in_frame, crop_resize, square_boxes
from congeal.registration.losses import sharpen

BANK_FORMAT = "congeal-candidates-v2"


@dataclass
class SearchConfig:
    """Pose-search settings."""

    render_size: int = 128
    """Side of the full-frame candidate renders before framing (px)."""
    render_samples: int = 48
    """Ray-marching samples per ray for candidate renders."""
    chunk: int = 64
    """Candidates rendered / framed per chunk (bounds memory)."""
    iou_weight: float = 1.0
    """Weight w of the (1 − IoU) term."""
    mask_size: int = 32
    """Side at which masks are compared for IoU."""
    top_k: int = 3
    """Hypotheses kept per photo for refinement."""
    nms_deg: float = 25.0
    """A hypothesis suppresses other candidates whose rotation is within this angle (so the k kept hypotheses are
    distinct readings, e.g. both sides of a symmetric object, not grid neighbours)."""
    score_chunk: int = 256
    """Candidates scored per matrix product (bounds memory for large feature maps)."""
    opacity_sharpness: float = 10.0
    """Candidate opacity o is compared as sigmoid(k·(o − 0.5)) (see `losses.sharpen`): photo masks are binary, and
    a soft fringe would otherwise cap every IoU well below 1."""


#: The bank file's tensors besides the working-frame cameras (c2w, fovy, principal).
_BANK_TENSORS = ("grid_c2w", "grid_fovy", "azimuth_deg", "elevation_deg", "fovy_deg", "opacity", "features")


@dataclass
class CandidateBank:
    """Framed candidate renders and their features (all on one device)."""

    cameras: Cameras
    """The K candidates' working-frame cameras (S×S, principal point where the framing put it; see
    `framing.camera_in_frame`)."""
    grid_c2w: Float[Tensor, "K 4 4"]
    """The grid cameras (look-at, full frame)."""
    grid_fovy: Float[Tensor, "K"]
    """The grid cameras' vertical FoV (radians) over the full render."""
    azimuth_deg: Float[Tensor, "K"]
    """Grid azimuth of each candidate."""
    elevation_deg: Float[Tensor, "K"]
    """Grid elevation of each candidate."""
    fovy_deg: Float[Tensor, "K"]
    """Grid FoV of each candidate (degrees)."""
    opacity: Float[Tensor, "K 1 S S"]
    """Framed opacity."""
    features: Float[Tensor, "K C h w"]
    """Features of the framed renders."""

    def __len__(self) -> int:
        return len(self.cameras)

    def tensors(self) -> Dict[str, Tensor]:
        """The bank file's tensors (detached, contiguous)."""
        out = {"c2w": self.cameras.c2w, "fovy": self.cameras.fovy, "principal": self.cameras.principal}
        out.update({k: getattr(self, k) for k in _BANK_TENSORS})
        return {k: v.detach().contiguous() for k, v in out.items()}

    @staticmethod
    def from_tensors(tensors: Dict[str, Tensor]) -> "CandidateBank":
        """The bank from the tensors of `tensors()` (the working size is the opacity's side)."""
        size = int(tensors["opacity"].shape[-1])
        cameras = Cameras(tensors["c2w"], tensors["fovy"], tensors["principal"], size, size)
        return CandidateBank(cameras, **{k: tensors[k] for k in _BANK_TENSORS})

    def to(self, device: Union[str, torch.device]) -> "CandidateBank":
        return CandidateBank(self.cameras.to(device), **{k: getattr(self, k).to(device) for k in _BANK_TENSORS})


def bank_key(canonical_hash: str, extractor_identity: str, grid: CandidateGridConfig, working_size: int,
             margin: float, search: SearchConfig, radius: float) -> str:
    """Cache key: canonical content + extractor + grid + framing + render settings (anything that changes the bank)."""
    payload = json.dumps({
        "format": BANK_FORMAT, "canonical": canonical_hash, "extractor": extractor_identity, "grid": asdict(grid),
        "size": working_size, "margin": margin, "render_size": search.render_size,
        "samples": search.render_samples, "radius": round(float(radius), 6),
    }, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def build_candidate_bank(renderer: Any, extractor: FeatureExtractor, grid: CandidateGridConfig, radius: float,
                         cfg: SearchConfig, working_size: int, margin: float, device: Union[str, torch.device],
                         progress: bool = False) -> CandidateBank:
    """Render, frame and featurise every candidate of the grid once.

    Args:
        renderer: a `Renderer` (render(cameras, H, W)).
        extractor: the feature extractor used for the photos.
        grid: candidate grid (K = grid.size).
        radius: bounding radius of the canonical (sets the candidate distances).
        cfg: search settings (render size, samples, chunk).
        working_size: S, the photos' working size.
        margin: the photos' crop margin (fraction of the bbox's longer side on each side).
        device: where the work runs.
        progress: tqdm bar over chunks.
    Returns:
        CandidateBank with K candidates.
    """
    from tqdm.auto import tqdm

    poses = candidate_poses(grid, radius, device=device)
    size = cfg.render_size
    grid_cameras = poses.cameras(size, size)
    working, opacity, features = [], [], []
    with torch.no_grad():
        for cameras in tqdm(grid_cameras.split(cfg.chunk), desc="render candidates", disable=not progress,
                            leave=False):
            out = renderer.render(cameras, size, size)
            boxes = square_boxes(out["opacity"], margin=margin)
            stacked = torch.cat([out["rgb"], out["opacity"]], dim=-1).permute(0, 3, 1, 2)  # [B,4,R,R]
            framed = crop_resize(stacked, boxes, working_size)
            working.append(camera_in_frame(cameras, boxes, working_size))
            opacity.append(framed[:, 3:4].clamp(0, 1))
            features.append(extractor.extract(framed[:, :3].clamp(0, 1)))
    return CandidateBank(
        cameras=Cameras.cat(working), grid_c2w=poses.c2w, grid_fovy=poses.fovy, azimuth_deg=poses.azimuth_deg,
        elevation_deg=poses.elevation_deg, fovy_deg=poses.fovy_deg, opacity=torch.cat(opacity),
        features=torch.cat(features),
    )


def save_bank(path: PathLike, bank: CandidateBank, key: str) -> None:
    """Write the bank atomically (features stored as float16 to halve the cache size)."""
    tensors = bank.tensors()
    tensors["features"] = tensors["features"].to(torch.float16)
    write_safetensors(path, {k: v.cpu() for k, v in tensors.items()}, metadata={"format": BANK_FORMAT, "key": key})


def load_bank(path: PathLike, key: str, device: Union[str, torch.device]) -> Optional[CandidateBank]:
    """Load a cached bank if `path` exists and carries `key`; otherwise None (the caller rebuilds it)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != BANK_FORMAT or meta.get("key") != key:
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        tensors["features"] = tensors["features"].float()
        return CandidateBank.from_tensors(tensors).to(device)
    except Exception:  # a truncated/corrupt cache is rebuilt, never trusted
        return None


def _pool(x: Float[Tensor, "B C H W"], size: Union[int, Tuple[int, int]]) -> Float[Tensor, "B C h w"]:
    return F.adaptive_avg_pool2d(x.float(), size)


def score_candidates(image_feats: Float[Tensor, "N C h w"], image_masks: Float[Tensor, "N 1 S S"],
                     bank: CandidateBank, cfg: SearchConfig, eps: float = 1e-3) -> Dict[str, Tensor]:
    """Score every photo against every candidate.

    Args:
        image_feats: photo features (same extractor and working size as the bank).
        image_masks: photo masks in [0,1].
        bank: the candidates.
        cfg: iou_weight, mask_size, score_chunk.
        eps: keeps the feature distance defined (→ 1, "unrelated") where the masks do not overlap.
    Returns:
        dict with score, feature_distance, iou: each [N,K].
    """
    n, c, h, w = image_feats.shape
    m_feat = _pool(image_masks, (h, w)).reshape(n, h * w)  # [N,P]
    weighted_img = (image_feats.float() * m_feat.view(n, 1, h, w)).reshape(n, -1)  # [N,C·P]
    # IoU of binary masks at mask_size (a soft IoU of two fractional maps stays below 1 even for identical ones)
    m_iou = (_pool(image_masks, cfg.mask_size) >= 0.5).float().reshape(n, -1)  # [N,Q]
    area_img = m_iou.sum(-1, keepdim=True)
    dist, ious = [], []
    for start in range(0, bank.opacity.shape[0], cfg.score_chunk):
        opacity = sharpen(bank.opacity[start: start + cfg.score_chunk].float(), cfg.opacity_sharpness)
        feats = bank.features[start: start + cfg.score_chunk].float()
        k = opacity.shape[0]
        o_feat = _pool(opacity, (h, w)).reshape(k, h * w)
        overlap = m_feat @ o_feat.T  # [N,k] Σ m·o
        agreement = weighted_img @ (feats * o_feat.view(k, 1, h, w)).reshape(k, -1).T  # Σ m·o·<f,g>
        dist.append((overlap - agreement + eps) / (overlap + eps))
        o_iou = (_pool(opacity, cfg.mask_size) >= 0.5).float().reshape(k, -1)
        inter = m_iou @ o_iou.T
        union = area_img + o_iou.sum(-1)[None] - inter
        ious.append(inter / union.clamp_min(1e-6))
    feature_distance = torch.cat(dist, dim=1)
    iou = torch.cat(ious, dim=1)
    return {"score": feature_distance + cfg.iou_weight * (1.0 - iou), "feature_distance": feature_distance,
            "iou": iou}


def top_k_hypotheses(scores: Float[Tensor, "N K"], bank: CandidateBank, k: int,
                     nms_deg: float) -> Int[Tensor, "N k"]:
    """Best k candidates per photo with rotation non-maximum suppression.

    Args:
        scores: lower is better.
        bank: for the candidates' rotations.
        k: hypotheses per photo.
        nms_deg: candidates within this rotation angle of an already-chosen one are skipped.
    Returns:
        [N,k] candidate indices, best first (k is capped at the number of distinct readings available; a photo with
        fewer survivors repeats its best).
    """
    rotations = bank.grid_c2w[:, :3, :3]
    near = rotation_angle_deg(rotations[:, None], rotations[None, :]) < nms_deg  # [K,K]
    masked = scores.clone()
    chosen = []
    for _ in range(min(k, scores.shape[1])):  # loop over hypotheses (k ≤ a handful), batched over photos
        best = masked.argmin(dim=1)  # [N]
        exhausted = torch.isinf(masked.gather(1, best[:, None]))[:, 0]
        best = torch.where(exhausted, chosen[0] if chosen else best, best)
        chosen.append(best)
        masked = masked.masked_fill(near[best], float("inf"))
    return torch.stack(chosen, dim=1)


def score_grid(scores: Float[Tensor, "N K"], grid: CandidateGridConfig) -> Float[Tensor, "N E A"]:
    """The best score over FoVs at every (elevation, azimuth) of the grid."""
    table = scores.reshape(scores.shape[0], len(grid.fovy_deg), grid.n_elevation, grid.n_azimuth)
    return table.amin(dim=1)
