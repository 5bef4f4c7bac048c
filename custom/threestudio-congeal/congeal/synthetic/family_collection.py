"""Synthetic collections of any object family, framing and deformation strength, with exact ground truth.

    out = make_family_collection("sets/chair", family="chair", mode="cross", framing="offcentre43",
                                 strength=0.3, n_images=8, seed=0)
    # sets/chair/canonical.safetensors, images/img_000.png … (RGBA, 192×144), ground_truth.json

The same files and ground-truth format as `congeal synth` (congeal-synthetic-v2, read by `evaluate_synthetic`),
generalised: `family` (congeal.synthetic.catalogue: creature, chair, teapot, spot), `framing`
(congeal.synthetic.photo_framing: centred square photos, or 4:3 / 3:4 photos from a camera turned 3°–12° away
from the object) and the cross-instance deformation `strength` (0.2: parts ±20 %, 0.3: ±30 %). With the creature,
mode same/cross, centred framing and strength 0.2 it draws exactly what `make_synthetic_collection` draws: the same
photos, byte for byte, and the same ground truth plus the fields below.

Each photo: the instance (the canonical in `same` mode, a deformed instance in `cross` mode, whose canonical is the
undeformed mean shape) baked on a grid and ray-marched at the sampled camera, Lambert-shaded with the instance's
own surface normals under one random directional light over a random background colour; alpha = rendered opacity.
`photo_resolution` renders the photos from a finer bake than the canonical (real photos are sharper than any
canonical; the spot sets use 128³ photos against a 64³ canonical).

Extra ground-truth fields: top level `family`, `framing`, `deformation_strength`, `symmetry`, `photo_resolution`;
per photo `off_axis_deg`, `off_axis_direction_deg`, `object_xy`, `principal_point`, `focal_px`.
"""
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.canonical.grid import save_canonical
from congeal.canonical.render import GridRenderer
from congeal.common.atomic import save_image, write_json
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.geometry.cameras import CONVENTION, Cameras, project
from congeal.synthetic.catalogue import get_family
from congeal.synthetic.families import Family, Subject
from congeal.synthetic.generator import DEFORMATION_STRENGTH, FORMAT, MODES, shaded_photo
from congeal.synthetic.photo_conditions import wild_photo
from congeal.synthetic.photo_framing import FRAMINGS, Framing, sample_view

__all__ = ["make_family_collection", "observe_keypoints", "CONDITIONS"]

#: studio: one light from the camera's side, a flat background, RGBA PNG with the exact alpha;
#: wild: `congeal.synthetic.photo_conditions` (any light, clutter, JPEG, a segmenter's mask in masks/<stem>.png)
CONDITIONS = ("studio", "wild")


def observe_keypoints(keypoints: Dict[str, np.ndarray], subject: Subject, cameras: Cameras,
                      render: Dict[str, Tensor], tolerance: float) -> Dict[str, Dict[str, Any]]:
    """Project one photo's keypoints and decide which it shows.

    Visible: in frame, on the object (opacity > 0.5 at its pixel), not behind other geometry (depth within
    `tolerance` of the rendered depth) and on the side facing the camera (surface normal towards it).

    Args:
        keypoints: {name: [3]} surface points of the photo's instance.
        cameras: the photo's camera (a batch of one); render: its render (with "depth" and "opacity").
    Returns:
        {name: {"xyz", "xy", "visible"}} JSON-able, in `keypoints` order.
    """
    height, width = cameras.height, cameras.width
    points = torch.tensor(np.stack(list(keypoints.values())), dtype=torch.float32)[None]
    xy, depth = project(points, cameras)
    xy, depth = xy[0], depth[0]
    inside = (xy >= 0).all(-1) & (xy[:, 0] < width) & (xy[:, 1] < height) & (depth > 0)
    column = xy[:, 0].clamp(0, width - 1).long()
    row = xy[:, 1].clamp(0, height - 1).long()
    seen_depth = render["depth"][0, row, column, 0]
    seen_opacity = render["opacity"][0, row, column, 0]
    to_camera = cameras.c2w[0, :3, 3].float() - points[0]
    facing = (subject.normals(points[0]) * to_camera).sum(-1) > 0
    visible = inside & (seen_opacity > 0.5) & (depth <= seen_depth + tolerance) & facing
    return {
        name: {"xyz": [float(v) for v in keypoints[name]], "xy": [float(v) for v in xy[k]], "visible": bool(visible[k])}
        for k, name in enumerate(keypoints)
    }


