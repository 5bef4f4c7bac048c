"""Synthetic collections with exact ground truth: a procedural, asymmetric, part-coloured creature.

    out = make_synthetic_collection("synth/", mode="cross", n_images=8, seed=0)
    # synth/canonical.safetensors, synth/images/img_000.png … (RGBA), synth/ground_truth.json
    congeal synth synth/ --mode same --images 8 --seed 0

The creature (body, neck, head, snout, one horn on its left, a tail bending left, four legs) is a smooth union of
SDF primitives; every part has its own colour and the horn/tail break the left-right mirror symmetry, so no two
poses look alike under colour features. Photos are rendered with `GridRenderer` at random poses (full azimuth
circle, elevation −10°…50°, FoV 25°…55°, random fill and a small image-plane offset), lit by one random
directional light (Lambert shading from the SDF normal) over a random background colour; alpha is the rendered
opacity. `same` renders the canonical itself; `cross` deforms every photo's instance (part sizes and offsets,
colour jitter) while `canonical.safetensors` holds the undeformed mean shape.
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.common.atomic import save_image, write_json
from congeal.canonical.bake import canonical_from_sdf
from congeal.canonical.grid import Canonical, save_canonical
from congeal.canonical.render import GridRenderer
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.geometry.cameras import CONVENTION, Cameras, c2w_from_spherical, project
from congeal.geometry.candidates import distance_for_fill

__all__ = ["FORMAT", "Part", "creature_parts", "bake_creature", "make_synthetic_collection", "keypoints_of", "KEYPOINT_NAMES"]

FORMAT = "congeal-synthetic-v2"  # v2: keypoints on the surface (v1: inside)
MODES = ("same", "cross")
# Pose and appearance ranges (degrees / fractions); documented in the module docstring and the README.
AZIMUTH_RANGE = (0.0, 360.0)
ELEVATION_RANGE = (-10.0, 50.0)
FOVY_RANGE = (25.0, 55.0)
FILL_RANGE = (0.65, 0.85)  # bounding-sphere height / frame height ("a little random camera distance")
OFFSET_RANGE = 0.08  # image-plane shift, as a fraction of the frame half-height
AMBIENT_RANGE = (0.45, 0.7)
BLEND = 0.04  # smooth-union radius (world units)
COLOUR_SOFTNESS = 0.01  # width of the colour blend between parts (world units)
DEFORMATION_STRENGTH = 0.2  # cross mode's default: part sizes ±20 %, colour jitter σ 0.05


@dataclass(frozen=True)
class Part:
    """One SDF primitive: an ellipsoid (`a` = centre, `size` = semi-axes), a capsule (`a`→`b`, radius size[0]) or an
    axis-aligned box (`a` = centre, `size` = half-extents; `b` unused)."""

    name: str
    kind: str  # "ellipsoid" | "capsule" | "box"
    a: Tuple[float, float, float]
    b: Tuple[float, float, float]
    size: Tuple[float, float, float]
    colour: Tuple[float, float, float]


def _mean_parts() -> List[Part]:
    """The undeformed creature, facing +x, standing on -z, in a radius-1 canonical box."""
    z0 = (0.0, 0.0, 0.0)
    legs = []
    leg_colours = {"fl": (0.9, 0.2, 0.2), "fr": (0.2, 0.7, 0.25), "bl": (0.2, 0.35, 0.9), "br": (0.95, 0.85, 0.15)}
    for name, (x, y) in {"fl": (0.27, 0.13), "fr": (0.27, -0.13), "bl": (-0.27, 0.13), "br": (-0.27, -0.13)}.items():
        legs.append(Part(f"leg_{name}", "capsule", (x, y, -0.05), (x + 0.02, y * 1.1, -0.46), (0.06, 0, 0),
                         leg_colours[name]))
    return [
        Part("body", "ellipsoid", (0.0, 0.0, 0.05), z0, (0.44, 0.21, 0.19), (0.85, 0.62, 0.3)),
        Part("neck", "capsule", (0.33, 0.0, 0.12), (0.5, 0.0, 0.28), (0.08, 0, 0), (0.8, 0.55, 0.25)),
        Part("head", "ellipsoid", (0.55, 0.0, 0.32), z0, (0.16, 0.12, 0.12), (0.92, 0.88, 0.78)),
        Part("snout", "ellipsoid", (0.7, 0.0, 0.28), z0, (0.07, 0.06, 0.05), (0.15, 0.15, 0.15)),
        Part("horn", "capsule", (0.54, 0.07, 0.42), (0.5, 0.13, 0.58), (0.035, 0, 0), (0.1, 0.75, 0.8)),
        Part("tail", "capsule", (-0.4, 0.0, 0.12), (-0.68, 0.16, 0.36), (0.045, 0, 0), (0.55, 0.25, 0.6)),
        *legs,
    ]


def creature_parts(rng: Optional[np.random.Generator] = None, strength: float = DEFORMATION_STRENGTH) -> List[Part]:
    """The creature's parts; with `rng`, one deformed instance (cross-instance mode).

    Deformation at the default strength s = 0.2 (every range below scales with s / 0.2): the body's semi-axes scale
    by U(0.85, 1.15) each and the attachment points follow; every other part's size scales by U(0.8, 1.2) (1 ± s),
    its far end moves by N(0, 0.03) per axis, and its colour by N(0, 0.05).
    """
    parts = _mean_parts()
    if rng is None:
        return parts
    k = strength / DEFORMATION_STRENGTH  # exactly 1.0 at the default: the same numbers as before
    body = parts[0]
    body_scale = rng.uniform(1 - 0.15 * k, 1 + 0.15 * k, size=3)

    def attach(point) -> Tuple[float, float, float]:
        # Points on/in the body keep their relative place when the body stretches.
        centre = np.asarray(body.a)
        return tuple(centre + (np.asarray(point) - centre) * body_scale)

    out = [replace(body, size=tuple(np.asarray(body.size) * body_scale),
                   colour=_jitter(body.colour, rng, 0.05 * k))]
    head_shift = np.asarray(attach(parts[2].a)) - np.asarray(parts[2].a) + rng.normal(0, 0.03 * k, 3)
    for part in parts[1:]:
        scale = rng.uniform(1 - 0.2 * k, 1 + 0.2 * k)
        a = np.asarray(part.a, dtype=float)
        b = np.asarray(part.b, dtype=float)
        if part.name in ("head", "snout", "horn"):
            a = a + head_shift  # the head group moves together
            b = b + head_shift
        elif part.name == "neck":
            a = np.asarray(attach(a))
            b = b + head_shift
        else:  # legs and tail hang off the body
            shift = np.asarray(attach(a)) - a
            a, b = a + shift, b + shift
        if part.kind == "capsule":
            b = a + (b - a) * rng.uniform(1 - 0.15 * k, 1 + 0.15 * k) + rng.normal(0, 0.03 * k, 3)
        out.append(replace(part, a=tuple(a), b=tuple(b), size=tuple(np.asarray(part.size) * scale),
                           colour=_jitter(part.colour, rng, 0.05 * k)))
    return out


def _jitter(colour, rng: np.random.Generator, sigma: float = 0.05) -> Tuple[float, float, float]:
    return tuple(np.clip(np.asarray(colour) + rng.normal(0, sigma, 3), 0.0, 1.0))


def _part_distances(parts: List[Part], points: Float[Tensor, "N 3"]) -> Float[Tensor, "N P"]:
    """Signed distances of points to every part."""
    out = []
    for part in parts:
        a = points.new_tensor(part.a)
        if part.kind == "ellipsoid":
            axes = points.new_tensor(part.size)
            # Quilez's ellipsoid bound: exact on the surface, a good distance estimate near it.
            k0 = ((points - a) / axes).norm(dim=-1)
            k1 = ((points - a) / axes**2).norm(dim=-1).clamp_min(1e-9)
            out.append(k0 * (k0 - 1.0) / k1)
        elif part.kind == "box":
            q = (points - a).abs() - points.new_tensor(part.size)  # exact box distance (Quilez)
            out.append(q.clamp_min(0.0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0.0))
        else:
            b = points.new_tensor(part.b)
            ab = b - a
            h = (((points - a) @ ab) / (ab @ ab)).clamp(0.0, 1.0)
            out.append((points - a - h[:, None] * ab).norm(dim=-1) - part.size[0])
    return torch.stack(out, dim=-1)


class _PartField:
    """Per-part distances of the last points queried, shared by the SDF and the colour function (a bake calls
    both on the same points; computing the distances once halves its cost)."""

    def __init__(self, parts: List[Part]):
        self.parts = parts
        self._points: Optional[Tensor] = None
        self._distances: Optional[Tensor] = None

    def distances(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N P"]:
        if self._points is not points or points.requires_grad:
            self._points, self._distances = points, _part_distances(self.parts, points)
        return self._distances


def creature_sdf(parts: Union[List[Part], _PartField]) -> Callable[[Tensor], Tensor]:
    """SDF [N,3] -> [N] of the smooth union of the parts (log-sum-exp smooth minimum, radius BLEND)."""
    field = parts if isinstance(parts, _PartField) else _PartField(parts)

    def sdf(points: Float[Tensor, "N 3"]) -> Float[Tensor, "N"]:
        return -BLEND * torch.logsumexp(field.distances(points) / -BLEND, dim=-1)

    return sdf


def creature_colour(parts: Union[List[Part], _PartField]) -> Callable[[Tensor], Tensor]:
    """Colour [N,3] -> [N,3]: the nearest part's colour, blended over COLOUR_SOFTNESS at part borders."""
    field = parts if isinstance(parts, _PartField) else _PartField(parts)
    colours = torch.tensor([part.colour for part in field.parts], dtype=torch.float32)

    def colour(points: Tensor) -> Tensor:
        weights = torch.softmax(field.distances(points) / -COLOUR_SOFTNESS, dim=-1)
        return weights @ colours.to(points)

    return colour


