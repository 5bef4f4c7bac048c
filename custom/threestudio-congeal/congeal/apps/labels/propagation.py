"""Label once, propagate everywhere: the labels of some photos carried to every photo of a run.

    run = RegisteredRun("out/run")
    result = propagate_labels(run, read_labels("labels.json", run))
    result.doc["photos"]["img_003"]["points"]["snout"]   # {"xy": [x, y], "visible": true, "confidence": 0.93, ...}
    result.masks["img_003"]["saddle"]                    # bool [H,W] region on img_003's grid
    write_propagation(result, run, "out/run/labels/labels")   # labels.json, coco.json, grid.png, masks/

How (per target photo t and source photo s):
  points   s's pixel -> `Correspondence.transfer(s, t)` (forward map of s, reverse map of t). The label's canonical
           point X_s (s's map under the label) is compared with the canonical point X_t the target shows where the
           label lands: surface score = exp(-½ (‖X_t − X_s‖ / τ)²), τ = the same-surface tolerance (5% of the
           object's canonical bounding-box diagonal). visible = the landing pixel shows the label's own surface
           point (‖X_t − X_s‖ ≤ τ) for most of the sources whose transfer is valid.
           Several sources: the position is the per-coordinate median of their valid transfers; their spread
           (median distance to it) is the disagreement. confidence = mean surface score over the sources that
           gave the label (invalid transfers count 0) × exp(-½ (spread / (0.05 · L_t))²), L_t = the longer side of
           t's object bounding box (the PCK@0.05 length).
  regions  (polygons and masks) are pulled: every object pixel q of t goes to s by `Correspondence.dense(t, s)`;
           s "sees" q when s's map there is q's surface point (same test as above); q is inside when s's region
           holds the pixel it lands on. With several sources q is inside when most of the sources that see it say
           so. confidence = mean over the region of (surface score × agreeing share of the sources that see it).
  polygons also move vertex by vertex like points (from the source whose vertices transfer best), for tools that
           want polygons; the region mask is the exact answer.
A photo that carries a label keeps it as given (confidence 1).

Output document (`congeal-propagated-labels-v1`), README "Label propagation":
    {"format", "run", "labels", "sources", "point_names", "region_names", "surface_tolerance",
     "photos": {name: {"width", "height", "file", "source",
                       "points":   {k: {"xy": [x, y] | null, "visible", "confidence", "given", "spread_px",
                                        "votes": [{"source", "xy", "valid", "on_surface"}]}},
                       "regions":  {k: {"mask", "area_px", "bbox", "confidence", "seen_fraction", "given"}},
                       "polygons": {k: {"vertices": [[x, y] | null], "visible": [bool], "source", "given"}}}}}
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from jaxtyping import Bool, Float, Int

from congeal.apps.labels.label_file import LabelSet, PhotoLabels
from congeal.run.registered_run import RegisteredRun
from congeal.run.surface import same_surface
from congeal.common.paths import PathLike
from congeal.common.safe_names import ensure_inside, unique_file_names

__all__ = ["PROPAGATED_FORMAT", "PropagationConfig", "Propagation", "propagate_labels", "write_propagation"]

PROPAGATED_FORMAT = "congeal-propagated-labels-v1"


@dataclass
class PropagationConfig:
    """How labels move and how sure the answer is."""

    surface_fraction: float = 0.05
    """Same-surface tolerance τ as a fraction of the object's canonical bounding-box diagonal."""
    agreement_fraction: float = 0.05
    """Spread between sources at which the confidence falls to exp(-½), fraction of the target object's size."""
    snap_fraction: float = 0.03
    """Labels off the object by at most this fraction of its size snap onto it (silhouette keypoints)."""


@dataclass
class Propagation:
    """The propagated labels: the JSON document and the region masks it refers to."""

    doc: Dict[str, Any]
    masks: Dict[str, Dict[str, Bool[np.ndarray, "H W"]]] = field(default_factory=dict)
    """photo -> region name -> mask on the photo's grid."""


def _surface_score(distance: Float[np.ndarray, "*shape"], tolerance: float) -> Float[np.ndarray, "*shape"]:
    """exp(-½ (d/τ)²), 0 where the distance is unknown."""
    d = np.asarray(distance, np.float64)
    return np.where(np.isfinite(d), np.exp(-0.5 * (np.nan_to_num(d, nan=np.inf) / tolerance) ** 2), 0.0)


