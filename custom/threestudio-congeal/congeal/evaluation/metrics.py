"""Evaluation metrics: rotation errors, relative-pose accuracy and AUC, robust frame alignment, PCK.

    err = rotation_error_deg(R_pred, R_gt)                       # [N] geodesic angles in degrees
    rel = relative_pose_errors(R_pred, t_pred, R_gt, t_gt)       # every pair i<j: rotation + translation direction
    ok = pck_correct(pred_xy, gt_xy, bbox_threshold(trg_bbox))   # [P] bool, NaN predictions are misses

Conventions:
- Cameras are world-to-camera (`x_cam = R x + t`) in any one consistent set of camera axes (both prediction and
  ground truth in the same axes; see `congeal.geometry.conventions` for conversions).
- Every error is NaN where it is undefined (NaN input, zero-length translation); every accuracy counts NaN as a
  miss, every mean/median ignores nothing silently: NaNs make "accuracy" drop and are reported as counts.
- Computations run in float64 on the inputs' device.
"""
import math
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Bool, Float, Int, Real
from torch import Tensor

from congeal.geometry.cameras import rotation_angle_deg


def _f64(x: Union[Tensor, float]) -> Tensor:
    return torch.as_tensor(x).to(torch.float64)


# --------------------------------------------------------------------------------------------------- rotations
def rotation_error_deg(R_a: Float[Tensor, "*#batch 3 3"], R_b: Float[Tensor, "*#batch 3 3"]
                       ) -> Float[Tensor, "*shape"]:
    """Geodesic angle between rotations, degrees.

    Args:
        R_a, R_b: rotation matrices (batch shapes broadcast).
    Returns:
        angle of R_a R_bᵀ in [0, 180] (float64) over the broadcast batch shape; atan2 form, accurate near 0° and
        180°; NaN where an input is NaN.
    """
    R_a, R_b = torch.broadcast_tensors(_f64(R_a), _f64(R_b))
    return rotation_angle_deg(R_a, R_b)


