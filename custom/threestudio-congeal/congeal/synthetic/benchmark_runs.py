"""Run registration on benchmark sets and score it: one record per (set, seed), one summary per set.

    records = run_benchmark("bench-sets/", sets=["chair-cross30-centred"], seeds=HELD_OUT_SEEDS, preset="fast")
    summaries = summarise(records)                 # pooled over the seeds: 3 × 8 photos per set
    print(markdown_table(summaries))

Each (set, seed): the collection is written (or re-used) under root/collections/, registered with
`register_collection(canonical, images, run, preset=…, features=…, device=…)` into root/runs/<preset>/, and scored
with `evaluate_synthetic` (rotation: geodesic error of every photo's c2w, no alignment; keypoints: transfer through
the canonical for every ordered pair of photos, PCK per point relative to the target's object bbox). A set's summary
pools its seeds' photos: rotation median / p95 / max over all of them, PCK = all hits / all transferred points; it
says which of its category's targets (congeal.synthetic.benchmark_sets.TARGETS) it meets. Accuracy only: the
harness records wall time per run but nothing here is a timing benchmark.
"""
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from congeal.common.paths import PathLike
from congeal.synthetic.benchmark_sets import BenchmarkSet, get_set, write_benchmark_set

__all__ = ["score_run", "register_and_score", "run_one", "run_benchmark", "summarise", "markdown_table", "meets"]

ALPHAS = (0.05, 0.1)


def score_run(run_dir: PathLike, collection: PathLike) -> Dict[str, Any]:
    """Score one registration run against its collection's ground truth.

    Returns:
        {"rotation_errors_deg": [per photo, file order], "rotation_median_deg", "rotation_p95_deg",
        "rotation_max_deg", "fovy_error_median_deg", "pck@0.05", "pck@0.1" (mapped, per point), "n_points",
        "pck@0.05_identity", "pck@0.1_identity", "overruled", "undecided", "rotation_errors_alone_deg",
        "rotation_errors_oracle_deg" (both in poses.json order; see `_joint_choice_effect`)}.
    """
    from congeal.evaluation.synthetic_harness import evaluate_synthetic

    report = evaluate_synthetic(run_dir, collection, keypoints=True, alphas=ALPHAS)
    errors = [float(row["rotation_error_deg"]) for row in report["per_image"]]
    finite = np.array([e for e in errors if np.isfinite(e)], dtype=np.float64)
    out: Dict[str, Any] = {
        "rotation_errors_deg": errors,
        "rotation_median_deg": float(np.median(finite)) if finite.size else float("nan"),
        "rotation_p95_deg": float(np.percentile(finite, 95)) if finite.size else float("nan"),
        # an unregistered photo is the worst failure: it makes the max infinite
        "rotation_max_deg": float(finite.max()) if finite.size == len(errors) and finite.size else float("inf"),
        "fovy_error_median_deg": float(report["fovy_error_deg"]["median"]),
        "n_points": int(report["keypoints"]["mapped"]["n_points"]),
    }
    for a in ALPHAS:
        key = f"pck@{a:g}"
        out[key] = float(report["keypoints"]["mapped"][key]["per_point"])
        out[f"{key}_identity"] = float(report["keypoints"]["identity"][key]["per_point"])
    out.update(_joint_choice_effect(run_dir, collection))
    out["photos"] = _photo_trust(run_dir, [row["name"] for row in report["per_image"]], errors)
    return out


#: what the trust calibration reads of each photo's poses.json entry (congeal.registration.trust)
TRUST_FIELDS = ("iou", "feature_distance", "ambiguity", "disagreement", "confidence")


def _photo_trust(run_dir: PathLike, names: Sequence[str], errors: Sequence[float]) -> List[Dict[str, Any]]:
    """Per photo (rotation_errors_deg order): its error, status and the signals the trust model reads."""
    from congeal.run.folder import RunFolder

    poses = RunFolder(run_dir).read_poses()
    rows = []
    for name, error in zip(names, errors):
        record = poses.get(name, {})
        row = {"name": name, "error_deg": float(error), "status": str(record.get("status", "ok")),
               "undecided": bool(record.get("undecided", False))}
        row.update({key: float(record[key]) for key in TRUST_FIELDS if key in record})
        rows.append(row)
    return rows


