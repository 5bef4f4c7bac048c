"""The chair family: seat, back panel with a top rail, four legs and one armrest on its left.

    parts = chair_parts()                                    # the canonical chair (faces +x, z up)
    parts = chair_parts(np.random.default_rng(0), 0.3)       # one deformed instance, sizes ±30 %
    chair_keypoints(parts)                                   # {name: [3]} surface points, CHAIR_KEYPOINT_NAMES

Geometry: a box seat, a box back panel along the seat's rear edge topped by a capsule rail, four capsule legs
splayed slightly outward, and on the left (+y) side only an armrest (a capsule along x on a front support).
Colours: wood seat, blue panel, off-white rail, every leg its own colour, cyan armrest. Symmetry: the shape
without the armrest is mirror-symmetric left-right and nearly so front-back; the armrest and the four leg colours
break both, so no two poses look alike under colour features.

Deformation of strength s (default 0.2): seat length and width × U(1 ± 0.75 s) each, seat thickness, leg length,
leg radius, back height and armrest height × U(1 ± s) each (shared by the four legs), every leg's foot moves by
N(0, 0.1 s) per horizontal axis, every colour by N(0, 0.25 s). Parts stay attached: legs at the seat's corners,
the back on its rear edge, the armrest on its left edge.
"""
from typing import Dict, List, Optional

import numpy as np

from congeal.synthetic.families import Family, PartSubject, Variation, surface_keypoints
from congeal.synthetic.generator import DEFORMATION_STRENGTH, Part

__all__ = ["CHAIR", "CHAIR_KEYPOINT_NAMES", "chair_parts", "chair_keypoints"]

CHAIR_KEYPOINT_NAMES = (
    "seat_front_left", "seat_front_right", "seat_top", "back_top_left", "back_top_right", "arm_front",
    "foot_fl", "foot_fr", "foot_bl", "foot_br",
)
_COLOURS = {
    "seat": (0.72, 0.45, 0.2), "back": (0.2, 0.42, 0.8), "rail": (0.95, 0.93, 0.88),
    "leg_fl": (0.85, 0.15, 0.15), "leg_fr": (0.15, 0.65, 0.2), "leg_bl": (0.55, 0.25, 0.7),
    "leg_br": (0.95, 0.8, 0.1), "arm": (0.1, 0.78, 0.78), "arm_post": (0.05, 0.5, 0.5),
}
_LEGS = {"fl": (1, 1), "fr": (1, -1), "bl": (-1, 1), "br": (-1, -1)}  # (sign x, sign y); +y is the chair's left


def chair_parts(rng: Optional[np.random.Generator] = None, strength: float = DEFORMATION_STRENGTH) -> List[Part]:
    """The chair's parts; with `rng`, one deformed instance of strength `strength` (see the module docstring)."""
    v = Variation(rng, strength)
    hx, hy = 0.3 * v.scale(0.75), 0.28 * v.scale(0.75)  # seat half-length (x) and half-width (y)
    hz = 0.04 * v.scale()
    leg_length, leg_radius = 0.5 * v.scale(), 0.032 * v.scale()
    back_half = 0.22 * v.scale()
    arm_height = 0.2 * v.scale()
    z0 = -0.08  # seat centre height
    seat_top = z0 + hz
    parts = [Part("seat", "box", (0.0, 0.0, z0), (0.0, 0.0, 0.0), (hx, hy, hz), v.colour(_COLOURS["seat"]))]
    for name, (sx, sy) in _LEGS.items():
        top = np.array([sx * (hx - 0.05), sy * (hy - 0.05), z0])
        foot = np.array([sx * (hx - 0.03), sy * (hy - 0.03), z0 - leg_length])
        foot[:2] += v.shift(0.1, 2)
        parts.append(Part(f"leg_{name}", "capsule", tuple(top.tolist()), tuple(foot.tolist()), (leg_radius, 0.0, 0.0),
                          v.colour(_COLOURS[f"leg_{name}"])))
    xb = -(hx - 0.03)  # back panel's x
    parts.append(Part("back", "box", (xb, 0.0, seat_top + back_half), (0.0, 0.0, 0.0), (0.025, hy - 0.03, back_half),
                      v.colour(_COLOURS["back"])))
    rail_z = seat_top + 2.0 * back_half + 0.02
    parts.append(Part("rail", "capsule", (xb, -(hy - 0.01), rail_z), (xb, hy - 0.01, rail_z), (0.035, 0.0, 0.0),
                      v.colour(_COLOURS["rail"])))
    arm_z = seat_top + arm_height
    ya, xf = hy - 0.01, hx - 0.05
    parts.append(Part("arm", "capsule", (xb, ya, arm_z), (xf, ya, arm_z), (0.03, 0.0, 0.0), v.colour(_COLOURS["arm"])))
    parts.append(Part("arm_post", "capsule", (xf, ya, z0), (xf, ya, arm_z), (0.025, 0.0, 0.0),
                      v.colour(_COLOURS["arm_post"])))
    return parts


def chair_keypoints(parts: List[Part]) -> Dict[str, np.ndarray]:
    """Named surface points {name: [3]} (CHAIR_KEYPOINT_NAMES): rays from inside a part along a fixed direction."""
    by = {part.name: part for part in parts}
    seat = by["seat"]
    (cx, _, cz), (hx, hy, _) = seat.a, seat.size
    rail_a, rail_b = np.asarray(by["rail"].a), np.asarray(by["rail"].b)
    anchors = {
        "seat_front_left": ((cx + hx - 0.08, hy - 0.09, cz), (1.0, 0.0, 0.0)),
        "seat_front_right": ((cx + hx - 0.08, -(hy - 0.09), cz), (1.0, 0.0, 0.0)),
        "seat_top": ((cx + 0.05, 0.0, cz), (0.0, 0.0, 1.0)),
        "back_top_left": (rail_b + np.array([0.0, -0.05, 0.0]), (0.0, 0.0, 1.0)),
        "back_top_right": (rail_a + np.array([0.0, 0.05, 0.0]), (0.0, 0.0, 1.0)),
        "arm_front": (np.asarray(by["arm"].b), (1.0, 0.0, 0.0)),
    }
    for name, (sx, sy) in _LEGS.items():
        anchors[f"foot_{name}"] = (np.asarray(by[f"leg_{name}"].b), (float(sx), float(sy), -0.5))
    out = surface_keypoints(parts, anchors)
    return {name: out[name] for name in CHAIR_KEYPOINT_NAMES}


CHAIR = Family(
    name="chair",
    keypoint_names=CHAIR_KEYPOINT_NAMES,
    description="box seat, box back panel with a top rail, four splayed legs, one armrest on its left",
    symmetry="none under colour: the shape is nearly mirror-symmetric (left-right, and front-back without the back "
             "panel) but the single left armrest and four differently coloured legs break it",
    mean=lambda: PartSubject(tuple(chair_parts()), chair_keypoints),
    deform=lambda rng, strength: PartSubject(tuple(chair_parts(rng, strength)), chair_keypoints),
)
