"""Score a registration run against a synthetic collection's ground truth: poses, FoV, keypoint transfer.

    report = evaluate_synthetic("out/run", "synth/")          # synth/ holds ground_truth.json and images/
    report["rotation_error_deg"]["median"], report["keypoints"]["mapped"]["pck@0.05"]["per_point"]
    report["keypoints"]["identity"]["pck@0.1"]                 # same, with every warp set to the identity

Rotations: geodesic angle between the estimated and true c2w rotations (`cameras.rotation_angle_deg`), no frame
alignment by default — the synthetic canonical IS the ground-truth frame in both same- and cross-instance mode
(`align="rotation"` fits one global rotation first, for canonicals in another frame). FoV: |fovy_est − fovy_true| on
the original pixel grid. Keypoints: for every ordered pair (A, B), A ≠ B, and every keypoint visible in both, A's
true pixel is transferred to B through the canonical (`Correspondence`); it is correct when it lands within
α · (longer side of B's object bbox) of B's true pixel; invalid transfers count as misses. "per_point" pools all
points, "per_image" averages the per-pair fractions (SPair's two conventions).
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float

from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.evaluation.metrics import bbox_threshold, pck_correct, robust_rotation_alignment
from congeal.geometry.cameras import rotation_angle_deg
from congeal.run.folder import RunFolder

TRUTH_FORMAT = "congeal-synthetic-v2"
# v1 has the same fields; its keypoints lie inside the surface (poses score the same, keypoints pessimistically).
TRUTH_FORMATS = (TRUTH_FORMAT, "congeal-synthetic-v1")
REPORT_FORMAT = "congeal-eval-synthetic-v1"
ALPHAS = (0.05, 0.1)


def load_ground_truth(truth: PathLike) -> Tuple[Path, Dict[str, Dict[str, Any]]]:
    """Read ground_truth.json (or a folder holding it).

    Returns:
        (collection folder, {name: entry}) in file order.
    Raises:
        InputError: missing or malformed file.
    """
    path = Path(truth)
    if path.is_dir():
        path = path / "ground_truth.json"
    doc = read_json(path, "re-create it with `congeal synth`", missing="ground_truth.json not found",
                    missing_fix="pass the folder written by `congeal synth`")
    if not isinstance(doc, dict) or doc.get("format") not in TRUTH_FORMATS or not isinstance(doc.get("images"), list):
        raise InputError(path, f"is not a {TRUTH_FORMAT} file", "re-create it with `congeal synth`")
    entries = {}
    for entry in doc["images"]:
        if not all(k in entry for k in ("name", "c2w", "fovy_deg")):
            raise InputError(path, f"entry {entry.get('name', '?')!r} lacks name/c2w/fovy_deg",
                             "re-create it with `congeal synth`")
        entries[entry["name"]] = entry
    return path.parent, entries


def _object_bbox(folder: Path, entry: Dict[str, Any]) -> Optional[Float[np.ndarray, " 4"]]:
    """(x1, y1, x2, y2) of the object in the original image (alpha channel, else a mask file); None if unknown."""
    from PIL import Image

    file = entry.get("file") or f"images/{entry['name']}.png"
    candidates = [Path(file)] if Path(file).is_absolute() else [folder / file, folder / "images" / file]
    image_path = next((p for p in candidates if p.is_file()), None)
    mask = None
    if image_path is not None:
        with Image.open(image_path) as image:
            if "A" in image.getbands():
                mask = np.asarray(image.getchannel("A")) > 127
        if mask is None:
            stem = image_path.stem
            for m in (image_path.parent / "masks" / f"{stem}.png", image_path.parent / f"{stem}_mask.png"):
                if m.is_file():
                    with Image.open(m) as mimg:
                        mask = np.asarray(mimg.convert("L")) > 127
                    break
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0], dtype=np.float64)


def _stats(errors: Float[np.ndarray, " N"]) -> Dict[str, float]:
    """Median, p95, mean of the finite errors; acc@5/15/30 over all N (non-finite errors are misses)."""
    finite = errors[np.isfinite(errors)]
    if finite.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "mean": float("nan"),
                "acc@5": 0.0, "acc@15": 0.0, "acc@30": 0.0}
    n = errors.size  # missing images count as misses in the accuracies
    return {
        "median": float(np.median(finite)),
        "p95": float(np.percentile(finite, 95)),
        "mean": float(finite.mean()),
        "acc@5": float((finite <= 5).sum() / n),
        "acc@15": float((finite <= 15).sum() / n),
        "acc@30": float((finite <= 30).sum() / n),
    }


def pose_errors(poses: Dict[str, Dict[str, Any]], truth: Dict[str, Dict[str, Any]], align: str = "none"
                ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Rotation and FoV errors per image.

    Args:
        poses: {name: poses.json record}; truth: {name: ground-truth entry}.
        align: "none" (the canonical is the true frame) or "rotation" (fit one global rotation first).
    Returns:
        (summary, per-image rows); images missing from `poses` get NaN errors and count as misses.
    """
    if align not in ("none", "rotation"):
        raise InputError(None, f"unknown alignment {align!r}", "use 'none' or 'rotation'")
    names = list(truth)
    have = [n for n in names if n in poses]
    R_gt = torch.tensor([truth[n]["c2w"] for n in have], dtype=torch.float64).reshape(-1, 4, 4)[:, :3, :3]
    R_est = torch.tensor([poses[n]["c2w"] for n in have], dtype=torch.float64).reshape(-1, 4, 4)[:, :3, :3]
    if align == "rotation" and len(have) > 0:
        A, _ = robust_rotation_alignment(R_gt @ R_est.transpose(1, 2))  # R_gt ≈ A · R_est
        R_est = A.to(R_est) @ R_est
    rot = rotation_angle_deg(R_est, R_gt).numpy() if have else np.zeros(0)
    rot_by = dict(zip(have, rot.tolist()))
    rows = []
    for n in names:
        est_fov = poses[n]["fovy_deg"] if n in poses else float("nan")
        rows.append({
            "name": n,
            "registered": n in poses,
            "rotation_error_deg": rot_by.get(n, float("nan")),
            "fovy_deg": est_fov,
            "fovy_deg_truth": float(truth[n]["fovy_deg"]),
            "fovy_error_deg": abs(float(est_fov) - float(truth[n]["fovy_deg"])),
        })
    rot_all = np.array([r["rotation_error_deg"] for r in rows], dtype=np.float64)
    fov_all = np.array([r["fovy_error_deg"] for r in rows], dtype=np.float64)
    fov_f = fov_all[np.isfinite(fov_all)]
    summary = {
        "rotation_error_deg": _stats(rot_all),
        "fovy_error_deg": {"median": float(np.median(fov_f)) if fov_f.size else float("nan"),
                           "mean": float(fov_f.mean()) if fov_f.size else float("nan")},
        "n_images": len(names),
        "n_registered": len(have),
        "alignment": align,
    }
    return summary, rows