def project_to_so3(M: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 3 3"]:
    """Nearest rotation (Frobenius) to each matrix (float64; SVD with the det fix)."""
    U, _, Vh = torch.linalg.svd(_f64(M))
    det = torch.det(U @ Vh)
    fix = torch.ones_like(U[..., 0, :])
    fix[..., -1] = torch.sign(det) + (det == 0).to(det.dtype)  # sign(0) -> 1
    return (U * fix.unsqueeze(-2)) @ Vh


def chordal_mean(R: Float[Tensor, "N 3 3"], weights: Optional[Float[Tensor, " N"]] = None) -> Float[Tensor, "3 3"]:
    """Chordal L2 mean of rotations (optionally weighted): argmin Σ w‖R - R_i‖_F²."""
    R = _f64(R)
    w = torch.ones(R.shape[0], dtype=R.dtype, device=R.device) if weights is None else _f64(weights).to(R.device)
    return project_to_so3((w[:, None, None] * R).sum(0))


def robust_rotation_alignment(candidates: Float[Tensor, "N 3 3"], inlier_deg: float = 30.0,
                              iterations: int = 10) -> Tuple[Float[Tensor, "3 3"], Bool[Tensor, " N"]]:
    """Robustly fit one rotation A to per-image estimates A_i [N,3,3] (outliers allowed).

    Method: exhaustive RANSAC over the N candidates (each is a one-sample hypothesis; its inliers are the
    candidates within `inlier_deg` of it; most inliers wins, ties broken by the smaller sum of inlier angles),
    then re-estimation as the chordal L2 mean of the inliers, re-selecting inliers against the mean until they
    stop changing (at most `iterations` rounds). NaN candidates are never inliers.

    Args:
        candidates: the per-image estimates, N >= 1.
        inlier_deg: inlier threshold in degrees.
        iterations: maximum re-estimation rounds.
    Returns:
        (A, inliers).
    """
    C = _f64(candidates)
    if C.shape[0] == 0:
        raise ValueError("robust_rotation_alignment needs at least one candidate")
    finite = torch.isfinite(C).flatten(1).all(1)
    if not finite.any():
        return torch.full((3, 3), float("nan"), dtype=C.dtype, device=C.device), finite
    Cf = torch.where(finite[:, None, None], C, torch.eye(3, dtype=C.dtype, device=C.device))
    pair = rotation_error_deg(Cf[:, None], Cf[None, :])  # [N,N]
    pair = torch.where(finite[:, None] & finite[None, :], pair, torch.full_like(pair, float("inf")))
    inl = pair < inlier_deg
    counts = inl.sum(1).to(C.dtype)
    cost = torch.where(inl, pair, torch.zeros_like(pair)).sum(1)
    score = counts - cost / (cost.max() + 1.0)  # count first, then smaller angle sum (score stays in (c-1, c])
    score = torch.where(finite, score, torch.full_like(score, -float("inf")))
    inliers = inl[score.argmax()]
    A = chordal_mean(Cf[inliers])
    for _ in range(iterations):
        err = rotation_error_deg(Cf, A)
        new = finite & (err < inlier_deg)
        if not new.any():  # the mean drifted away from every candidate: keep the last set
            break
        A = chordal_mean(Cf[new])
        if torch.equal(new, inliers):
            break
        inliers = new
    return A, inliers


# ------------------------------------------------------------------------------------------------ relative poses
def pair_indices(n: int, device: Optional[Union[str, torch.device]] = None
                 ) -> Tuple[Int[Tensor, " M"], Int[Tensor, " M"]]:
    """All unordered pairs i<j of n items -> (i, j), M = n(n-1)/2."""
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def direction_error_deg(a: Float[Tensor, "*#batch 3"], b: Float[Tensor, "*#batch 3"]) -> Float[Tensor, "*shape"]:
    """Angle between vectors in degrees (signed directions, [0,180]); NaN if either has zero length."""
    a, b = _f64(a), _f64(b)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cross = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    dot = (a * b).sum(-1)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    return torch.where((na > 0) & (nb > 0), angle, torch.full_like(angle, float("nan")))


def relative_pose_errors(R_pred: Float[Tensor, "N 3 3"], t_pred: Float[Tensor, "N 3"], R_gt: Float[Tensor, "N 3 3"],
                         t_gt: Float[Tensor, "N 3"]) -> Dict[str, Tensor]:
    """Gauge-free errors over every image pair i<j (invariant to a similarity transform of either world).

    The relative pose of pair (i, j) maps camera i's frame to camera j's: R_ij = R_j R_iᵀ, t_ij = t_j - R_ij t_i.
    Rotation error = angle(R_ij_pred, R_ij_gt); translation error = angle between t_ij_pred and t_ij_gt as
    signed directions (scale is unobservable, direction sign is not).

    Args:
        R_pred, R_gt: world-to-camera rotations.
        t_pred, t_gt: world-to-camera translations.
    Returns:
        {"i" [M], "j" [M], "rotation_deg" [M], "translation_deg" [M]}, M = N(N-1)/2 (0 when N < 2).
    """
    R_pred, t_pred, R_gt, t_gt = map(_f64, (R_pred, t_pred, R_gt, t_gt))
    i, j = pair_indices(R_pred.shape[0], device=R_pred.device)

    def rel(R, t):
        R_ij = R[j] @ R[i].transpose(-1, -2)
        t_ij = t[j] - (R_ij @ t[i].unsqueeze(-1)).squeeze(-1)
        return R_ij, t_ij

    Rp, tp = rel(R_pred, t_pred)
    Rg, tg = rel(R_gt, t_gt)
    return {"i": i, "j": j, "rotation_deg": rotation_error_deg(Rp, Rg), "translation_deg": direction_error_deg(tp, tg)}


def accuracy(errors: Float[Tensor, "*batch"], threshold: float) -> float:
    """Fraction of errors strictly below `threshold` (NaN counts as a miss); NaN for an empty input."""
    errors = _f64(errors)
    if errors.numel() == 0:
        return float("nan")
    return float((errors < threshold).to(torch.float64).mean())


def pose_auc(rotation_deg: Float[Tensor, " M"], translation_deg: Float[Tensor, " M"], max_threshold: int = 30) -> float:
    """Area under the accuracy curve of max(rotation, translation) error, thresholds 1°..max_threshold° (mean).

    AUC@T = mean over τ in {1, 2, ..., T} of the fraction of pairs whose max(rotation, translation) error is
    below τ (error exactly at an integer counts for the next threshold, as in the histogram form used by
    PoseDiffusion/RelPose++ evaluations). NaN errors count as misses. NaN for no pairs.
    """
    err = torch.maximum(_f64(rotation_deg), _f64(translation_deg))
    if err.numel() == 0:
        return float("nan")
    err = torch.nan_to_num(err, nan=float("inf"))
    taus = torch.arange(1, int(max_threshold) + 1, dtype=err.dtype, device=err.device)
    # error in bin [k, k+1) is counted from threshold k+1 on; the last bin is closed at T
    below = (err[None, :] < taus[:, None]) | ((taus[:, None] == max_threshold) & (err[None, :] <= max_threshold))
    return float(below.to(err.dtype).mean(1).mean())


# --------------------------------------------------------------------------------------------- similarity (3D)
def umeyama(src: Float[Tensor, "N 3"], dst: Float[Tensor, "N 3"], with_scale: bool = True
            ) -> Tuple[Float[Tensor, ""], Float[Tensor, "3 3"], Float[Tensor, " 3"]]:
    """Least-squares similarity dst ≈ s R src + t (Umeyama 1991).

    Args:
        src, dst: corresponding points, N >= 3 and not all collinear for a unique answer.
        with_scale: fit s; else s = 1.
    Returns:
        (s, R, t), float64.
    Raises:
        ValueError: N < 2, non-finite input, or src with zero spread.
    """
    src, dst = _f64(src), _f64(dst)
    if src.shape[0] < 2 or not (torch.isfinite(src).all() and torch.isfinite(dst).all()):
        raise ValueError("umeyama needs at least 2 finite point pairs")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum(1).mean()
    if var_s <= 0:
        raise ValueError("umeyama: source points have zero spread")
    cov = xd.T @ xs / src.shape[0]
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=src.dtype, device=src.device)
    if torch.det(U) * torch.det(Vh) < 0:
        d[-1] = -1.0
    R = U @ torch.diag(d) @ Vh
    s = (S * d).sum() / var_s if with_scale else torch.ones((), dtype=src.dtype, device=src.device)
    t = mu_d - s * (R @ mu_s)
    return s, R, t