def make_family_collection(
    out_dir: PathLike,
    family: Union[str, Family] = "creature",
    mode: str = "same",
    framing: Union[str, Framing] = "centred",
    strength: float = DEFORMATION_STRENGTH,
    n_images: int = 8,
    seed: int = 0,
    image_size: int = 192,
    resolution: int = 64,
    num_samples: int = 64,
    photo_resolution: Optional[int] = None,
    mesh_dir: Optional[PathLike] = None,
    extra: Optional[Dict[str, Any]] = None,
    conditions: str = "studio",
) -> Path:
    """Write a synthetic collection with ground truth.

    Args:
        out_dir: folder to write (created; existing files of the same names are replaced).
        family: a family name (congeal.synthetic.catalogue.FAMILY_NAMES) or a `Family`.
        mode: "same" (every photo shows the canonical) or "cross" (every photo a deformed instance).
        framing: a name in `FRAMINGS` (centred, offcentre43, offcentre34) or a `Framing`.
        strength: cross-instance deformation strength (0.2 = parts ±20 %, colour σ 0.05; 0.3 = ±30 %).
        n_images, seed: number of photos; everything is a function of the seed.
        image_size: the photos' longer side in pixels.
        resolution: grid resolution of the canonical (and of each instance's bake).
        num_samples: ray-marching samples per pixel for the photos (scaled up with `photo_resolution`).
        photo_resolution: bake the photographed instances at this resolution instead (None: `resolution`).
        mesh_dir: where the spot family's files are (see `get_family`).
        extra: more top-level ground-truth fields (e.g. the benchmark set's name).
        conditions: "studio" (RGBA PNG photos, exact alpha) or "wild" (JPEG photos + masks/<stem>.png; see
            `congeal.synthetic.photo_conditions`).
    Returns:
        out_dir as a Path: canonical.safetensors, images/img_000.png … (RGBA), ground_truth.json.
    """
    family = get_family(family, mesh_dir) if isinstance(family, str) else family
    if isinstance(framing, str):
        if framing not in FRAMINGS:
            raise InputError(None, f"unknown framing {framing!r}", f"use one of {', '.join(FRAMINGS)}")
        framing = FRAMINGS[framing]
    if mode not in MODES:
        raise InputError(None, f"unknown synthetic mode {mode!r}", f"use one of {', '.join(MODES)}")
    if conditions not in CONDITIONS:
        raise InputError(None, f"unknown photo conditions {conditions!r}", f"use one of {', '.join(CONDITIONS)}")
    if mode == "cross" and family.deform is None:
        raise InputError(None, f"the {family.name} family has no cross-instance variation", "use mode 'same'")
    if n_images < 1 or image_size < 8 or resolution < 8 or not 0.0 <= strength < 1.0:
        raise InputError(None, f"need n_images ≥ 1, image_size ≥ 8, resolution ≥ 8, 0 ≤ strength < 1 (got "
                               f"{n_images}, {image_size}, {resolution}, {strength})", "pass valid values")
    photo_resolution = photo_resolution or resolution
    photo_samples = int(math.ceil(num_samples * photo_resolution / resolution))
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean = family.mean()
    canonical = mean.bake(resolution)
    save_canonical(out / "canonical.safetensors", canonical)
    mean_photo = canonical if photo_resolution == resolution else mean.bake(photo_resolution)
    mean_renderer = GridRenderer(mean_photo, num_samples=photo_samples)
    mean_keypoints = mean.keypoints()

    images: List[Dict[str, Any]] = []
    for index in range(n_images):  # each photo may have its own instance (cross mode)
        if mode == "cross":
            subject = family.deformed(rng, strength)
            instance = subject.bake(photo_resolution)
            renderer = GridRenderer(instance, num_samples=photo_samples)
            keypoints = subject.keypoints()
        else:
            subject, instance, renderer, keypoints = mean, mean_photo, mean_renderer, mean_keypoints
        view = sample_view(framing, rng, instance.bounding_radius(), image_size)
        cameras = view.cameras
        with torch.no_grad():
            render = renderer.render(cameras, view.height, view.width)
        name = f"img_{index:03d}"
        if conditions == "wild":
            photo = wild_photo(subject.normals, render, rng)
            file = f"images/{name}.jpg"
            save_image(out / file, photo.rgb, quality=photo.jpeg_quality)
            save_image(out / "images" / "masks" / f"{name}.png", photo.mask.astype(np.uint8) * 255)
            shaded = {"light": photo.record["lights"][0], "ambient": photo.record["ambient"],
                      "background": photo.record["background_kind"],
                      "conditions": photo.record}
        else:
            shaded = shaded_photo(subject.normals, render, view.c2w, rng)
            file = f"images/{name}.png"
            save_image(out / file, shaded.pop("rgba"))
        # The grid blurs the surface: keypoint vs rendered depth within 3 cells counts as unoccluded.
        observed = observe_keypoints(keypoints, subject, cameras, render, 3.0 * instance.cell_size)
        record = view.record
        images.append({
            "name": name,
            "file": file,
            "width": view.width,
            "height": view.height,
            "c2w": view.c2w[0].tolist(),
            "fovy_deg": view.fovy_deg,
            "azimuth_deg": record["azimuth_deg"],
            "elevation_deg": record["elevation_deg"],
            "distance": record["distance"],
            "image_offset": record["image_offset"],
            "fill": record["fill"],
            "light_dir": shaded["light"],
            "ambient": shaded["ambient"],
            "background": shaded["background"],
            "off_axis_deg": record["off_axis_deg"],
            "off_axis_direction_deg": record["off_axis_direction_deg"],
            "object_xy": record["object_xy"],
            "principal_point": record["principal_point"],
            "focal_px": record["focal_px"],
            "keypoints": observed,
            **({"conditions": shaded["conditions"]} if "conditions" in shaded else {}),
        })

    write_json(out / "ground_truth.json", {
        "format": FORMAT,
        "convention": CONVENTION,
        "mode": mode,
        "seed": seed,
        "family": family.name,
        "framing": framing.name,
        "deformation_strength": strength if mode == "cross" else 0.0,
        "symmetry": family.symmetry,
        "resolution": resolution,
        "photo_resolution": photo_resolution,
        "conditions": conditions,
        **(extra or {}),
        "canonical": "canonical.safetensors",
        "keypoint_names": list(family.keypoint_names),
        "notes": ("c2w: a real pinhole camera (principal point at the photo centre, fovy spans the photo height). "
                  "Its centre sits at (azimuth_deg, elevation_deg, distance) around the object; centred framing: "
                  "it looks at the origin, then moves by image_offset (world units along its own right/up axes; "
                  "rotation unchanged); off-centre framings: its optical axis is turned off_axis_deg away from the "
                  "origin, which then appears at object_xy (off_axis_direction_deg: 0 = right, 90 = up). Keypoint "
                  "xyz: canonical-frame point on the surface of this image's instance; xy: pixel coordinates, pixel "
                  "(row i, col j) centre at (j+0.5, i+0.5); visible: in frame, not occluded and facing the camera."),
        "images": images,
    })
    return out
