"""NAVI pose harness: gauge-free relative-pose metrics and absolute errors after aligning the canonical frame.

    report = evaluate_navi("navi_v1", out="eval/navi")                            # reuse eval/navi/<object>/ runs
    report = evaluate_navi("navi_v1", out="eval/navi", canonical="canonicals/")   # register each wild_set first
    block = evaluate_scene(load_navi_scene("navi_v1/obj/wild_set"), RunFolder("eval/navi/obj").read_poses())

Predicted cameras come from the run's poses.json (threestudio convention: c2w, OpenGL camera axes, world = the
canonical frame) and are converted to OpenCV world-to-camera, the convention of NAVI's annotations
(congeal.evaluation.navi). Metrics (docs/evaluation.md):
(a) relative, over every image pair i<j: rotation error of R_j R_iᵀ, angle between relative translation
    directions, accuracy @15°/@30°, AUC@30 of max(rotation, translation) error — no alignment needed;
(b) absolute: the canonical frame is aligned to NAVI's object frame by one rotation A fitted robustly to the
    per-image candidates A_i = R_pred,iᵀ R_gt,i (RANSAC over candidates + chordal L2 mean of inliers); the
    per-image rotation error is angle(R_pred,i A, R_gt,i). Camera centres are aligned by a similarity
    (Umeyama, scale + rotation + translation) and their distance reported, also relative to the median
    ground-truth camera distance from the object origin.
"""
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.atomic import write_json
from congeal.common.json_files import json_ready
from congeal.common.paths import PathLike
from congeal.evaluation.metrics import (accuracy, mean_of, nan_stats, pose_auc, relative_pose_errors,
                                        robust_rotation_alignment, rotation_error_deg, umeyama)
from congeal.evaluation.navi import DEFAULT_SCENE, NaviScene, find_scenes, load_mask, load_navi_scene
from congeal.evaluation.runs import RegisterSettings, StagedImage, registered_poses, report_stamp
from congeal.geometry.conventions import camera_centres, opengl_c2w_to_opencv_w2c
from congeal.run.folder import RunFolder

PROTOCOL = {
    "benchmark": "NAVI",
    "gt_convention": "annotations.json camera.q [w,x,y,z], camera.t: object-to-camera x_cam = R(q) x + t, OpenCV "
                     "camera axes (x right, y down, z forward), on the EXIF-transposed image",
    "pred_convention": "poses.json c2w, threestudio/OpenGL camera axes, converted to OpenCV world-to-camera",
    "relative": "all unordered pairs i<j: R_ij = R_j R_i^T, t_ij = t_j - R_ij t_i; rotation error = "
                "angle(R_ij_pred R_ij_gt^T); translation error = angle between t_ij_pred and t_ij_gt (signed "
                "directions, scale-free); acc@T = fraction with error < T degrees",
    "auc": "AUC@30 = mean over thresholds 1..30 deg of the fraction of pairs with max(rot, trans) error below it",
    "absolute_rotation": "A = robust fit to A_i = R_pred_i^T R_gt_i (exhaustive RANSAC over the candidates, inlier "
                         "< inlier_deg, then chordal L2 mean of inliers, iterated); "
                         "error_i = angle(R_pred_i A, R_gt_i)",
    "camera_centres": "Umeyama similarity (scale, rotation, translation) from predicted to GT camera centres over "
                      "all images; error = distance after alignment, in annotation units and relative to the "
                      "median GT camera distance from the object origin",
    "undefined": "NaN errors (degenerate inputs) count as misses in accuracies and are excluded from means/medians "
                 "(counted in n_undefined)",
    "object_mean": "unweighted mean over objects of each per-object number",
}


def _pred_cameras(poses: Dict[str, Dict], names: Sequence[str]
                  ) -> Tuple[Float[Tensor, "N 3 3"], Float[Tensor, "N 3"], Float[np.ndarray, " N"]]:
    """The run's cameras of `names` as OpenCV world-to-camera (R, t) and their vertical FoV in degrees."""
    c2w = torch.as_tensor(np.stack([np.asarray(poses[n]["c2w"], dtype=np.float64)[:3] for n in names]))
    R, t = opengl_c2w_to_opencv_w2c(c2w)
    fovy = np.asarray([float(poses[n].get("fovy_deg", np.nan)) for n in names])
    return R, t, fovy