def keypoint_transfer(run_dir: PathLike, folder: Path, truth: Dict[str, Dict[str, Any]],
                      identity_warp: bool = False, alphas: Sequence[float] = ALPHAS,
                      names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """PCK of keypoint transfer through the canonical for every ordered pair of registered images.

    Args:
        run_dir: the registration run; folder: the collection folder (for the target objects' bboxes).
        truth: {name: ground-truth entry with "keypoints"}.
        identity_warp: switch the coordinate maps off (baseline).
        alphas: PCK thresholds relative to the longer side of the target's object bbox.
        names: images to use (default: all registered ones in ground-truth order).
    Returns:
        {"pck@<a>": {"per_point", "per_image"}, "valid_rate", "n_pairs", "n_points", "per_target": {...}}.
    """
    from congeal.run.correspondence import Correspondence

    corr = Correspondence(run_dir, identity_warp=identity_warp)
    registered = set(corr.names)
    names = [n for n in (names or list(truth)) if n in registered]
    bboxes = {n: _object_bbox(folder, truth[n]) for n in names}
    correct = {a: [] for a in alphas}
    per_target = {n: {a: [] for a in alphas} for n in names}
    n_valid = 0
    for src in names:
        kp_src = truth[src].get("keypoints") or {}
        for trg in names:
            if trg == src or bboxes[trg] is None:
                continue
            kp_trg = truth[trg].get("keypoints") or {}
            common = [k for k in kp_src if k in kp_trg and kp_src[k].get("visible") and kp_trg[k].get("visible")]
            if not common:
                continue
            src_xy = np.array([kp_src[k]["xy"] for k in common], dtype=np.float32)
            trg_xy = np.array([kp_trg[k]["xy"] for k in common], dtype=np.float64)
            pred, valid = corr.transfer(src, trg, src_xy)
            n_valid += int(valid.sum())
            pred = torch.as_tensor(np.where(valid[:, None], pred, np.nan))  # invalid transfers are misses
            for a in alphas:
                hit = pck_correct(pred, torch.as_tensor(trg_xy), bbox_threshold(torch.as_tensor(bboxes[trg]), a))
                hit = hit.numpy()
                correct[a].append(hit)
                per_target[trg][a].append(hit)
    n_points = int(sum(h.size for h in correct[alphas[0]])) if alphas else 0
    out: Dict[str, Any] = {}
    for a in alphas:
        pairs = [h for h in correct[a] if h.size]
        out[f"pck@{a:g}"] = {
            "per_point": float(np.concatenate(pairs).mean()) if pairs else float("nan"),
            "per_image": float(np.mean([h.mean() for h in pairs])) if pairs else float("nan"),
        }
    out["valid_rate"] = n_valid / n_points if n_points else float("nan")
    out["n_pairs"] = len([h for h in correct[alphas[0]] if h.size]) if alphas else 0
    out["n_points"] = n_points
    out["per_target"] = {
        n: {f"pck@{a:g}": (float(np.concatenate(v[a]).mean()) if v[a] else float("nan")) for a in alphas}
        for n, v in per_target.items()
    }
    return out


def evaluate_synthetic(run_dir: PathLike, truth: PathLike, keypoints: bool = True, align: str = "none",
                       alphas: Sequence[float] = ALPHAS) -> Dict[str, Any]:
    """The full report behind `congeal eval-synthetic`.

    Args:
        run_dir: `congeal register` output (poses.json, state/).
        truth: the synthetic collection folder or its ground_truth.json.
        keypoints: also score keypoint transfer (mapped and identity warp); needs the run's state/ files.
        align: "none" or "rotation" (see `pose_errors`).
    Returns:
        JSON-able dict: format, rotation_error_deg {median, p95, mean, acc@5/15/30}, fovy_error_deg {median,
        mean}, per_image rows, keypoints {mapped, identity, gain_pck@<a>}.
    """
    run = RunFolder(run_dir)
    folder, gt = load_ground_truth(truth)
    poses = run.read_poses()
    unknown = [n for n in poses if n not in gt]
    if len(unknown) == len(poses) and poses:
        raise InputError(run.poses, "shares no image name with the ground truth",
                         "evaluate the run against the collection it registered")
    summary, rows = pose_errors(poses, gt, align=align)
    report: Dict[str, Any] = {"format": REPORT_FORMAT, "run": str(run.root), "truth": str(folder), **summary,
                              "per_image": rows}
    if keypoints:
        if not run.state_dir.is_dir():
            raise InputError(run.root, "has no state/ folder (coordinate maps)",
                             "re-run `congeal register` with mapping on, or pass --no-keypoints")
        mapped = keypoint_transfer(run.root, folder, gt, identity_warp=False, alphas=alphas)
        identity = keypoint_transfer(run.root, folder, gt, identity_warp=True, alphas=alphas)
        report["keypoints"] = {"mapped": mapped, "identity": identity}
        for a in alphas:
            key = f"pck@{a:g}"
            report["keypoints"][f"gain_{key}"] = mapped[key]["per_point"] - identity[key]["per_point"]
        per_target = mapped.pop("per_target")
        ident_target = identity.pop("per_target")
        for row in rows:
            for a in alphas:
                key = f"pck@{a:g}"
                row[key] = per_target.get(row["name"], {}).get(key, float("nan"))
                row[f"{key}_identity"] = ident_target.get(row["name"], {}).get(key, float("nan"))
    return report