def _json_xy(xy: np.ndarray, ok: bool) -> Optional[List[float]]:
    return [float(xy[0]), float(xy[1])] if ok and np.isfinite(xy).all() else None


def _point_votes(run: RegisteredRun, labels: LabelSet, target: str, tolerance: float, snap: Dict[str, float]
                 ) -> Dict[str, List[Dict[str, Any]]]:
    """For every point label given on another photo: one vote per source (transferred xy, valid, distance)."""
    votes: Dict[str, List[Dict[str, Any]]] = {}
    tmap = run.object_map(target)
    for source, given in labels.photos.items():
        if source == target or not given.points:
            continue
        names = list(given.points)
        pts = np.stack([given.points[k] for k in names]).astype(np.float32)
        out, ok = run.transfer(source, target, pts)
        xyz_s, found_s = run.object_map(source).lift(pts, snap_px=snap[source])
        xyz_t, found_t = tmap.lift(np.where(ok[:, None], out, 0.0).astype(np.float32), snap_px=1.5)
        dist = np.linalg.norm(xyz_t.astype(np.float64) - xyz_s.astype(np.float64), axis=-1)
        dist = np.where(ok & found_s & found_t, dist, np.nan)
        for i, name in enumerate(names):
            votes.setdefault(name, []).append({
                "source": source, "xy": out[i], "valid": bool(ok[i]), "distance": float(dist[i]),
            })
    return votes


def _aggregate_point(votes: List[Dict[str, Any]], tolerance: float, size: float, cfg: PropagationConfig
                     ) -> Dict[str, Any]:
    """One target's estimate of one point label from its sources' votes."""
    valid = [v for v in votes if v["valid"]]
    scores = _surface_score(np.array([v["distance"] if v["valid"] else np.nan for v in votes]), tolerance)
    on_surface = [bool(np.isfinite(v["distance"]) and v["distance"] <= tolerance) for v in votes]
    record: Dict[str, Any] = {
        "xy": None, "visible": False, "confidence": 0.0, "given": False, "spread_px": None,
        "votes": [{"source": v["source"], "xy": _json_xy(v["xy"], v["valid"]), "valid": v["valid"],
                   "on_surface": s} for v, s in zip(votes, on_surface)],
    }
    if not valid:
        return record
    xy = np.median(np.stack([v["xy"] for v in valid]).astype(np.float64), axis=0)
    spread = float(np.median([np.linalg.norm(v["xy"] - xy) for v in valid])) if len(valid) > 1 else 0.0
    agreement = float(np.exp(-0.5 * (spread / max(cfg.agreement_fraction * size, 1e-6)) ** 2))
    seen = sum(s for v, s in zip(votes, on_surface) if v["valid"])
    record.update({
        "xy": [float(xy[0]), float(xy[1])],
        "visible": bool(2 * seen > len(valid)),
        "confidence": float(scores.mean() * agreement),
        "spread_px": spread,
    })
    return record


def _pull(run: RegisteredRun, target: str, source: str
          ) -> Tuple[Int[np.ndarray, "Q"], Int[np.ndarray, "Q"], Int[np.ndarray, "Q"], Float[np.ndarray, "Q"]]:
    """Target object pixels -> source pixels, for t's Q valid pixels.

    Returns:
        (rows, cols) of the target pixels, the flat index (row·W + col) of the source pixel each lands on, and the
        canonical distance between the two pixels' surface points (NaN where the transfer is invalid).
    """
    tmap, smap = run.object_map(target), run.object_map(source)
    flow, valid = run.correspondence.dense(target, source)
    rows, cols = np.nonzero(tmap.valid)
    landing = flow[rows, cols].astype(np.float64) + np.stack([cols + 0.5, rows + 0.5], -1)
    ok = valid[rows, cols] & np.isfinite(landing).all(axis=1)
    r, c, inside = smap.pixel_index(np.where(ok[:, None], landing, -1.0))
    xyz_s, found = smap.lift_pixels(r, c)
    dist = np.linalg.norm(xyz_s.astype(np.float64) - tmap.xyz[rows, cols].astype(np.float64), axis=-1)
    ok = ok & inside & found
    dist = np.where(ok, dist, np.nan)
    return rows, cols, r * smap.width + c, dist