def evaluate_scene(scene: NaviScene, poses: Dict[str, Dict], inlier_deg: float = 30.0) -> Dict:
    """All metrics for one NAVI scene against one run's poses ({name: poses.json entry}).

    Returns:
        {"object_id", "scene", "n_images", "relative": {...}, "absolute_rotation": {...},
         "camera_centres": {...}, "fovy": {...}, "images": [per-image records]}.
    """
    names = scene.names
    R_gt, t_gt = scene.w2c_opencv()
    R_p, t_p, fovy_pred = _pred_cameras(poses, names)
    n = len(names)

    rel = relative_pose_errors(R_p, t_p, R_gt, t_gt)
    rot, trans = rel["rotation_deg"], rel["translation_deg"]
    relative = {
        "n_pairs": int(rot.numel()),
        "rotation_acc_15": accuracy(rot, 15.0), "rotation_acc_30": accuracy(rot, 30.0),
        "rotation_error_deg": nan_stats(rot),
        "translation_acc_15": accuracy(trans, 15.0), "translation_acc_30": accuracy(trans, 30.0),
        "translation_error_deg": nan_stats(trans),
        "auc_30": pose_auc(rot, trans, 30),
    }

    candidates = R_p.transpose(-1, -2) @ R_gt  # object frame -> canonical frame, one guess per image
    A, inliers = robust_rotation_alignment(candidates, inlier_deg=inlier_deg)
    abs_err = rotation_error_deg(R_p @ A, R_gt)
    absolute = {
        "method": f"robust rotation fit (RANSAC over per-image candidates, inlier < {inlier_deg:g} deg, chordal L2 "
                  "mean of inliers)",
        "inlier_deg": inlier_deg, "n_inliers": int(inliers.sum()),
        "acc_15": accuracy(abs_err, 15.0), "acc_30": accuracy(abs_err, 30.0),
        "error_deg": nan_stats(abs_err),
        "alignment_rotation": A.tolist(),
        "note": "one image: aligned by construction, the error is 0" if n == 1 else None,
    }

    c_gt, c_p = camera_centres(R_gt, t_gt), camera_centres(R_p, t_p)
    centre_err = torch.full((n,), float("nan"), dtype=torch.float64)
    similarity = None
    if n >= 3:
        try:
            s, R_s, t_s = umeyama(c_p, c_gt)
            centre_err = (s * (c_p @ R_s.T) + t_s - c_gt).norm(dim=-1)
            similarity = {"scale": float(s), "rotation": R_s.tolist(), "translation": t_s.tolist()}
        except ValueError:  # coincident predicted centres: no similarity exists
            pass
    scale = float(c_gt.norm(dim=-1).median())
    centres = {
        "method": "Umeyama similarity fit (scale + rotation + translation) of predicted to GT camera centres",
        "error": nan_stats(centre_err), "error_relative": nan_stats(centre_err / scale),
        "gt_median_camera_distance": scale, "similarity": similarity,
        "note": None if similarity else "undefined: needs >= 3 images with distinct predicted centres",
    }
    fovy_gt = scene.fovy_deg()
    fov_err = torch.as_tensor(np.abs(fovy_pred - fovy_gt))
    images = [{"name": name, "rotation_error_deg": float(abs_err[k]), "inlier": bool(inliers[k]),
               "centre_error": float(centre_err[k]), "fovy_deg_pred": float(fovy_pred[k]),
               "fovy_deg_gt": float(fovy_gt[k])} for k, name in enumerate(names)]
    return {"object_id": scene.object_id, "scene": scene.scene_name, "n_images": n, "relative": relative,
            "absolute_rotation": absolute, "camera_centres": centres,
            "fovy": {"abs_error_deg": nan_stats(fov_err)}, "images": images}


