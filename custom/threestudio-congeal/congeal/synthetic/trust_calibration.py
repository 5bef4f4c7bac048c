"""Fitting the trust model (`congeal.registration.trust`) on benchmark runs of the tuning seeds.

    photos = photos_of(records)                         # `congeal bench-sets run` records: per photo signals + error
    fitted = calibrate(photos)                          # TrustConfig with the fitted weights and thresholds
    flag_table(photos, fitted.config)                   # recall of wrong cameras, false alarms among right ones

The confidence is a logistic regression of "this camera is within `right_deg` of the truth" on the trust features
(each run's photos are one collection: the gaps to its medians are computed per run, as registration does). The
thresholds come from the same tuning photos: `ok_below` is the lowest confidence that still flags at least
`target_recall` of the cameras more than `wrong_deg` off (photos the collection's verdict leaves undecided count as
flagged), `failed_below` the highest one that fails no more than `max_failed_right` of the right cameras. Never fit
on held-out seeds: they are what the table reports.
"""
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Sequence

import torch

from congeal.registration.trust import TrustConfig, assess_trust, signals_from_records, trust_features

__all__ = ["Calibration", "photos_of", "calibrate", "flag_table"]


@dataclass
class Calibration:
    """A fitted trust model and what it did on the photos it was fitted on."""

    config: TrustConfig
    n_photos: int
    n_wrong: int
    n_right: int


def photos_of(records: Sequence[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """Each run's photo rows (records written before the per-photo rows existed are skipped)."""
    return [list(r["photos"]) for r in records if r.get("kind", "run") == "run" and r.get("photos")]


def _design(runs: Sequence[Sequence[Dict[str, Any]]], cfg: TrustConfig):
    features, errors, verdicts = [], [], []
    for photos in runs:
        f, _ = trust_features(signals_from_records(photos), cfg)
        features.append(f)
        errors += [float(p["error_deg"]) for p in photos]
        verdicts += [bool(p.get("undecided", False)) for p in photos]
    return torch.cat(features), torch.tensor(errors, dtype=torch.float64), torch.tensor(verdicts)


def calibrate(runs: Sequence[Sequence[Dict[str, Any]]], right_deg: float = 10.0, wrong_deg: float = 30.0,
              target_recall: float = 0.95, max_failed_right: float = 0.01, l2: float = 0.1,
              base: TrustConfig = TrustConfig()) -> Calibration:
    """`_calibrate` with and without the collection's verdict flagging cameras; the one with fewer false alarms among
    right cameras (at the same recall target) is kept."""
    fits = [_calibrate(runs, right_deg, wrong_deg, target_recall, max_failed_right, l2, replace(base, verdict_flags=v))
            for v in (True, False)]
    alarms = [flag_table(runs, f.config, right_deg, wrong_deg)["right_flagged"] for f in fits]
    return fits[0] if alarms[0] <= alarms[1] else fits[1]


def _calibrate(runs: Sequence[Sequence[Dict[str, Any]]], right_deg: float, wrong_deg: float,
               target_recall: float, max_failed_right: float, l2: float, base: TrustConfig) -> Calibration:
    """Fit the confidence and choose the thresholds on tuning runs.

    Args:
        runs: per run, its photo rows (`photos_of`).
        right_deg / wrong_deg: a camera within right_deg is right, one beyond wrong_deg wrong.
        target_recall: the share of wrong cameras `ok_below` must flag on these photos.
        max_failed_right: the share of right cameras `failed_below` may fail on these photos.
        l2: ridge penalty on the standardised weights (keeps a separable tuning set from diverging).
    Returns:
        Calibration.
    """
    x, errors, verdict = _design(runs, base)
    y = (errors <= right_deg).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    # balance the classes: wrong cameras are rare, and missing one costs more than a false alarm
    positives = float(y.sum())
    weight = torch.where(y > 0, 0.5 / max(positives, 1.0), 0.5 / max(float(len(y)) - positives, 1.0))
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = z @ w + b
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + l2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    raw_w = (w.detach() / std)
    raw_b = float(b.detach() - (mean / std) @ w.detach())
    fitted = replace(base, bias=round(raw_b, 4), weights=tuple(round(float(v), 4) for v in raw_w))
    confidence = torch.sigmoid(fitted.bias + x @ torch.tensor(fitted.weights, dtype=torch.float64))
    wrong = ~(errors <= wrong_deg)
    right = errors < right_deg
    ok_below = 0.0
    if bool(wrong.any()):
        # the lowest threshold that flags target_recall of the wrong cameras (the verdict flags some by itself)
        flagged_anyway = verdict if base.verdict_flags else torch.zeros_like(verdict)
        missed = confidence[wrong & ~flagged_anyway].sort().values
        allowed = int(len(confidence[wrong]) * (1.0 - target_recall))  # wrong cameras that may stay unflagged
        if len(missed) > allowed:
            ok_below = float(missed[len(missed) - allowed - 1]) + 1e-4
    failed_below = 0.0
    if bool(right.any()):
        right_conf = confidence[right].sort().values
        k = int(len(right_conf) * max_failed_right)
        failed_below = min(float(right_conf[k]) - 1e-4, ok_below) if k < len(right_conf) else ok_below
        failed_below = max(failed_below, 0.0)
    config = replace(fitted, ok_below=round(min(max(ok_below, failed_below), 0.999), 4),
                     failed_below=round(failed_below, 4))
    return Calibration(config, len(errors), int(wrong.sum()), int(right.sum()))


def flag_table(runs: Sequence[Sequence[Dict[str, Any]]], cfg: TrustConfig, right_deg: float = 10.0,
               wrong_deg: float = 30.0) -> Dict[str, Any]:
    """`congeal.synthetic.benchmark_runs.flag_metrics` of the statuses `cfg` gives the runs' photos (recomputed
    from the signals, as registration would write them)."""
    from congeal.synthetic.benchmark_runs import flag_metrics

    rows = [{"error_deg": float(photo["error_deg"]), "status": status}
            for photos in runs
            for photo, status in zip(photos, assess_trust(signals_from_records(photos), cfg).status)]
    return flag_metrics(rows, wrong_deg=wrong_deg, right_deg=right_deg)
