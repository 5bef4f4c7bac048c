"""The viewer's scene as plain arrays: the canonical mesh, every photo's camera, image plane and alternatives.

    scene = build_scene(RegisteredRun("out/run"))
    cam = scene.cameras["img_003"]
    cam.frustum_segments(scene.depth)             # [8,2,3] world: centre -> 4 image corners, and the image border
    cam.image_plane(scene.depth)                  # (centre [3], wxyz [4], width, height) of the photo's rectangle
    cam.pixel_at(ray_origin, ray_direction, scene.depth)   # the photo pixel (x, y) a viewer click hits, or None

Cameras come from poses.json (threestudio convention: world z-up, camera axes OpenGL — x right, y up, looking down
−z; `c2w` camera-to-world; intrinsics `fl_x fl_y cx cy width height` in original pixels). The viewer (viser) uses
OpenCV camera axes (x right, y down, looking down +z), so c2w_cv = c2w_gl · diag(1, −1, −1, 1). Each photo is
drawn as the rectangle where its pixels' rays meet the plane z_cv = depth — exact for any principal point — with
the frustum's edges from the camera centre to its corners.

Flagged photos: a congeal-poses-v4 entry carries `status` (`ok`, `undecided`, `failed`) and `status_reason`; the
scene keeps both (`statuses`, `reasons`) so the viewer can mark them.

Ambiguous photos: a congeal-poses-v3 entry carries `undecided` (the collection could not choose between the photo's
readings, `registration.consensus`), which decides. Older files: `ambiguity` as true/false or an object with a boolean
"ambiguous" decides; without either, a photo is ambiguous when one of
its `alternatives` is a genuinely different pose (rotation ≥ `min_rotation_deg` away) that scores nearly as well
(score ≤ `score_ratio` × the chosen one's; lower is better). Those alternatives are drawn in another colour.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from jaxtyping import Float

from congeal.canonical.marching_tetrahedra import TriangleMesh, canonical_mesh
from congeal.run.registered_run import RegisteredRun

__all__ = ["CameraGeometry", "ViewerScene", "build_scene", "ambiguous_alternatives", "rotation_to_wxyz"]

_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def rotation_to_wxyz(rotation: Float[np.ndarray, "3 3"]) -> Float[np.ndarray, "4"]:
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method, stable for every angle)."""
    m = np.asarray(rotation, np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


@dataclass
class CameraGeometry:
    """One pinhole camera of a photo, in world coordinates."""

    name: str
    c2w: Float[np.ndarray, "4 4"]
    """camera-to-world, threestudio/OpenGL camera axes."""
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_record(cls, name: str, record: Mapping[str, Any], fallback: Optional[Mapping[str, Any]] = None
                    ) -> "CameraGeometry":
        """From a poses.json entry (or an alternative, whose missing intrinsics come from `fallback`)."""
        get = lambda key: record[key] if key in record else (fallback or {})[key]  # noqa: E731
        return cls(name, np.asarray(record["c2w"], np.float64).reshape(4, 4), float(get("fl_x")), float(get("fl_y")),
                   float(get("cx")), float(get("cy")), int(get("width")), int(get("height")))

    @property
    def c2w_cv(self) -> Float[np.ndarray, "4 4"]:
        """camera-to-world with OpenCV camera axes (what viser draws)."""
        return self.c2w @ _GL_TO_CV

    @property
    def position(self) -> Float[np.ndarray, "3"]:
        return self.c2w[:3, 3].copy()

    @property
    def wxyz(self) -> Float[np.ndarray, "4"]:
        """Orientation of the OpenCV camera frame as a quaternion."""
        return rotation_to_wxyz(self.c2w_cv[:3, :3])

    def pixels_to_world(self, xy: Float[np.ndarray, "P 2"], depth: float) -> Float[np.ndarray, "P 3"]:
        """Where the rays of original pixels (x, y) meet the plane at `depth` in front of the camera."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        local = np.stack([(xy[:, 0] - self.cx) / self.fl_x * depth, (xy[:, 1] - self.cy) / self.fl_y * depth,
                          np.full(xy.shape[0], float(depth))], -1)
        cv = self.c2w_cv
        return local @ cv[:3, :3].T + cv[:3, 3]

    def corners(self, depth: float) -> Float[np.ndarray, "4 3"]:
        """The photo's corners (0,0), (W,0), (W,H), (0,H) on the plane at `depth`."""
        w, h = float(self.width), float(self.height)
        return self.pixels_to_world(np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]), depth)

    def frustum_segments(self, depth: float) -> Float[np.ndarray, "9 2 3"]:
        """Line segments: centre -> each corner, the image border, and a tick above the top edge (which way is up)."""
        c = self.corners(depth)
        centre = np.broadcast_to(self.position, (4, 3))
        rays = np.stack([centre, c], 1)
        border = np.stack([c, np.roll(c, -1, axis=0)], 1)
        top_mid = self.pixels_to_world(np.array([[self.width / 2.0, 0.0]]), depth)[0]
        above = self.pixels_to_world(np.array([[self.width / 2.0, -0.15 * self.height]]), depth)[0]
        return np.concatenate([rays, border, np.stack([top_mid, above])[None]]).astype(np.float64)

    def image_plane(self, depth: float) -> Tuple[Float[np.ndarray, "3"], Float[np.ndarray, "4"], float, float]:
        """(centre, wxyz, width, height) of the photo's rectangle at `depth`, for viser's `add_image` (an image
        node lies in its local x-y plane, first row towards local −y: upright in the OpenCV camera frame)."""
        centre = self.pixels_to_world(np.array([[self.width / 2.0, self.height / 2.0]]), depth)[0]
        return centre, self.wxyz, self.width / self.fl_x * depth, self.height / self.fl_y * depth

    def pixel_at(self, origin: Union[Sequence[float], Float[np.ndarray, "3"]],
                 direction: Union[Sequence[float], Float[np.ndarray, "3"]], depth: float
                 ) -> Optional[Tuple[float, float]]:
        """The original pixel (x, y) where a ray crosses this photo's rectangle at `depth`, or None."""
        cv = self.c2w_cv
        rot, t = cv[:3, :3], cv[:3, 3]
        o = rot.T @ (np.asarray(origin, np.float64) - t)
        d = rot.T @ np.asarray(direction, np.float64)
        if abs(d[2]) < 1e-12:
            return None
        s = (depth - o[2]) / d[2]
        if s <= 0:
            return None
        hit = o + s * d
        x = hit[0] / depth * self.fl_x + self.cx
        y = hit[1] / depth * self.fl_y + self.cy
        slack = 1e-6 * max(self.width, self.height)  # rays through the very corners, rounded
        if -slack <= x <= self.width + slack and -slack <= y <= self.height + slack:
            return float(min(max(x, 0.0), self.width)), float(min(max(y, 0.0), self.height))
        return None

    def image_point(self, xy: Tuple[float, float], depth: float, lift: float = 0.0) -> Float[np.ndarray, "3"]:
        """World point of pixel (x, y) on the rectangle, moved `lift` (fraction of depth) towards the camera."""
        return self.pixels_to_world(np.array([xy], np.float64), depth * (1.0 - lift))[0]