def flag_metrics(photos: Sequence[Dict[str, Any]], wrong_deg: float = 30.0, right_deg: float = 10.0) -> Dict[str, Any]:
    """How well the statuses separate right from wrong cameras (issue 34's bar).

    Returns:
        {"n_wrong": photos > wrong_deg off, "wrong_flagged": of those, flagged (undecided or failed),
        "flag_recall": their fraction (NaN without wrong photos), "n_right": photos < right_deg off,
        "right_flagged", "false_alarm_rate", "unflagged_max_deg": the worst unflagged photo's error,
        "failed": photos failed, "wrong_failed", "right_failed", "n_photos"}.
    """
    flagged = [p["status"] in ("undecided", "failed") for p in photos]
    errors = [p["error_deg"] for p in photos]
    wrong = [f for f, e in zip(flagged, errors) if not e <= wrong_deg]  # an unregistered photo (inf, NaN) is wrong
    right = [f for f, e in zip(flagged, errors) if e < right_deg]
    unflagged = [e for f, e in zip(flagged, errors) if not f]
    return {
        "n_wrong": len(wrong), "wrong_flagged": int(sum(wrong)),
        "flag_recall": float(sum(wrong) / len(wrong)) if wrong else float("nan"),
        "n_right": len(right), "right_flagged": int(sum(right)),
        "false_alarm_rate": float(sum(right) / len(right)) if right else float("nan"),
        "unflagged_max_deg": float(max(unflagged)) if unflagged else 0.0,
        "failed": int(sum(p["status"] == "failed" for p in photos)),
        "wrong_failed": int(sum(p["status"] == "failed" for p in photos if not p["error_deg"] <= wrong_deg)),
        "right_failed": int(sum(p["status"] == "failed" for p in photos if p["error_deg"] < right_deg)),
        "n_photos": len(photos),
    }


def _joint_choice_effect(run_dir: PathLike, collection: PathLike) -> Dict[str, Any]:
    """What the collection's joint choice did: photos it overruled (their own best hypothesis, the lowest own
    `score`, was not chosen), photos left undecided, every photo's rotation error had it chosen alone, and had the
    choice been perfect (its hypothesis nearest the truth: what no vote can beat, so what the hypotheses allow)."""
    import json

    import torch

    from congeal.geometry.cameras import rotation_angle_deg
    from congeal.run.folder import RunFolder

    truth = {e["name"]: e for e in json.loads((Path(collection) / "ground_truth.json").read_text())["images"]}
    overruled, undecided, alone, oracle = 0, 0, [], []
    for name, record in RunFolder(run_dir).read_poses().items():
        hypotheses = [record] + list(record.get("alternatives") or [])  # the chosen one first
        own = min(range(len(hypotheses)), key=lambda h: hypotheses[h].get("score", float("inf")))
        overruled += own != 0
        undecided += bool(record.get("undecided"))
        gt = torch.tensor(truth[name]["c2w"], dtype=torch.float64)[:3, :3]
        rotations = torch.tensor([h["c2w"] for h in hypotheses], dtype=torch.float64)[:, :3, :3]
        errors = rotation_angle_deg(rotations, gt)  # [hypotheses]
        alone.append(float(errors[own]))
        oracle.append(float(errors.min()))
    return {"overruled": overruled, "undecided": undecided, "rotation_errors_alone_deg": alone,
            "rotation_errors_oracle_deg": oracle}


def register_and_score(collection: PathLike, run: PathLike, preset: str = "fast", features: str = "rgb",
                       device: str = "cpu", overrides: Optional[Sequence[str]] = None,
                       progress: bool = False) -> Dict[str, Any]:
    """Register a synthetic collection (its canonical.safetensors and images/) into `run` and score it.

    Returns:
        {"seconds", **score_run(run, collection)}.
    """
    from congeal.run.pipeline import register_collection

    collection = Path(collection)
    started = time.perf_counter()
    register_collection(collection / "canonical.safetensors", collection / "images", run, preset=preset,
                        features=features, device=device, overrides=list(overrides or []) or None,
                        progress=progress)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), **score_run(run, collection)}


def run_one(spec: Union[str, BenchmarkSet], seed: int, root: PathLike, preset: str = "fast", features: str = "rgb",
            device: str = "cpu", overrides: Optional[Sequence[str]] = None, mesh_dir: Optional[PathLike] = None,
            progress: bool = False) -> Dict[str, Any]:
    """Write (or re-use) one benchmark collection under root/collections/, register it under
    root/runs/<preset>/<set>/seed<k>/, score it.

    Returns:
        {"set", "seed", "category", "preset", "features", "collection", "run", "seconds", **score_run(...)}.
    """
    spec = get_set(spec) if isinstance(spec, str) else spec
    root = Path(root)
    collection = write_benchmark_set(spec, seed, root / "collections", mesh_dir=mesh_dir)
    run = root / "runs" / preset / spec.name / f"seed{seed}"
    scored = register_and_score(collection, run, preset=preset, features=features, device=device,
                                overrides=overrides, progress=progress)
    return {"set": spec.name, "seed": seed, "category": spec.category, "preset": preset, "features": features,
            "collection": str(collection), "run": str(run), **scored}


