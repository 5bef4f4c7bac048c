"""The teapot family: a body of revolution with a lid and knob, a spout at the front, a handle at the back.

    parts = teapot_parts()                                   # the canonical teapot (spout along +x, z up)
    parts = teapot_parts(np.random.default_rng(0), 0.3)      # one deformed instance, sizes ±30 %
    teapot_keypoints(parts)                                  # {name: [3]} surface points, TEAPOT_KEYPOINT_NAMES

Geometry: an ellipsoid body and foot ring (bodies of revolution about z), a flat lid and a round knob on top, a
capsule spout rising forward (+x) and a three-capsule handle at the back (−x), and a small raised badge on the
body's left (+y) side. Colours: teal body, dark foot, cream lid, red knob, yellow spout, purple handle, orange
badge. Symmetry: without the badge the shape is mirror-symmetric about the xz-plane (spout and handle lie in it),
so a view and its mirror view differ only by the image flip; the badge (and nothing else) tells the left side from
the right. Spout and handle break the rotational symmetry of the body.

Deformation of strength s (default 0.2): body radius × U(1 ± 0.75 s) (it stays round), body height, lid, knob,
spout length, spout and handle thickness, handle size × U(1 ± s) each; the spout's tip moves by N(0, 0.15 s) in x
and z; every colour moves by N(0, 0.25 s). Parts stay attached to the body.
"""
from typing import Dict, List, Optional

import numpy as np

from congeal.synthetic.families import Family, PartSubject, Variation, surface_keypoints
from congeal.synthetic.generator import DEFORMATION_STRENGTH, Part

__all__ = ["TEAPOT", "TEAPOT_KEYPOINT_NAMES", "teapot_parts", "teapot_keypoints"]

TEAPOT_KEYPOINT_NAMES = (
    "spout_tip", "knob_top", "lid_front", "handle_top", "handle_bottom", "badge", "body_right", "foot_front",
)
_COLOURS = {
    "body": (0.18, 0.55, 0.6), "foot": (0.15, 0.15, 0.18), "lid": (0.93, 0.88, 0.75), "knob": (0.85, 0.15, 0.15),
    "spout": (0.95, 0.8, 0.15), "handle": (0.5, 0.2, 0.6), "badge": (0.98, 0.5, 0.08),
}


def teapot_parts(rng: Optional[np.random.Generator] = None, strength: float = DEFORMATION_STRENGTH) -> List[Part]:
    """The teapot's parts; with `rng`, one deformed instance of strength `strength` (see the module docstring)."""
    v = Variation(rng, strength)
    radius = 0.4 * v.scale(0.75)
    half_height = 0.28 * v.scale()
    zc = -0.1  # body centre height
    top, bottom = zc + half_height, zc - half_height
    parts = [
        Part("body", "ellipsoid", (0.0, 0.0, zc), (0.0, 0.0, 0.0), (radius, radius, half_height),
             v.colour(_COLOURS["body"])),
        Part("foot", "ellipsoid", (0.0, 0.0, bottom + 0.02), (0.0, 0.0, 0.0), (0.7 * radius, 0.7 * radius, 0.05),
             v.colour(_COLOURS["foot"])),
    ]
    lid = 0.6 * radius * v.scale()
    parts.append(Part("lid", "ellipsoid", (0.0, 0.0, top - 0.02), (0.0, 0.0, 0.0), (lid, lid, 0.07),
                      v.colour(_COLOURS["lid"])))
    knob = 0.055 * v.scale()
    parts.append(Part("knob", "ellipsoid", (0.0, 0.0, top + 0.05 + knob), (0.0, 0.0, 0.0), (knob, knob, knob),
                      v.colour(_COLOURS["knob"])))
    base = np.array([0.75 * radius, 0.0, zc - 0.3 * half_height])
    tip = base + np.array([0.3, 0.0, 0.36]) * v.scale() + np.array([1.0, 0.0, 1.0]) * v.shift(0.15, 3)
    parts.append(Part("spout", "capsule", tuple(base.tolist()), tuple(tip.tolist()), (0.06 * v.scale(), 0.0, 0.0),
                      v.colour(_COLOURS["spout"])))
    reach, thickness = 0.26 * v.scale(), 0.038 * v.scale()
    handle = v.colour(_COLOURS["handle"])
    upper = (-0.8 * radius, 0.0, zc + 0.55 * half_height)
    lower = (-0.8 * radius, 0.0, zc - 0.55 * half_height)
    upper_out = (-0.8 * radius - reach, 0.0, upper[2] - 0.03)
    lower_out = (-0.8 * radius - reach + 0.02, 0.0, lower[2])
    parts += [
        Part("handle_upper", "capsule", upper, upper_out, (thickness, 0.0, 0.0), handle),
        Part("handle_back", "capsule", upper_out, lower_out, (thickness, 0.0, 0.0), handle),
        Part("handle_lower", "capsule", lower_out, lower, (thickness, 0.0, 0.0), handle),
    ]
    parts.append(Part("badge", "ellipsoid", (0.05 * radius, 0.97 * radius, zc + 0.1 * half_height), (0.0, 0.0, 0.0),
                      (0.12, 0.04, 0.09), v.colour(_COLOURS["badge"])))
    return parts


def teapot_keypoints(parts: List[Part]) -> Dict[str, np.ndarray]:
    """Named surface points {name: [3]} (TEAPOT_KEYPOINT_NAMES): rays from inside a part along a fixed direction."""
    by = {part.name: part for part in parts}
    spout_a, spout_b = np.asarray(by["spout"].a), np.asarray(by["spout"].b)
    body = np.asarray(by["body"].a)
    lid = np.asarray(by["lid"].a)
    anchors = {
        "spout_tip": (spout_b, spout_b - spout_a),
        "knob_top": (np.asarray(by["knob"].a), (0.0, 0.0, 1.0)),
        "lid_front": (lid, (1.0, 0.0, 0.35)),
        "handle_top": (np.asarray(by["handle_upper"].b), (-1.0, 0.0, 1.0)),
        "handle_bottom": (np.asarray(by["handle_back"].b), (-1.0, 0.0, -1.0)),
        "badge": (np.asarray(by["badge"].a), (0.0, 1.0, 0.0)),
        "body_right": (body, (0.0, -1.0, 0.0)),
        "foot_front": (np.asarray(by["foot"].a), (1.0, 0.0, -0.35)),
    }
    out = surface_keypoints(parts, anchors)
    return {name: out[name] for name in TEAPOT_KEYPOINT_NAMES}


TEAPOT = Family(
    name="teapot",
    keypoint_names=TEAPOT_KEYPOINT_NAMES,
    description="round body with foot, lid and knob, spout at the front, three-part handle at the back, one badge "
                "on the left side",
    symmetry="nearly mirror-symmetric about the xz-plane (spout and handle lie in it): only the small badge on the "
             "left side tells a view from its mirror view (1-2 % of the pixels differ); a view from the right, "
             "where the badge is hidden, is the mirror image of a view from the left without the badge",
    mean=lambda: PartSubject(tuple(teapot_parts()), teapot_keypoints),
    deform=lambda rng, strength: PartSubject(tuple(teapot_parts(rng, strength)), teapot_keypoints),
)