# -------------------------------------------------------------------------------------------------------- PCK
def bbox_threshold(bbox: Real[Tensor, "*batch 4"], alpha: float = 0.1) -> Float[Tensor, "*batch"]:
    """PCK threshold from boxes (x1, y1, x2, y2): alpha · max(x2 - x1, y2 - y1), float64."""
    bbox = _f64(bbox)
    return alpha * torch.maximum(bbox[..., 2] - bbox[..., 0], bbox[..., 3] - bbox[..., 1])


def pck_correct(pred: Float[Tensor, "P 2"], gt: Real[Tensor, "P 2"],
                threshold: Union[float, Float[Tensor, ""], Float[Tensor, " P"]]) -> Bool[Tensor, " P"]:
    """Whether each predicted point is within `threshold` pixels of its ground truth (distance <= threshold).

    Args:
        pred, gt: points (x, y); NaN predictions are misses.
        threshold: one threshold, or one per point.
    """
    dist = (_f64(pred) - _f64(gt)).norm(dim=-1)
    return torch.nan_to_num(dist, nan=float("inf")) <= _f64(threshold).to(dist.device)


def pck_summary(correct_per_pair: Sequence[Bool[Tensor, " _"]]) -> Dict[str, float]:
    """Aggregate per-pair correctness into both PCK averages.

    per_point: all correct points / all points (pairs weighted by their keypoint count).
    per_image: mean over pairs of that pair's fraction correct (pairs with no keypoints are left out).

    Args:
        correct_per_pair: one tensor per pair, one entry per keypoint of the pair.
    Returns:
        {"pck_per_point", "pck_per_image", "n_pairs" (with >= 1 keypoint), "n_points"}; PCKs are NaN when empty.
    """
    sizes = [int(c.numel()) for c in correct_per_pair]
    hits = [int(c.sum()) for c in correct_per_pair]
    n_points = sum(sizes)
    used = [h / s for h, s in zip(hits, sizes) if s > 0]
    return {
        "pck_per_point": sum(hits) / n_points if n_points else float("nan"),
        "pck_per_image": sum(used) / len(used) if used else float("nan"),
        "n_pairs": len(used),
        "n_points": n_points,
    }


def nan_stats(values: Float[Tensor, "*batch"]) -> Dict[str, float]:
    """mean / median of the finite values plus the count of non-finite ones (NaN stats when none is finite)."""
    values = _f64(values).flatten()
    finite = values[torch.isfinite(values)]
    nan = float("nan")
    return {
        "mean": float(finite.mean()) if finite.numel() else nan,
        "median": float(finite.median()) if finite.numel() else nan,
        "n": int(values.numel()),
        "n_undefined": int(values.numel() - finite.numel()),
    }


def mean_of(values: Iterable[float]) -> float:
    """Mean of the finite floats (NaN when there are none): category means skip empty categories."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")