def _rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _explicit_ambiguity(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict) and isinstance(value.get("ambiguous"), bool):
        return value["ambiguous"]
    return None


def ambiguous_alternatives(record: Mapping[str, Any], min_rotation_deg: float = 10.0, score_ratio: float = 1.25
                           ) -> List[Mapping[str, Any]]:
    """The alternatives of an ambiguous photo worth drawing ([] when the photo is not ambiguous)."""
    alternatives = [a for a in record.get("alternatives") or [] if isinstance(a, dict) and "c2w" in a]
    chosen = np.asarray(record["c2w"], np.float64)
    distinct = [a for a in alternatives if _rotation_deg(chosen, np.asarray(a["c2w"], np.float64)) >= min_rotation_deg]
    if isinstance(record.get("undecided"), bool):
        explicit: Optional[bool] = record["undecided"]
    else:
        explicit = _explicit_ambiguity(record.get("ambiguity")) if "ambiguity" in record else None
    if explicit is not None:
        return (distinct or alternatives) if explicit else []
    score = record.get("score")
    if isinstance(score, (int, float)) and math.isfinite(score):
        distinct = [a for a in distinct if isinstance(a.get("score"), (int, float))
                    and a["score"] <= score_ratio * score + 1e-12]
    return distinct


@dataclass
class ViewerScene:
    """Everything `congeal view` draws."""

    mesh: TriangleMesh
    cameras: Dict[str, CameraGeometry]
    """Each photo's chosen camera, in poses.json order."""
    alternatives: Dict[str, List[CameraGeometry]] = field(default_factory=dict)
    """Ambiguous photos' alternative cameras."""
    all_alternatives: Dict[str, List[CameraGeometry]] = field(default_factory=dict)
    """Every photo's alternatives (shown on request)."""
    depth: float = 1.0
    """Distance from each camera to its image rectangle."""
    statuses: Dict[str, str] = field(default_factory=dict)
    """Each photo's status from poses.json (`ok`, `undecided`, `failed`; older files: `ok`)."""
    reasons: Dict[str, str] = field(default_factory=dict)
    """Why a flagged photo is flagged (poses.json `status_reason`)."""

    def view_position(self) -> Float[np.ndarray, "3"]:
        """A camera position that sees the shape and every frustum."""
        positions = np.stack([c.position for c in self.cameras.values()])
        reach = float(np.median(np.linalg.norm(positions, axis=1))) if len(positions) else 3.0
        direction = np.array([1.0, -1.0, 0.6])
        return 1.9 * reach * direction / np.linalg.norm(direction)


