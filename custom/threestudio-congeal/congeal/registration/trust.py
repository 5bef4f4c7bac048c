"""How far to trust each photo's camera: one calibrated confidence, a status and the reason.

    trust = assess_trust(TrustSignals(iou, feature_distance, ambiguity, disagreement), TrustConfig())
    trust.confidence     # [N] in (0, 1): the calibrated probability that the camera is within 10° of the truth
    trust.status         # ["ok" | "undecided" | "failed"] per photo
    trust.reasons        # why a photo is flagged, in words ("" when ok)

Why: a wrong camera reported as a normal result is the worst output registration can give — every map,
correspondence, label and transforms.json frame built on it is silently wrong. The run knows more than any one number
says: how well the silhouette fits (IoU), how well the colours agree (the appearance residual), whether another
distinct pose explained the photo about as well (ambiguity), and whether the photo's colours land where the rest of the
collection put the same colours (the collection's disagreement). Each is weak alone: a back-lit photo has a large
colour residual at the right pose, a flipped symmetric object fits its silhouette perfectly. Together, and relative to
the collection's typical photo (a hard collection has low IoUs everywhere), they separate right from wrong.

The confidence is a logistic model over `FEATURES` (below), fitted on the benchmark sets' tuning seeds only
(`congeal bench-sets calibrate`, docs/evaluation.md "Trust"). The status: `failed` below `failed_below` (the camera is
left out of transforms.json, exports, propagate and edit), `undecided` below `ok_below` (kept, marked for a look),
`ok` otherwise.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["FEATURES", "TrustConfig", "TrustSignals", "Trust", "trust_features", "assess_trust", "STATUSES",
           "signals_from_records"]

STATUSES = ("ok", "undecided", "failed")

#: the model's inputs, in the order of `TrustConfig.weights` (a photo's value, or its gap to the collection's median)
FEATURES = ("iou", "iou_gap", "feature_distance", "feature_gap", "ambiguity", "disagreement_gap")

#: how each feature reads in a flagged photo's reason (format: value, collection median)
_REASONS = {
    "iou": "its silhouette fits poorly (IoU {value:.2f})",
    "iou_gap": "its silhouette fits worse than the others' (IoU {value:.2f}, collection median {median:.2f})",
    "feature_distance": "its colours do not match the canonical's (residual {value:.2f})",
    "feature_gap": "its colours match worse than the others' (residual {value:.2f}, median {median:.2f})",
    "ambiguity": "another distinct pose explains it almost as well (ambiguity {value:.2f}, median {median:.2f})",
    "disagreement_gap": "its colours disagree with where the collection put them ({value:.2f}, median {median:.2f})",
}


@dataclass
class TrustConfig:
    """The calibrated confidence model and the status thresholds."""

    # Fitted by `congeal bench-sets calibrate` (ridge 0.1) on the wild sets' tuning seeds 0-1 (10 runs, 80 photos, 27
    # more than 30° off): docs/evaluation.md "Trust". A first fit on few runs: see its held-out numbers there.
    bias: float = 0.7631
    """Intercept of the logistic model."""
    weights: Tuple[float, ...] = (1.3412, 1.6103, 1.2637, -0.508, -2.6676, 7.4251)
    """One weight per entry of `FEATURES` (fitted with the bias)."""
    ok_below: float = 0.5801
    """A camera whose confidence is below this is `undecided`: kept, but marked for a look."""
    failed_below: float = 0.375
    """A camera whose confidence is below this is `failed`: left out of everything a user consumes."""
    verdict_flags: bool = False
    """The collection's `undecided` verdict (ambiguity ≥ `consensus.undecided_ratio`) makes an `ok` camera
    `undecided` (the calibration keeps it only where it catches wrong cameras without flagging right ones)."""
    min_reference: int = 3
    """Fewer photos than this in the collection: the gaps to its median are taken as 0 (no typical photo to compare
    with)."""


@dataclass
class TrustSignals:
    """What the run measured of each photo's chosen camera."""

    iou: Float[Tensor, "N"]
    """fit IoU of the photo's mask and the render at its camera."""
    feature_distance: Float[Tensor, "N"]
    """appearance residual (masked feature distance, 0 = identical)."""
    ambiguity: Float[Tensor, "N"]
    """chosen joint score / best distinct reading's (1 = indistinguishable, 0 = no distinct reading)."""
    disagreement: Float[Tensor, "N"]
    """the chosen hypothesis' disagreement with the other photos' choices."""
    verdict: Optional[Bool[Tensor, "N"]] = None
    """the collection's `undecided` verdict (ambiguity ≥ `consensus.undecided_ratio`); None: not given."""


@dataclass
class Trust:
    """Per photo: confidence, status and reason."""

    confidence: Float[Tensor, "N"]
    status: List[str]
    reasons: List[str]


