"""Helpers for the evaluation tests: a hand-made "synthetic collection" (ground_truth.json + RGBA photos) whose
cameras and keypoints come from congeal.geometry.cameras, so loaders and harnesses can be tested without a registration."""
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from congeal.geometry.cameras import Cameras, c2w_from_spherical, project


def make_fake_collection(folder: Path, n_images: int = 5, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    """Write folder/ground_truth.json and folder/images/<name>.png with known cameras and 6 keypoints."""
    g = torch.Generator().manual_seed(seed)
    az = torch.linspace(0.0, 300.0, n_images, dtype=torch.float64)
    el = 10.0 + 30.0 * torch.rand(n_images, generator=g, dtype=torch.float64)
    dist = 3.0 + torch.rand(n_images, generator=g, dtype=torch.float64)
    c2w = c2w_from_spherical(az, el, dist)
    fovy_deg = 40.0 + 10.0 * torch.rand(n_images, generator=g, dtype=torch.float64)
    xyz = torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5
    xy, depth = project(xyz[None].expand(n_images, -1, -1), Cameras.centred(c2w, torch.deg2rad(fovy_deg), height, width))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    yy, xx = np.mgrid[0:height, 0:width]
    for k in range(n_images):
        name = f"img{k:02d}"
        rgba = np.zeros((height, width, 4), np.uint8)
        inside = ((xx - width / 2) / (0.35 * width)) ** 2 + ((yy - height / 2) / (0.4 * height)) ** 2 < 1
        rgba[..., 0] = 40 + 30 * k
        rgba[..., 1] = (xx * 4) % 256
        rgba[..., 3] = np.where(inside, 255, 0)
        Image.fromarray(rgba).save(folder / "images" / f"{name}.png")
        inside_xy = (xy[k, :, 0] > 0) & (xy[k, :, 0] < width) & (xy[k, :, 1] > 0) & (xy[k, :, 1] < height)
        keypoints = {f"kp{j}": {"xyz": xyz[j].tolist(), "xy": xy[k, j].tolist(),
                                "visible": bool(inside_xy[j] and depth[k, j] > 0 and (j + k) % 5 != 0)}
                     for j in range(xyz.shape[0])}
        entries.append({"name": name, "file": f"images/{name}.png", "width": width, "height": height,
                        "c2w": c2w[k].tolist(), "fovy_deg": float(fovy_deg[k]), "keypoints": keypoints})
    (folder / "ground_truth.json").write_text(json.dumps({"images": entries}))
    return folder


def write_fake_run(run_dir: Path, entries, c2w=None) -> Path:
    """A registration-run folder holding only poses.json (cameras = `c2w` [N,4,4] or the ground truth's)."""
    from congeal.run.outputs import write_poses

    records = []
    for k, entry in enumerate(entries):
        cam = np.asarray(entry["c2w"] if c2w is None else c2w[k], dtype=np.float64)
        h, w = entry["height"], entry["width"]
        focal = 0.5 * h / np.tan(0.5 * np.radians(entry["fovy_deg"]))
        records.append({"name": Path(entry["file"]).stem, "c2w": cam.tolist(), "fovy_deg": entry["fovy_deg"],
                        "fl_x": focal, "fl_y": focal, "cx": w / 2, "cy": h / 2, "width": w, "height": h,
                        "azimuth_deg": 0.0, "elevation_deg": 0.0, "distance": float(np.linalg.norm(cam[:3, 3]))})
    write_poses(run_dir / "poses.json", records)
    return run_dir


def axis_rotation(axis: str, deg: float) -> torch.Tensor:
    """The float64 [3,3] rotation by `deg` degrees about the world axis "x", "y" or "z"."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=torch.float64)
