"""How a synthetic photo frames its object: centred square photos, or off-centre photos from a turned camera.

    view = sample_view(FRAMINGS["offcentre43"], rng, bound=0.9, long_side=192)
    view.cameras                      # Cameras: a real pinhole camera, principal point at the photo centre
    view.width, view.height           # 192, 144
    view.record                       # ground-truth fields: azimuth_deg, ..., off_axis_deg, object_xy

Every framing gives a real pinhole camera: principal point at the photo's centre, square pixels, `fovy` spanning
the photo's height, a 6-DoF pose. `centred` is `congeal synth`'s framing, draw for draw (square photos; a camera
on the sphere around the object looking at it, then shifted up to 8 % of the half-frame within its own image plane,
rotation unchanged). `offcentre43` / `offcentre34` are 4:3 landscape / 3:4 portrait photos whose camera is TURNED
away from the object: the camera sits on the sphere as before but its optical axis is rotated by an off-axis
angle θ ∈ [3°, 12°] about an axis perpendicular to it, in a random direction, so the object appears off-centre
by ≈ f·tan θ pixels — what a real, uncentred photo is. Their FoV is a phone camera's (35°–55° across the short
side of a 4:3 photo, 40°–60° across the long side of a 3:4 one). The object's bounding sphere is kept inside the
frame (2 % margin) by redrawing the direction, then shrinking the fill (down to 0.3), then turning the camera 1° less.
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.errors import InputError
from congeal.geometry.cameras import Cameras, c2w_from_spherical, focal_from_fovy, project, so3_exp
from congeal.geometry.candidates import distance_for_fill
from congeal.synthetic.generator import AZIMUTH_RANGE, ELEVATION_RANGE, FILL_RANGE, FOVY_RANGE, OFFSET_RANGE

__all__ = ["Framing", "FRAMINGS", "View", "sample_view", "frame_size", "off_axis_deg"]

MARGIN = 0.02  # of the frame height: the bounding sphere stays this far inside every edge
MIN_FILL = 0.3  # an off-centre object is shrunk at most to this fill before its off-axis angle is reduced
DIRECTION_TRIES = 64


@dataclass(frozen=True)
class Framing:
    """A photo shape and how the camera points at the object."""

    name: str
    aspect: float
    """width / height."""
    off_axis_deg: Optional[Tuple[float, float]]
    """Range of the angle between the optical axis and the object's centre; None: the camera looks at it."""
    fovy_deg: Tuple[float, float]
    """Range of the vertical field of view (degrees across the photo's height)."""
    fill: Tuple[float, float]
    """Range of the bounding sphere's projected height / frame height."""
    offset: float
    """In-plane camera shift, a fraction of the frame half-height (centred framing only)."""


FRAMINGS: Dict[str, Framing] = {
    "centred": Framing("centred", 1.0, None, FOVY_RANGE, FILL_RANGE, OFFSET_RANGE),
    # A phone's main camera: ~50° across the short side of a 4:3 photo, ~65° across the long side.
    "offcentre43": Framing("offcentre43", 4.0 / 3.0, (3.0, 12.0), (35.0, 55.0), (0.5, 0.7), 0.0),
    "offcentre34": Framing("offcentre34", 3.0 / 4.0, (3.0, 12.0), (40.0, 60.0), (0.4, 0.55), 0.0),
    # Photos from the web: 4:3, the object small (a third of the frame) to larger than it, anywhere in the frame, a
    # little cut off at an edge now and then (the in-plane shift moves the object, the rotation is unchanged)
    "wild43": Framing("wild43", 4.0 / 3.0, None, (35.0, 55.0), (0.3, 1.05), 0.3),
}


def frame_size(framing: Framing, long_side: int) -> Tuple[int, int]:
    """(height, width) of a photo whose longer side is `long_side` pixels."""
    if framing.aspect >= 1.0:
        return int(round(long_side / framing.aspect)), int(long_side)
    return int(long_side), int(round(long_side * framing.aspect))


@dataclass
class View:
    """One sampled photo camera."""

    c2w: Float[Tensor, "1 4 4"]
    fovy: Float[Tensor, "1"]
    """Vertical field of view in radians (the float32 value the photo is rendered with)."""
    fovy_deg: float
    height: int
    width: int
    record: Dict[str, Any]
    """JSON-able ground-truth fields of the pose (see `sample_view`)."""

    @property
    def cameras(self) -> Cameras:
        return Cameras.centred(self.c2w, self.fovy, self.height, self.width)


def off_axis_deg(c2w: Float[Tensor, "B 4 4"], point: Optional[Float[Tensor, "3"]] = None) -> Float[Tensor, "B"]:
    """Angle in degrees between each camera's optical axis and the direction to `point` (default the origin)."""
    target = torch.zeros(3, dtype=c2w.dtype) if point is None else point.to(c2w.dtype)
    to_point = torch.nn.functional.normalize(target - c2w[:, :3, 3], dim=-1)
    forward = -c2w[:, :3, 2]
    return torch.rad2deg(torch.acos((to_point * forward).sum(-1).clamp(-1.0, 1.0)))


