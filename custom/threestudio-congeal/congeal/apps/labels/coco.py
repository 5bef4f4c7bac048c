"""Propagated labels as a COCO-keypoints document (what annotation tools import: CVAT, Label Studio, FiftyOne).

    doc = coco_document(result, run)         # result: congeal.apps.labels.propagation.Propagation
    write_json("coco.json", doc)

Layout: category 1 "object" lists the point names as its `keypoints` (no skeleton); every photo gets one
annotation of it with `keypoints` [x, y, v]·K — v = 2 visible, 1 placed but hidden (occluded or facing away),
0 no correspondence (x = y = 0) — `num_keypoints` (v > 0), the object's `bbox` [x, y, w, h] and `area` from the
photo's coordinate map, its `segmentation` (uncompressed RLE of the mapped object) and `keypoint_scores` (the
propagation confidence per point, an extra field tools ignore). Every region label (polygon or mask) is a further
category whose annotations carry the region as uncompressed RLE, with `score` = its confidence.
RLE: `{"counts": [...], "size": [h, w]}`, run lengths over the column-major flattened mask, starting with a run
of zeros (pycocotools' `frPyObjects` reads it).
"""
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from jaxtyping import Bool

__all__ = ["coco_document", "rle_encode", "rle_decode"]


def rle_encode(mask: Bool[np.ndarray, "H W"]) -> Dict[str, Any]:
    """COCO uncompressed RLE of a mask (column-major runs, first run counts zeros)."""
    flat = np.asarray(mask, bool).reshape(-1, order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def rle_decode(rle: Dict[str, Any]) -> Bool[np.ndarray, "H W"]:
    """Inverse of `rle_encode`."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.repeat(values, counts).reshape((h, w), order="F")


def _bbox_xywh(box) -> List[float]:
    if box is None:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def coco_document(result, run) -> Dict[str, Any]:
    """The COCO-keypoints document of a `Propagation` on a `RegisteredRun`."""
    doc = result.doc
    point_names: List[str] = list(doc["point_names"])
    region_names: List[str] = list(doc["region_names"])
    categories = [{"id": 1, "name": "object", "supercategory": "object", "keypoints": point_names, "skeleton": []}]
    categories += [{"id": 2 + i, "name": name, "supercategory": "region"} for i, name in enumerate(region_names)]
    images, annotations = [], []
    for image_id, (name, entry) in enumerate(doc["photos"].items(), start=1):
        file = entry.get("file")
        images.append({"id": image_id, "file_name": Path(file).name if file else f"{name}.png",
                       "width": entry["width"], "height": entry["height"], "congeal_name": name})
        omap = run.object_map(name)
        keypoints: List[float] = []
        scores: List[float] = []
        for k in point_names:
            point = entry["points"].get(k)
            if point is None or point["xy"] is None:
                keypoints += [0.0, 0.0, 0]
                scores.append(0.0)
            else:
                keypoints += [float(point["xy"][0]), float(point["xy"][1]), 2 if point["visible"] else 1]
                scores.append(float(point["confidence"]))
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": keypoints, "num_keypoints": int(sum(1 for v in keypoints[2::3] if v > 0)),
            "keypoint_scores": scores, "bbox": _bbox_xywh(omap.bbox()), "area": float(omap.valid.sum()),
            "segmentation": rle_encode(omap.valid),
        })
        for i, region in enumerate(region_names):
            record = entry["regions"].get(region)
            mask = result.masks.get(name, {}).get(region)
            if record is None or mask is None or not mask.any():
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 2 + i, "iscrowd": 0,
                "segmentation": rle_encode(mask), "area": float(mask.sum()), "bbox": _bbox_xywh(record["bbox"]),
                "score": float(record["confidence"]),
            })
    return {
        "info": {"description": f"labels propagated by congeal through the run {doc['run']}",
                 "congeal_format": doc["format"]},
        "images": images, "annotations": annotations, "categories": categories,
    }