def _propagate_regions(run: RegisteredRun, labels: LabelSet, target: str, tolerance: float
                       ) -> Tuple[Dict[str, np.ndarray], Dict[str, Dict[str, Any]]]:
    """Every region label given on other photos, pulled onto `target`."""
    tmap = run.object_map(target)
    names = [k for k in labels.region_names if k not in labels.photos.get(target, PhotoLabels()).masks]
    masks: Dict[str, np.ndarray] = {}
    records: Dict[str, Dict[str, Any]] = {}
    if not names:
        return masks, records
    n_obj = int(tmap.valid.sum())
    seen_n = {k: np.zeros(n_obj, np.int32) for k in names}
    inside_n = {k: np.zeros(n_obj, np.int32) for k in names}
    score_sum = {k: np.zeros(n_obj, np.float64) for k in names}
    any_seen = np.zeros(n_obj, bool)
    rows = cols = None
    for source, given in labels.photos.items():
        wanted = [k for k in names if k in given.masks]
        if source == target or not wanted:
            continue
        rows, cols, flat, dist = _pull(run, target, source)
        seen = np.isfinite(dist) & (dist <= tolerance)
        any_seen |= seen
        score = _surface_score(dist, tolerance)
        for k in wanted:
            inside = seen & given.masks[k].reshape(-1)[np.where(seen, flat, 0)]
            seen_n[k] += seen
            inside_n[k] += inside
            score_sum[k] += np.where(inside, score, 0.0)
    if rows is None:
        rows, cols = np.nonzero(tmap.valid)
    for k in names:
        member = (2 * inside_n[k] > seen_n[k]) & (seen_n[k] > 0)
        mask = np.zeros(tmap.valid.shape, bool)
        mask[rows[member], cols[member]] = True
        masks[k] = mask
        if member.any():
            agree = inside_n[k][member] / seen_n[k][member]
            surface = score_sum[k][member] / np.maximum(inside_n[k][member], 1)
            confidence = float(np.mean(agree * surface))
            box = [float(cols[member].min()), float(rows[member].min()), float(cols[member].max() + 1),
                   float(rows[member].max() + 1)]
        else:
            confidence, box = 0.0, None
        records[k] = {"area_px": int(member.sum()), "bbox": box, "confidence": confidence,
                      "seen_fraction": float(any_seen.mean()) if n_obj else 0.0, "given": False}
    return masks, records


def _propagate_polygons(run: RegisteredRun, labels: LabelSet, target: str, tolerance: float,
                        snap: Dict[str, float]) -> Dict[str, Dict[str, Any]]:
    """Polygon vertices moved like points, from the source whose vertices transfer best."""
    out: Dict[str, Dict[str, Any]] = {}
    tmap = run.object_map(target)
    for name in labels.polygon_names:
        if name in labels.photos.get(target, PhotoLabels()).polygons:
            continue
        best = None
        for source, given in labels.photos.items():
            if source == target or name not in given.polygons:
                continue
            vertices = given.polygons[name].astype(np.float32)
            moved, ok = run.transfer(source, target, vertices)
            xyz_s, found_s = run.object_map(source).lift(vertices, snap_px=snap[source])
            xyz_t, found_t = tmap.lift(np.where(ok[:, None], moved, 0.0).astype(np.float32), snap_px=1.5)
            visible = ok & found_s & found_t & same_surface(xyz_s, xyz_t, tolerance)
            if best is None or int(ok.sum()) > int(best[1].sum()):
                best = (moved, ok, visible, source)
        if best is not None:
            moved, ok, visible, source = best
            out[name] = {"vertices": [_json_xy(m, bool(o)) for m, o in zip(moved, ok)],
                         "visible": [bool(v) for v in visible], "source": source, "given": False}
    return out