def build_scene(run: RegisteredRun, max_mesh_resolution: int = 96, depth_fraction: float = 0.35,
                min_rotation_deg: float = 10.0, score_ratio: float = 1.25) -> ViewerScene:
    """The scene of a run.

    Args:
        run: the run.
        max_mesh_resolution: the canonical grid is pooled down to at most this many cells per side for the mesh.
        depth_fraction: image rectangles sit at this fraction of the median camera distance.
        min_rotation_deg, score_ratio: the ambiguity rule (module docstring).
    """
    mesh = canonical_mesh(run.canonical(), max_resolution=max_mesh_resolution)
    cameras: Dict[str, CameraGeometry] = {}
    alternatives: Dict[str, List[CameraGeometry]] = {}
    every: Dict[str, List[CameraGeometry]] = {}
    for name in run.names:
        record = run.camera(name)
        cameras[name] = CameraGeometry.from_record(name, record)
        every[name] = [CameraGeometry.from_record(f"{name}#{i}", a, record)
                       for i, a in enumerate(record.get("alternatives") or []) if isinstance(a, dict) and "c2w" in a]
        chosen = ambiguous_alternatives(record, min_rotation_deg, score_ratio)
        if chosen:
            alternatives[name] = [CameraGeometry.from_record(f"{name}#{i}", a, record) for i, a in enumerate(chosen)]
    distance = float(np.median([np.linalg.norm(c.position) for c in cameras.values()]))
    statuses = {name: str(run.camera(name).get("status", "ok")) for name in run.names}
    reasons = {name: str(run.camera(name).get("status_reason", "")) for name in run.names
               if statuses[name] != "ok"}
    return ViewerScene(mesh, cameras, alternatives, every, depth=depth_fraction * max(distance, 1e-3),
                       statuses=statuses, reasons=reasons)
