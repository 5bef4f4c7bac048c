"""Tiny SPair-71k-format and NAVI-format datasets written from a synthetic collection (`congeal synth`).

    root = synthetic_to_spair("synth/", "spair-mini/", category="synth")       # SPair layout, known keypoints
    scene = synthetic_to_navi("synth/", "navi-mini/", object_id="synth")      # navi-mini/synth/wild_set/

They let the evaluation harnesses be exercised end to end, with known answers, without the real datasets: the
synthetic ground truth (ground_truth.json: per image `c2w` in threestudio's convention, `fovy_deg`, keypoints
with `xy` in continuous pixels and `visible`) is rewritten in each dataset's own conventions.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from congeal.common.atomic import atomic_path, save_image, write_json, write_text
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.geometry.conventions import matrix_to_quaternion, opengl_c2w_to_opencv_w2c
from congeal.evaluation.spair import from_continuous


def read_synthetic(collection: PathLike) -> Tuple[Path, List[Dict]]:
    """(collection folder, ground-truth image entries) of a synthetic collection."""
    collection = Path(collection)
    path = collection / "ground_truth.json"
    if not path.is_file():
        raise InputError(path, "is missing", "pass a folder written by `congeal synth`")
    data = json.loads(path.read_text())
    entries = data["images"] if isinstance(data, dict) else data
    return collection, entries


def _rgba(collection: Path, entry: Dict) -> np.ndarray:
    from PIL import Image

    file = collection / (entry.get("file") or f"images/{entry['name']}.png")
    with Image.open(file) as image:
        return np.asarray(image.convert("RGBA"))


def _stem(entry: Dict) -> str:
    return Path(entry.get("file") or entry["name"]).stem


def _on_background(rgba: np.ndarray, grey: int = 128) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * alpha + grey * (1 - alpha)).round().astype(np.uint8)


def synthetic_to_spair(collection: PathLike, root: PathLike, category: str = "synth",
                       max_pairs: Optional[int] = None) -> Path:
    """Write an SPair-71k-layout dataset with one category: every ordered pair (i, j), i != j, in the test split.

    Keypoints are those visible in both images (ids = sorted keypoint names' positions), in SPair pixel indices;
    bounding boxes are the alpha masks' extents (x1, y1, x2, y2 pixel indices); photos are composited on grey.
    Returns the root.
    """
    collection, entries = read_synthetic(collection)
    root = Path(root)
    kp_names = sorted({k for e in entries for k in (e.get("keypoints") or {})})
    kp_id = {k: str(i) for i, k in enumerate(kp_names)}
    boxes: Dict[str, List[float]] = {}
    for entry in entries:
        stem = _stem(entry)
        rgba = _rgba(collection, entry)
        mask = rgba[..., 3] > 127
        save_image(root / "JPEGImages" / category / f"{stem}.jpg", _on_background(rgba))
        save_image(root / "Segmentation" / category / f"{stem}.png", mask.astype(np.uint8))
        ys, xs = np.nonzero(mask)
        boxes[stem] = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())] if len(xs) else [0.0] * 4
        kps = {kp_id[k]: (from_continuous(np.asarray(v["xy"])).tolist() if v.get("visible") else None)
               for k, v in (entry.get("keypoints") or {}).items()}
        write_json(root / "ImageAnnotation" / category / f"{stem}.json", {
            "filename": f"{stem}.jpg", "category": category, "image_width": int(rgba.shape[1]),
            "image_height": int(rgba.shape[0]), "bndbox": boxes[stem], "kps": kps})
    ids = []
    for a in entries:
        for b in entries:
            if a is b or (max_pairs is not None and len(ids) >= max_pairs):
                continue
            ka, kb = a.get("keypoints") or {}, b.get("keypoints") or {}
            common = [k for k in kp_names if k in ka and k in kb and ka[k].get("visible") and kb[k].get("visible")]
            pid = f"{len(ids) + 1:06d}-{_stem(a)}-{_stem(b)}:{category}"
            write_json(root / "PairAnnotation" / "test" / f"{pid}.json", {
                "pair_id": len(ids) + 1, "src_imname": f"{_stem(a)}.jpg", "trg_imname": f"{_stem(b)}.jpg",
                "src_kps": [from_continuous(np.asarray(ka[k]["xy"])).tolist() for k in common],
                "trg_kps": [from_continuous(np.asarray(kb[k]["xy"])).tolist() for k in common],
                "kps_ids": [kp_id[k] for k in common], "src_bndbox": boxes[_stem(a)], "trg_bndbox": boxes[_stem(b)],
                "category": category})
            ids.append(pid)
    layout = root / "Layout" / "large"
    write_text(layout / "test.txt", "".join(f"{pid}\n" for pid in ids))
    for split in ("trn", "val"):
        write_text(layout / f"{split}.txt", "")
    return root


def object_frame_cameras(c2w: torch.Tensor, rotation: torch.Tensor, scale: float,
                         translation: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cameras c2w [N,4,4] (threestudio, world = synthetic canonical) -> OpenCV world-to-camera (R, t) in an
    object frame related to the canonical one by x_obj = scale · rotation · x_can + translation."""
    R, t = opengl_c2w_to_opencv_w2c(c2w.to(torch.float64))
    G, d = rotation.to(torch.float64), translation.to(torch.float64)
    R_obj = R @ G.T
    t_obj = scale * t - (R_obj @ d.unsqueeze(-1)).squeeze(-1)
    return R_obj, t_obj


def synthetic_to_navi(collection: PathLike, root: PathLike, object_id: str = "synth", scene: str = "wild_set",
                      rotation: Optional[torch.Tensor] = None, scale: float = 1.0,
                      translation: Optional[torch.Tensor] = None, exif_rotate: Sequence[str] = ()) -> Path:
    """Write `<root>/<object_id>/<scene>/` in NAVI's layout (annotations.json, images/*.jpg, masks/*.png).

    The object frame is the synthetic canonical frame moved by the similarity (rotation, scale, translation), so
    a harness must align frames to score well. Images named in `exif_rotate` are stored rotated with an EXIF
    orientation tag (6 = rotate 90° clockwise to display) so that only an EXIF-aware reader sees them upright.
    Returns the scene folder.
    """
    from PIL import Image

    collection, entries = read_synthetic(collection)
    folder = Path(root) / object_id / scene
    G = torch.eye(3, dtype=torch.float64) if rotation is None else rotation
    d = torch.zeros(3, dtype=torch.float64) if translation is None else translation
    c2w = torch.tensor([e["c2w"] for e in entries], dtype=torch.float64)
    R, t = object_frame_cameras(c2w, G, scale, d)
    q = matrix_to_quaternion(R)
    annotations = []
    for k, entry in enumerate(entries):
        stem = _stem(entry)
        rgba = _rgba(collection, entry)
        h, w = rgba.shape[:2]
        image = Image.fromarray(_on_background(rgba))
        exif = None
        if stem in exif_rotate:
            # stored pixels are the upright image turned 90° counter-clockwise; orientation 6 turns them back
            image = image.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
        with atomic_path(folder / "images" / f"{stem}.jpg") as tmp:
            image.save(tmp, format="JPEG", quality=95, **({"exif": exif} if exif is not None else {}))
        save_image(folder / "masks" / f"{stem}.png", ((rgba[..., 3] > 127) * 255).astype(np.uint8))
        focal = 0.5 * h / np.tan(0.5 * np.radians(float(entry["fovy_deg"])))
        annotations.append({
            "object_id": object_id, "camera": {"q": q[k].tolist(), "t": t[k].tolist(), "focal_length": float(focal),
                                               "camera_model": "synthetic"},
            "filename": f"{stem}.jpg", "filename_original": stem, "image_size": [int(h), int(w)],
            "scene_name": scene, "split": "train", "occluded": False})
    write_json(folder / "annotations.json", annotations)
    return folder