def propagate_labels(run: RegisteredRun, labels: LabelSet, cfg: Optional[PropagationConfig] = None) -> Propagation:
    """Carry every label of `labels` to every photo of `run`.

    Args:
        run: the registered run.
        labels: validated labels (`congeal.apps.labels.label_file.read_labels`).
        cfg: tolerances.
    Returns:
        Propagation: the `congeal-propagated-labels-v1` document (region entries get their "mask" file name when
        written) and the region masks.
    """
    cfg = cfg or PropagationConfig()
    tolerance = run.surface_tolerance(cfg.surface_fraction)
    snap = {s: cfg.snap_fraction * run.object_map(s).object_size() for s in labels.sources}
    doc: Dict[str, Any] = {
        "format": PROPAGATED_FORMAT, "run": str(run.root), "labels": str(labels.path), "sources": labels.sources,
        "point_names": labels.point_names, "region_names": labels.region_names,
        "surface_tolerance": tolerance, "photos": {},
        # cameras the run itself calls failed get no labels (RegisteredRun(include_failed=True) to include them)
        "left_out": dict(run.left_out),
    }
    masks: Dict[str, Dict[str, np.ndarray]] = {}
    for target in run.names:
        tmap = run.object_map(target)
        path = run.photo_path(target)
        given = labels.photos.get(target, PhotoLabels())
        entry: Dict[str, Any] = {"width": tmap.width, "height": tmap.height,
                                 "file": None if path is None else str(path), "source": target in labels.photos,
                                 "points": {}, "regions": {}, "polygons": {}}
        votes = _point_votes(run, labels, target, tolerance, snap) if labels.point_names else {}
        for name in labels.point_names:
            if name in given.points:
                x, y = given.points[name]
                entry["points"][name] = {"xy": [float(x), float(y)], "visible": True, "confidence": 1.0,
                                         "given": True, "spread_px": None, "votes": []}
            elif name in votes:
                entry["points"][name] = _aggregate_point(votes[name], tolerance, tmap.object_size(), cfg)
        region_masks, region_records = _propagate_regions(run, labels, target, tolerance)
        for name in labels.region_names:
            if name in given.masks:
                m = given.masks[name]
                rows, cols = np.nonzero(m)
                region_masks[name] = m
                region_records[name] = {
                    "area_px": int(m.sum()), "confidence": 1.0, "seen_fraction": 1.0, "given": True,
                    "bbox": [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
                    if rows.size else None,
                }
        entry["regions"] = {k: region_records[k] for k in labels.region_names if k in region_records}
        masks[target] = {k: region_masks[k] for k in labels.region_names if k in region_masks}
        entry["polygons"] = _propagate_polygons(run, labels, target, tolerance, snap)
        for name, vertices in given.polygons.items():
            entry["polygons"][name] = {"vertices": [[float(x), float(y)] for x, y in vertices],
                                       "visible": [True] * len(vertices), "source": target, "given": True}
        doc["photos"][target] = entry
    return Propagation(doc, masks)


def write_propagation(result: Propagation, run: RegisteredRun, out_dir: PathLike, tile: int = 200) -> List[Path]:
    """Write labels.json, coco.json, grid.png and masks/<photo>/<region>.png under `out_dir` (atomically).

    Returns:
        the written paths.
    """
    from congeal.apps.labels.coco import coco_document
    from congeal.apps.labels.label_pictures import label_grid
    from congeal.common.atomic import save_image, write_json

    out = Path(out_dir)
    written: List[Path] = []
    # names that differ only in punctuation ("left wing", "left/wing") get distinct files; long names a short one
    stems = unique_file_names(dict.fromkeys(name for regions in result.masks.values() for name in regions))
    for photo, regions in result.masks.items():
        for name, mask in regions.items():
            rel = Path("masks") / photo / f"{stems[name]}.png"
            ensure_inside(out, out / rel, f"the mask of region {name[:80]!r} on photo {photo[:80]!r}")
            save_image(out / rel, (mask.astype(np.uint8) * 255))
            result.doc["photos"][photo]["regions"][name]["mask"] = rel.as_posix()
            written.append(out / rel)
    write_json(out / "labels.json", result.doc)
    write_json(out / "coco.json", coco_document(result, run))
    save_image(out / "grid.png", label_grid(result, run, tile=tile))
    return [out / "labels.json", out / "coco.json", out / "grid.png"] + written