def _median(values: Tensor, reference: Optional[Tensor], min_reference: int) -> Optional[Tensor]:
    pool = values if reference is None else torch.cat([values, reference])
    pool = pool[torch.isfinite(pool)]
    return pool.median() if pool.numel() >= min_reference else None


def trust_features(signals: TrustSignals, cfg: TrustConfig,
                   reference: Optional[TrustSignals] = None) -> Tuple[Float[Tensor, "N F"], Float[Tensor, "F"]]:
    """The model's inputs per photo, and the collection's median of each feature's underlying value.

    Args:
        signals: the photos to assess.
        reference: photos registered before (`congeal register --add`): they count in the collection's medians.
    Returns:
        (features [N, len(FEATURES)], medians [len(FEATURES)]; NaN where there is no median).
    """
    iou, residual = signals.iou.double(), signals.feature_distance.double()
    ambiguity, disagreement = signals.ambiguity.double(), signals.disagreement.double()

    def gap(values: Tensor, ref: Optional[Tensor]) -> Tuple[Tensor, float]:
        median = _median(values, None if ref is None else ref.double(), cfg.min_reference)
        if median is None:
            return torch.zeros_like(values), float("nan")
        return values - median, float(median)

    iou_gap, iou_med = gap(iou, None if reference is None else reference.iou)
    feature_gap, feature_med = gap(residual, None if reference is None else reference.feature_distance)
    disagreement_gap, disagreement_med = gap(disagreement, None if reference is None else reference.disagreement)
    features = torch.stack([iou, iou_gap, residual, feature_gap, ambiguity, disagreement_gap], dim=-1)
    # the collection's median of each feature's underlying value (the reasons quote them)
    _, ambiguity_med = gap(ambiguity, None if reference is None else reference.ambiguity)
    medians = torch.tensor([iou_med, iou_med, feature_med, feature_med, ambiguity_med, disagreement_med],
                           dtype=torch.float64)
    return torch.nan_to_num(features, nan=0.0), medians


def _confidence(features: Float[Tensor, "N F"], cfg: TrustConfig) -> Float[Tensor, "N"]:
    if len(cfg.weights) != len(FEATURES):
        raise ValueError(f"trust.weights needs {len(FEATURES)} values ({', '.join(FEATURES)}), got {len(cfg.weights)}")
    weights = torch.tensor(cfg.weights, dtype=torch.float64)
    return torch.sigmoid(cfg.bias + features @ weights)


def assess_trust(signals: TrustSignals, cfg: TrustConfig, reference: Optional[TrustSignals] = None) -> Trust:
    """Confidence, status and reason of every photo (batched; the reasons are per-photo strings).

    The reason names the feature that lowers the photo's confidence most, compared with a photo that had the
    collection's median values. With `cfg.verdict_flags`, the collection's verdict makes an `ok` camera undecided.
    """
    features, medians = trust_features(signals, cfg, reference)
    confidence = _confidence(features, cfg)
    weights = torch.tensor(cfg.weights, dtype=torch.float64)
    # a photo with the collection's median values (its gaps 0): the reason is what sets this photo apart
    baseline = torch.tensor([float(medians[0]), 0.0, float(medians[2]), 0.0, float(medians[4]), 0.0],
                            dtype=torch.float64)
    baseline = torch.nan_to_num(baseline, nan=0.0)
    contributions = (features - baseline) * weights  # [N,F]: < 0 lowers the confidence
    worst = contributions.argmin(-1)
    status, reasons = [], []
    for i, c in enumerate(confidence.tolist()):  # per-photo strings for the JSON files, not tensor work
        label = "failed" if c < cfg.failed_below else "undecided" if c < cfg.ok_below else "ok"
        if label == "ok" and cfg.verdict_flags and signals.verdict is not None and bool(signals.verdict[i]):
            status.append("undecided")
            reasons.append(f"confidence {c:.2f}: the collection cannot tell two distinct poses apart "
                           f"(ambiguity {float(signals.ambiguity[i]):.2f})")
            continue
        status.append(label)
        if label == "ok":
            reasons.append("")
            continue
        k = int(worst[i])
        value = float(features[i, k]) + (float(medians[k]) if FEATURES[k].endswith("_gap") else 0.0)
        reasons.append(f"confidence {c:.2f}: " + _REASONS[FEATURES[k]].format(value=value, median=float(medians[k])))
    return Trust(confidence.float(), status, reasons)


def signals_from_records(records: Sequence[dict]) -> TrustSignals:
    """The trust signals of poses.json entries (for `--add`, whose earlier photos count in the medians)."""
    def column(key: str) -> Tensor:
        return torch.tensor([float(r.get(key, float("nan"))) for r in records], dtype=torch.float32)

    verdict = torch.tensor([bool(r.get("undecided", False)) for r in records], dtype=torch.bool)
    return TrustSignals(column("iou"), column("feature_distance"), column("ambiguity"), column("disagreement"), verdict)