_HEADLINE = {
    "relative_rotation_acc_15": ("relative", "rotation_acc_15"),
    "relative_rotation_acc_30": ("relative", "rotation_acc_30"),
    "relative_translation_acc_15": ("relative", "translation_acc_15"),
    "relative_translation_acc_30": ("relative", "translation_acc_30"),
    "relative_auc_30": ("relative", "auc_30"),
    "absolute_rotation_acc_15": ("absolute_rotation", "acc_15"),
    "absolute_rotation_acc_30": ("absolute_rotation", "acc_30"),
    "absolute_rotation_median_deg": ("absolute_rotation", "error_deg", "median"),
    "absolute_rotation_mean_deg": ("absolute_rotation", "error_deg", "mean"),
    "camera_centre_median_relative": ("camera_centres", "error_relative", "median"),
}


def _headline(block: Dict) -> Dict[str, float]:
    out = {}
    for key, path in _HEADLINE.items():
        value = block
        for part in path:
            value = value[part]
        out[key] = value
    return out


def _scene_images(scene: NaviScene) -> List[StagedImage]:
    """The scene's images with their NAVI masks (where present), to register."""
    return [StagedImage(im.name, im.image_path, load_mask(im) if im.mask_path.is_file() else None)
            for im in scene.images]


def evaluate_navi(root: PathLike, out: PathLike, objects: Optional[Sequence[str]] = None,
                  scene: str = DEFAULT_SCENE, canonical: Optional[PathLike] = None,
                  inlier_deg: float = 30.0, preset: str = "fast", features: str = "dinov2", device: str = "cpu",
                  seed: int = 0, dinov2: Optional[str] = None, overrides: Optional[Sequence[str]] = None,
                  output: Optional[PathLike] = None, progress: bool = True) -> Dict:
    """Run the NAVI harness and write the report JSON.

    Args:
        root: NAVI root, one object folder, or one scene folder (with annotations.json).
        out: runs folder: `out/<object_id>/` per object; `out` itself may be the run when one scene is evaluated.
        objects: object ids to evaluate (default every object with a `scene` folder).
        scene: scene folder name per object ("wild_set" = the in-the-wild collection).
        canonical: a .safetensors (one object) or a folder with `<object>.safetensors` /
            `<object>/canonical.safetensors`: objects without a run are registered first (images EXIF-transposed,
            NAVI masks, staged in `out/<object>/collection/`).
        inlier_deg: inlier threshold of the robust rotation alignment.
        preset, features, dinov2, seed, overrides: registration settings used with `canonical`.
        output: report path (default `<out>/eval_navi.json`).
    Returns:
        the report dict that was written.
    """
    out = Path(out)
    settings = RegisterSettings(preset=preset, features=features, device=device, seed=seed, overrides=overrides,
                                dinov2=dinov2, progress=progress)
    folders = find_scenes(root, scene, list(objects) if objects else None)
    start = time.time()
    per_object: Dict[str, Dict] = {}
    runs: Dict[str, str] = {}
    for folder in folders:
        navi_scene = load_navi_scene(folder)
        key = navi_scene.object_id
        run_dir = out / key
        if len(folders) == 1 and RunFolder(out).poses.is_file() and not RunFolder(run_dir).poses.is_file():
            run_dir = out
        poses = registered_poses(run_dir, canonical, key, single=len(folders) == 1,
                                 images=lambda scene=navi_scene: _scene_images(scene), needed=navi_scene.names,
                                 what=f"NAVI {key}/{navi_scene.scene_name}", settings=settings)
        runs[key] = str(run_dir)
        per_object[key] = evaluate_scene(navi_scene, poses, inlier_deg=inlier_deg)

    headlines = {key: _headline(block) for key, block in per_object.items()}
    mean = {name: mean_of(h[name] for h in headlines.values()) for name in _HEADLINE}
    report = {
        "benchmark": "NAVI",
        "scene": scene,
        "protocol": PROTOCOL,
        "inlier_deg": inlier_deg,
        "mean": mean,
        "n_objects": len(per_object),
        "objects": per_object,
        "runs": runs,
        **report_stamp(start),
    }
    output = Path(output) if output is not None else out / "eval_navi.json"
    write_json(output, json_ready(report))
    report["output"] = str(output)
    return report