def bake_creature(parts: List[Part], resolution: int) -> Canonical:
    """The creature baked on a radius-1 grid."""
    field = _PartField(parts)
    return canonical_from_sdf(creature_sdf(field), creature_colour(field), resolution, radius=1.0)


KEYPOINT_NAMES = (
    "snout_tip", "head_top", "horn_tip", "tail_tip", "back",
    "foot_fl", "foot_fr", "foot_bl", "foot_br",
)


def keypoints_of(parts: List[Part]) -> Dict[str, np.ndarray]:
    """Named surface points of an instance: {name: [3]} (the same anatomical point on every instance).

    Each keypoint is where a ray from inside a part, along a fixed anatomical direction, leaves the creature's
    surface: the snout's front, the top of the head and of the back, the horn's and the tail's tips (along their
    axes) and each foot's toe (forward from the end of the leg). On the surface, because a pixel only ever shows
    the surface: a point inside the body has no depth a photo could reveal (v1 keypoints lay half a part-radius
    inside, so even exact cameras and maps transferred only 0.885 of them within 5 %), and annotators of real
    benchmarks (SPair-71k) click visible surface points too.
    """
    by_name = {part.name: part for part in parts}
    forward = np.array([1.0, 0.0, 0.0])  # the creature faces +x
    up = np.array([0.0, 0.0, 1.0])

    def axis(part: Part) -> Tuple[np.ndarray, np.ndarray]:  # a capsule's far end and its direction
        a, b = np.asarray(part.a, dtype=float), np.asarray(part.b, dtype=float)
        return b, (b - a) / np.linalg.norm(b - a)

    anchors = {
        "snout_tip": (np.asarray(by_name["snout"].a, dtype=float), forward),
        "head_top": (np.asarray(by_name["head"].a, dtype=float), up),
        "horn_tip": axis(by_name["horn"]),
        "tail_tip": axis(by_name["tail"]),
        "back": (np.asarray(by_name["body"].a, dtype=float), up),
    }
    for leg in ("fl", "fr", "bl", "br"):
        anchors[f"foot_{leg}"] = (axis(by_name[f"leg_{leg}"])[0], forward)
    starts, directions = (np.stack([anchors[name][i] for name in KEYPOINT_NAMES]) for i in (0, 1))
    exits = _surface_exits(creature_sdf(parts), starts, directions)
    return {name: exits[k] for k, name in enumerate(KEYPOINT_NAMES)}