def _turned(look: Tensor, theta_deg: float, direction_deg: float) -> Tensor:
    """`look` [1,4,4] with its rotation turned by θ about a camera-frame axis ⊥ the optical axis, such that the
    object it looked at moves towards `direction_deg` in the image (0 = right, 90 = up)."""
    phi = math.radians(direction_deg)
    axis = torch.tensor([-math.sin(phi), math.cos(phi), 0.0], dtype=torch.float64)
    turn = so3_exp(axis * math.radians(theta_deg)).to(look.dtype)
    out = look.clone()
    out[0, :3, :3] = look[0, :3, :3] @ turn
    return out


def _sphere_fits(c2w: Tensor, fovy: Tensor, bound: float, height: int, width: int) -> bool:
    """Does the silhouette of the origin-centred sphere of radius `bound` lie inside the frame (with MARGIN)?"""
    centre = c2w[0, :3, 3].double()
    distance = float(centre.norm())
    if distance <= bound:
        return False
    w = -centre / distance  # unit direction camera → origin
    helper = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if abs(float(w @ helper)) > 0.9:
        helper = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e1 = torch.nn.functional.normalize(torch.linalg.cross(w, helper), dim=0)
    e2 = torch.linalg.cross(w, e1)
    alpha = math.asin(bound / distance)
    t = torch.linspace(0.0, 2.0 * math.pi, 73, dtype=torch.float64)[:-1, None]
    rim = math.cos(alpha) * w + math.sin(alpha) * (torch.cos(t) * e1 + torch.sin(t) * e2)  # silhouette cone
    points = centre + rim * distance  # any point along each generator projects to the same pixel
    cameras = Cameras.centred(c2w.double(), fovy.double(), height, width)
    xy, depth = project(points[None], cameras)
    margin = MARGIN * height
    inside = ((xy[0, :, 0] >= margin) & (xy[0, :, 0] <= width - margin) & (xy[0, :, 1] >= margin)
              & (xy[0, :, 1] <= height - margin) & (depth[0] > 0))
    return bool(inside.all())


def sample_view(framing: Framing, rng: np.random.Generator, bound: float, long_side: int) -> View:
    """Draw one photo camera for an object inside the origin-centred sphere of radius `bound`.

    Draws, in order: azimuth, elevation, fovy, fill (as `congeal synth`), then for `centred` the in-plane offset (2
    draws), for off-centre framings the off-axis angle and then directions until the object fits.

    Returns:
        View; `record` holds azimuth_deg / elevation_deg / distance (the camera centre on its sphere), fill,
        image_offset (world units along the camera's right/up axes, centred framing; [0, 0] otherwise),
        off_axis_deg (optical axis vs the object's centre, measured), off_axis_direction_deg (where the object sits,
        0 = right, 90 = up; null when centred), object_xy (the object centre's pixel) and principal_point.
    """
    if long_side < 8:
        raise InputError(None, f"photo side must be ≥ 8 pixels (got {long_side})", "pass a larger image size")
    height, width = frame_size(framing, long_side)
    azimuth = float(rng.uniform(*AZIMUTH_RANGE))
    elevation = float(rng.uniform(*ELEVATION_RANGE))
    fovy_deg = float(rng.uniform(*framing.fovy_deg))
    fill = float(rng.uniform(*framing.fill))
    fovy = torch.tensor([math.radians(fovy_deg)])
    distance = float(distance_for_fill(bound, fovy, fill))
    c2w = c2w_from_spherical(torch.tensor([azimuth]), torch.tensor([elevation]), torch.tensor([distance]))
    offset = np.zeros(2)
    direction: Optional[float] = None
    if framing.off_axis_deg is None:
        # Shift the camera within its own image plane: the object moves off-centre, the rotation is unchanged.
        half_height = distance * math.tan(0.5 * fovy.item())
        offset = rng.uniform(-framing.offset, framing.offset, size=2) * half_height
        c2w[0, :3, 3] += float(offset[0]) * c2w[0, :3, 0] + float(offset[1]) * c2w[0, :3, 1]
    else:
        theta = float(rng.uniform(*framing.off_axis_deg))
        look = c2w
        while True:
            for _ in range(DIRECTION_TRIES):
                direction = float(rng.uniform(0.0, 360.0))
                c2w = _turned(look, theta, direction)
                if _sphere_fits(c2w, fovy, bound, height, width):
                    break
            else:  # no direction fits: back the camera off (down to MIN_FILL), then turn it less
                if fill * 0.9 >= MIN_FILL:
                    fill *= 0.9
                    distance = float(distance_for_fill(bound, fovy, fill))
                    look = c2w_from_spherical(torch.tensor([azimuth]), torch.tensor([elevation]),
                                              torch.tensor([distance]))
                else:
                    theta = max(0.0, theta - 1.0)
                continue
            break
    cameras = Cameras.centred(c2w, fovy, height, width)
    object_xy, _ = project(torch.zeros(1, 1, 3), cameras)
    record = {
        "azimuth_deg": azimuth,
        "elevation_deg": elevation,
        "distance": distance,
        "image_offset": [float(offset[0]), float(offset[1])],
        "fill": fill,
        "off_axis_deg": float(off_axis_deg(c2w.double())[0]),
        "off_axis_direction_deg": direction,
        "object_xy": [float(v) for v in object_xy[0, 0]],
        "principal_point": [0.5 * width, 0.5 * height],
        "focal_px": float(focal_from_fovy(fovy.double(), height)[0]),
    }
    return View(c2w, fovy, fovy_deg, height, width, record)