def run_benchmark(root: PathLike, sets: Iterable[Union[str, BenchmarkSet]], seeds: Sequence[int],
                  preset: str = "fast", features: str = "rgb", device: str = "cpu",
                  overrides: Optional[Sequence[str]] = None, mesh_dir: Optional[PathLike] = None,
                  on_record: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """`run_one` for every set and seed, one registration at a time; `on_record` sees each record as it is done."""
    records = []
    for spec in sets:
        for seed in seeds:
            record = run_one(spec, seed, root, preset=preset, features=features, device=device, overrides=overrides,
                             mesh_dir=mesh_dir)
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def meets(summary: Dict[str, Any]) -> Dict[str, bool]:
    """{metric: met?} for the targets of the summary's category."""
    out = {}
    for metric, (comparison, bound) in get_set(summary["set"]).targets.items():
        value = summary.get(metric, float("nan"))
        out[metric] = bool(np.isfinite(value) and (value <= bound if comparison == "<=" else value >= bound))
    return out


def summarise(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One summary per (set, preset, features), pooling the seeds (in first-seen order).

    Returns:
        [{"set", "category", "preset", "features", "seeds", "n_photos", "rotation_median_deg", "rotation_p95_deg",
        "rotation_max_deg", "per_seed_median_deg", "pck@0.05", "pck@0.1", "n_points", "fovy_error_median_deg",
        "overruled", "undecided", "rotation_median_alone_deg" / "rotation_max_alone_deg" and
        "rotation_median_oracle_deg" / "rotation_max_oracle_deg" (when the records have them),
        "targets": {metric: met?}, "all_targets_met"}].
    """
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["set"], record["preset"], record["features"]), []).append(record)
    out = []
    for (name, preset, features), group in groups.items():
        errors = np.array([e for r in group for e in r["rotation_errors_deg"]], dtype=np.float64)
        finite = errors[np.isfinite(errors)]
        points = sum(r["n_points"] for r in group)
        summary: Dict[str, Any] = {
            "set": name, "category": group[0]["category"], "preset": preset, "features": features,
            "seeds": [r["seed"] for r in group], "n_photos": int(errors.size),
            "rotation_median_deg": float(np.median(finite)) if finite.size else float("nan"),
            "rotation_p95_deg": float(np.percentile(finite, 95)) if finite.size else float("nan"),
            "rotation_max_deg": float(finite.max()) if finite.size == errors.size and finite.size else float("inf"),
            "per_seed_median_deg": [r["rotation_median_deg"] for r in group],
            "fovy_error_median_deg": float(np.median([r["fovy_error_median_deg"] for r in group])),
            "n_points": points,
        }
        for a in ALPHAS:
            key = f"pck@{a:g}"
            hits = sum(r[key] * r["n_points"] for r in group if np.isfinite(r[key]))
            summary[key] = float(hits / points) if points else float("nan")
        photos = [p for r in group for p in r.get("photos", [])]
        if photos:
            summary.update(flag_metrics(photos))
        else:  # records written before the statuses existed: no photo was flagged
            summary["unflagged_max_deg"] = summary["rotation_max_deg"]
        summary["overruled"] = sum(r.get("overruled", 0) for r in group)
        summary["undecided"] = sum(r.get("undecided", 0) for r in group)
        # "alone": each photo's own best hypothesis; "oracle": its hypothesis nearest the truth (no choice beats it)
        for choice in ("alone", "oracle"):
            chosen = np.array([e for r in group for e in r.get(f"rotation_errors_{choice}_deg", [])], dtype=np.float64)
            if chosen.size:  # absent from records written before the field existed
                summary[f"rotation_median_{choice}_deg"] = float(np.median(chosen))
                summary[f"rotation_max_{choice}_deg"] = float(chosen.max())
        summary["targets"] = meets(summary)
        summary["all_targets_met"] = all(summary["targets"].values())
        out.append(summary)
    return out


def markdown_table(summaries: Sequence[Dict[str, Any]]) -> str:
    """A markdown table of set summaries (a target missed is marked ✗ next to its number)."""
    lines = [
        "| set | category | preset | seeds | rot. median ° | rot. p95 ° | rot. max ° | unflagged max ° | PCK@0.05 "
        "| PCK@0.1 | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        met = s["targets"]

        def cell(metric: str, digits: int) -> str:
            text = f"{s[metric]:.{digits}f}"
            return text + (" ✗" if metric in met and not met[metric] else "")

        lines.append(
            f"| {s['set']} | {s['category']} | {s['preset']} | {','.join(map(str, s['seeds']))} "
            f"| {cell('rotation_median_deg', 1)} | {cell('rotation_p95_deg', 1)} | {cell('rotation_max_deg', 1)} "
            f"| {cell('unflagged_max_deg', 1)} "
            f"| {cell('pck@0.05', 3)} | {cell('pck@0.1', 3)} | {'met' if s['all_targets_met'] else 'missed'} |")
    return "\n".join(lines)