def _surface_exits(sdf: Callable[[Tensor], Tensor], starts: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Per ray [K,3] start + t·direction (t ≥ 0, start inside): the first point where the SDF crosses zero, [K,3]."""
    origin = torch.tensor(starts, dtype=torch.float64)
    step = F.normalize(torch.tensor(directions, dtype=torch.float64), dim=-1)
    ts = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)  # 0.001-unit steps across the radius-1 box
    with torch.no_grad():
        samples = origin[:, None] + ts[None, :, None] * step[:, None]  # [K,T,3]
        outside = sdf(samples.reshape(-1, 3)).view(len(origin), len(ts)) > 0
        leaves = outside.any(dim=1)
        if outside[:, 0].any() or not leaves.all():
            bad = starts[(outside[:, 0] | ~leaves).numpy()][0]
            raise ValueError(f"keypoint ray from {bad.tolist()} does not start inside the creature and leave it")
        first = outside.float().argmax(dim=1)
        low, high = ts[first - 1], ts[first]
        for _ in range(40):  # bisection of all rays at once, to well below a pixel
            middle = 0.5 * (low + high)
            inside = sdf(origin + middle[:, None] * step) < 0
            low, high = torch.where(inside, middle, low), torch.where(inside, high, middle)
    return (origin + 0.5 * (low + high)[:, None] * step).numpy()


def _shade(rgb: Float[Tensor, "H W 3"], opacity: Float[Tensor, "H W 1"], normals: Float[Tensor, "H W 3"],
           light: Float[Tensor, "3"], ambient: float, background: Float[Tensor, "3"]) -> Float[Tensor, "H W 3"]:
    """Lambert-shaded premultiplied colour over a background (light: a unit direction)."""
    lambert = (normals @ light).clamp_min(0.0)[..., None]
    shaded = rgb * (ambient + (1.0 - ambient) * lambert)
    return (shaded + (1.0 - opacity) * background).clamp(0.0, 1.0)


def _normals(sdf: Callable[[Tensor], Tensor], points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    """Unit SDF gradients at points (autograd: one forward and one backward pass)."""
    with torch.enable_grad():
        probe = points.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(sdf(probe).sum(), probe)
    return F.normalize(gradient, dim=-1)


def shaded_photo(normals_of: Callable[[Tensor], Tensor], render: Dict[str, Tensor], c2w: Float[Tensor, "1 4 4"],
                 rng: np.random.Generator) -> Dict[str, Any]:
    """Light and shade a render with 3 + 1 + 3 draws from `rng`: {"rgba" [H,W,4] numpy, "light", "ambient",
    "background"} (the last three JSON-ready). `normals_of` maps surface points [P,3] to unit normals [P,3]."""
    rgb, opacity, xyz = render["rgb"][0], render["opacity"][0], render["xyz"][0]
    # A directional light from the camera's side of the object, tilted up to 60° each way.
    light_cam = F.normalize(torch.tensor([rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.9), 1.0]), dim=0)
    light = (c2w[0, :3, :3] @ light_cam.to(c2w)).float()
    ambient = float(rng.uniform(*AMBIENT_RANGE))
    background = torch.tensor(rng.uniform(0.05, 0.95, size=3), dtype=torch.float32)
    normals = torch.zeros_like(xyz)
    covered = opacity[..., 0] > 1e-4
    normals[covered] = normals_of(xyz[covered])
    photo = _shade(rgb, opacity, normals, light, ambient, background)
    return {"rgba": torch.cat([photo, opacity], dim=-1).numpy(), "light": light.tolist(), "ambient": ambient,
            "background": background.tolist()}


def make_synthetic_collection(
    out_dir: PathLike,
    mode: str = "same",
    n_images: int = 8,
    seed: int = 0,
    image_size: int = 192,
    resolution: int = 64,
    num_samples: int = 64,
) -> Path:
    """Write a synthetic collection with ground truth.

    Args:
        out_dir: folder to write (created; existing files of the same names are replaced).
        mode: "same" (every photo renders the canonical) or "cross" (every photo a deformed instance).
        n_images: number of photos.
        seed: everything (poses, lighting, backgrounds, instances) is a function of the seed.
        image_size: photo side in pixels (square photos).
        resolution: grid resolution of the baked canonical (and of each instance in cross mode).
        num_samples: ray-marching samples per pixel.
    Returns:
        out_dir as a Path. Files: canonical.safetensors, images/img_000.png … (RGBA), ground_truth.json.
    """
    if mode not in MODES:
        raise InputError(None, f"unknown synthetic mode {mode!r}", f"use one of {', '.join(MODES)}")
    if n_images < 1 or image_size < 8 or resolution < 8:
        raise InputError(None, f"need n_images ≥ 1, image_size ≥ 8, resolution ≥ 8 (got {n_images}, "
                               f"{image_size}, {resolution})", "pass larger values")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean_parts = creature_parts()
    canonical = bake_creature(mean_parts, resolution)
    save_canonical(out / "canonical.safetensors", canonical)
    mean_renderer = GridRenderer(canonical, num_samples=num_samples)
    mean_bound = canonical.bounding_radius()
    tolerance = 3.0 * canonical.cell_size  # keypoint vs rendered depth, for occlusion (the grid blurs the surface)

    images = []
    for index in range(n_images):  # a loop over images: each may have its own instance (cross mode)
        parts = creature_parts(rng) if mode == "cross" else mean_parts
        if mode == "cross":
            instance = bake_creature(parts, resolution)
            renderer = GridRenderer(instance, num_samples=num_samples)
            bound = instance.bounding_radius()
        else:
            renderer = mean_renderer
            bound = mean_bound
        azimuth = float(rng.uniform(*AZIMUTH_RANGE))
        elevation = float(rng.uniform(*ELEVATION_RANGE))
        fovy_deg = float(rng.uniform(*FOVY_RANGE))
        fill = float(rng.uniform(*FILL_RANGE))
        fovy = torch.tensor([math.radians(fovy_deg)])
        distance = float(distance_for_fill(bound, fovy, fill))
        c2w = c2w_from_spherical(torch.tensor([azimuth]), torch.tensor([elevation]), torch.tensor([distance]))
        # Shift the camera within its own image plane: the object moves off-centre, the rotation is unchanged.
        half_height = distance * math.tan(0.5 * fovy.item())
        offset = rng.uniform(-OFFSET_RANGE, OFFSET_RANGE, size=2) * half_height
        c2w[0, :3, 3] += float(offset[0]) * c2w[0, :3, 0] + float(offset[1]) * c2w[0, :3, 1]

        cameras = Cameras.centred(c2w, fovy, image_size, image_size)
        with torch.no_grad():
            render = renderer.render(cameras, image_size, image_size)
        opacity = render["opacity"][0]
        sdf = creature_sdf(parts)
        shaded = shaded_photo(lambda points: _normals(sdf, points), render, c2w, rng)
        light, ambient, background = shaded["light"], shaded["ambient"], shaded["background"]
        name = f"img_{index:03d}"
        save_image(out / "images" / f"{name}.png", shaded["rgba"])

        keypoints = keypoints_of(parts)
        points = torch.tensor(np.stack(list(keypoints.values())), dtype=torch.float32)[None]
        xy, depth = project(points, cameras)
        xy, depth = xy[0], depth[0]
        inside = (xy >= 0).all(-1) & (xy < image_size).all(-1) & (depth > 0)
        pixel = xy.clamp(0, image_size - 1).long()
        seen_depth = render["depth"][0, pixel[:, 1], pixel[:, 0], 0]
        seen_opacity = opacity[pixel[:, 1], pixel[:, 0], 0]
        # Visible: in frame, on the object, not behind other geometry, and on the side facing the camera.
        to_camera = c2w[0, :3, 3].float() - points[0]
        facing = (_normals(sdf, points[0]) * to_camera).sum(-1) > 0
        visible = inside & (seen_opacity > 0.5) & (depth <= seen_depth + tolerance) & facing
        images.append({
            "name": name,
            "file": f"images/{name}.png",
            "width": image_size,
            "height": image_size,
            "c2w": c2w[0].tolist(),
            "fovy_deg": fovy_deg,
            "azimuth_deg": azimuth,
            "elevation_deg": elevation,
            "distance": distance,
            "image_offset": [float(offset[0]), float(offset[1])],
            "fill": fill,
            "light_dir": light,
            "ambient": ambient,
            "background": background,
            "keypoints": {
                key: {"xyz": [float(v) for v in keypoints[key]], "xy": [float(v) for v in xy[k]],
                      "visible": bool(visible[k])}
                for k, key in enumerate(keypoints)
            },
        })

    write_json(out / "ground_truth.json", {
        "format": FORMAT,
        "convention": CONVENTION,
        "mode": mode,
        "seed": seed,
        "canonical": "canonical.safetensors",
        "keypoint_names": list(KEYPOINT_NAMES),
        "notes": ("c2w = the camera at (azimuth_deg, elevation_deg, distance) looking at the origin, then shifted "
                  "by image_offset (world units along its own right/up axes; rotation unchanged). Keypoint xyz: "
                  "canonical-frame point on the surface of this image's instance; xy: pixel coordinates, pixel (row i, col j) "
                  "centre at (j+0.5, i+0.5); visible: in frame, not occluded and facing the camera."),
        "images": images,
    })
    return out
