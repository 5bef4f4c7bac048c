"""Cameras in threestudio's convention: spherical poses, the candidate grid, rays, projection, rotations.

    c2w = c2w_from_spherical(torch.tensor([30.0]), torch.tensor([15.0]), torch.tensor([3.0]))  # [1,4,4]
    cams = candidate_cameras(CandidateGridConfig(), radius=1.0)   # 768 candidates: c2w [768,4,4], fovy [768]
    origins, directions = get_rays(cams["c2w"][:2], cams["fovy"][:2], 64, 64)                 # [2,64,64,3]

Convention (docs/internals.md): world z-up; camera axes OpenGL (x right, y up, looking down -z); `c2w` maps
camera to world. A camera at azimuth `a`, elevation `e`, distance `d` sits at `d·(cos e cos a, cos e sin a, sin e)`
and looks at the origin with up = +z, exactly as threestudio's `RandomCameraDataModule` builds it. Intrinsics: a
square pixel, the principal point at the image centre, `fovy` (radians) spans the image height. Pixel (row i,
col j) has its centre at continuous coordinate `(x, y) = (j + 0.5, i + 0.5)`, x right, y down.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "c2w_from_spherical",
    "look_at",
    "CandidateGridConfig",
    "candidate_cameras",
    "candidate_index",
    "distance_for_fill",
    "focal_from_fovy",
    "get_rays",
    "project",
    "rotation_angle_deg",
    "so3_exp",
    "CONVENTION",
]

#: The convention string written into every file that stores cameras.
CONVENTION = (
    "threestudio: world z-up; camera OpenGL (x right, y up, looks down -z); c2w camera-to-world; "
    "camera position = distance*(cos(el)cos(az), cos(el)sin(az), sin(el)); fovy spans the image height; "
    "principal point at the image centre; pixel (row i, col j) centre at (j+0.5, i+0.5)"
)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Camera-to-world matrices of cameras at `eye` looking at `target` (OpenGL camera axes).

    Args:
        eye: [B,3] camera positions.
        target: [B,3] points the cameras look at.
        up: [B,3] approximate up directions (must not be parallel to the viewing direction).
    Returns:
        c2w [B,4,4]: columns are camera x (right), y (up), z (backwards = -viewing direction), position.
    """
    forward = F.normalize(target - eye, dim=-1)
    right = F.normalize(torch.cross(forward, up.to(forward), dim=-1), dim=-1)
    true_up = F.normalize(torch.cross(right, forward, dim=-1), dim=-1)
    rotation = torch.stack([right, true_up, -forward], dim=-1)  # [B,3,3]
    top = torch.cat([rotation, eye[..., :, None]], dim=-1)  # [B,3,4]
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def spherical_to_position(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor) -> Tensor:
    """Camera positions `distance·(cos e cos a, cos e sin a, sin e)`: [B] each -> [B,3]."""
    azimuth = torch.deg2rad(azimuth_deg)
    elevation = torch.deg2rad(elevation_deg)
    return torch.stack(
        [
            distance * torch.cos(elevation) * torch.cos(azimuth),
            distance * torch.cos(elevation) * torch.sin(azimuth),
            distance * torch.sin(elevation),
        ],
        dim=-1,
    )


def c2w_from_spherical(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor) -> Tensor:
    """Cameras on a sphere looking at the origin with up = +z (threestudio's construction).

    Args:
        azimuth_deg: [B] degrees, measured from +x towards +y.
        elevation_deg: [B] degrees above the xy-plane, in (-90, 90).
        distance: [B] distance from the origin.
    Returns:
        c2w [B,4,4].
    """
    values = [torch.as_tensor(v) for v in (azimuth_deg, elevation_deg, distance)]
    dtype = next((v.dtype for v in values if v.is_floating_point()), torch.get_default_dtype())
    azimuth_deg, elevation_deg, distance = torch.broadcast_tensors(
        *[v if v.is_floating_point() else v.to(dtype) for v in values]
    )
    eye = spherical_to_position(azimuth_deg, elevation_deg, distance)
    up = torch.zeros_like(eye)
    up[..., 2] = 1.0
    return look_at(eye, torch.zeros_like(eye), up)


@dataclass
class CandidateGridConfig:
    """The pose-search grid: every combination of FoV × elevation × azimuth (3 × 16 × 16 = 768 by default).

    Defaults are chosen for internet photos of objects:
      * `fovy_deg` 25°/40°/55°: vertical FoVs from a mild telephoto / product shot (25°) through a typical
        cropped phone photo (40°) to a phone's wide main camera in landscape (≈55°). The search only needs the
        right perspective strength; refinement then adjusts FoV continuously.
      * `elevation_range_deg` −15°…60°: people photograph objects from slightly below to well above, rarely from
        straight overhead or underneath; 16 values give 5° steps.
      * azimuth covers the full circle (`n_azimuth` steps of 360°/n, starting at `azimuth_start_deg`).
      * `fill` 0.8: the bounding sphere spans 80% of the frame's height, so nothing is clipped at any FoV while
        the object keeps most of the render's pixels.
    """

    fovy_deg: Tuple[float, ...] = (25.0, 40.0, 55.0)
    n_azimuth: int = 16
    n_elevation: int = 16
    elevation_range_deg: Tuple[float, float] = (-15.0, 60.0)
    fill: float = 0.8
    azimuth_start_deg: float = 0.0

    @property
    def size(self) -> int:
        """Number of candidates K."""
        return len(self.fovy_deg) * self.n_azimuth * self.n_elevation


def focal_from_fovy(fovy: Tensor, height: int) -> Tensor:
    """Focal length in pixels of a camera whose vertical FoV `fovy` (radians) spans `height` pixels."""
    return 0.5 * height / torch.tan(0.5 * fovy)


def distance_for_fill(radius: float, fovy: Tensor, fill: float) -> Tensor:
    """Distance at which a sphere of `radius` at the origin spans `fill` of the frame height.

    The sphere's silhouette has angular half-size asin(radius/d); its projected half-height is f·tan of that.
    Setting f·tan(asin(radius/d)) = fill·H/2 gives d = radius / sin(atan(fill·tan(fovy/2))).
    """
    half = torch.atan(fill * torch.tan(0.5 * fovy))
    return radius / torch.sin(half)


def candidate_cameras(cfg: CandidateGridConfig, radius: float, device=None) -> Dict[str, Tensor]:
    """All candidate cameras of the search grid, looking at the origin.

    Candidate k = (f · n_elevation + e) · n_azimuth + a, i.e. `reshape(n_fov, n_elevation, n_azimuth)` gives the
    FoV × elevation × azimuth table (score maps use this).

    Args:
        cfg: the grid.
        radius: radius of an origin-centred sphere that contains the object (e.g. `Canonical.bounding_radius()`).
        device: where the tensors go.
    Returns:
        dict with c2w [K,4,4], fovy [K] (radians), fovy_deg [K], azimuth_deg [K], elevation_deg [K], distance [K]
        (float32). The distance is chosen per FoV so the bounding sphere fills `cfg.fill` of the frame height.
    """
    fovy_deg = torch.tensor(cfg.fovy_deg, dtype=torch.float32, device=device)
    azimuth = cfg.azimuth_start_deg + torch.arange(cfg.n_azimuth, dtype=torch.float32, device=device) * (
        360.0 / cfg.n_azimuth
    )
    lo, hi = cfg.elevation_range_deg
    elevation = torch.linspace(lo, hi, cfg.n_elevation, dtype=torch.float32, device=device)
    f_grid, e_grid, a_grid = torch.meshgrid(fovy_deg, elevation, azimuth, indexing="ij")
    f_flat, e_flat, a_flat = f_grid.reshape(-1), e_grid.reshape(-1), a_grid.reshape(-1)
    fovy = torch.deg2rad(f_flat)
    distance = distance_for_fill(radius, fovy, cfg.fill)
    return {
        "c2w": c2w_from_spherical(a_flat, e_flat, distance),
        "fovy": fovy,
        "fovy_deg": f_flat,
        "azimuth_deg": a_flat,
        "elevation_deg": e_flat,
        "distance": distance,
    }


def candidate_index(cfg: CandidateGridConfig, fov_index: Tensor, elevation_index: Tensor, azimuth_index: Tensor) -> Tensor:
    """Flat candidate index of (FoV, elevation, azimuth) grid indices (inverse of the reshape documented above)."""
    return (fov_index * cfg.n_elevation + elevation_index) * cfg.n_azimuth + azimuth_index


def _camera_directions(fovy: Tensor, height: int, width: int) -> Tensor:
    """Unit-depth ray directions in camera space through pixel centres: [B] -> [B,H,W,3] with z = -1."""
    focal = focal_from_fovy(fovy, height)  # [B]
    xs = torch.arange(width, dtype=fovy.dtype, device=fovy.device) + 0.5 - 0.5 * width
    ys = torch.arange(height, dtype=fovy.dtype, device=fovy.device) + 0.5 - 0.5 * height
    x = xs[None, None, :] / focal[:, None, None]  # [B,1,W]
    y = -ys[None, :, None] / focal[:, None, None]  # [B,H,1] image y points down, camera y up
    x, y = torch.broadcast_tensors(x, y)
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def get_rays(c2w: Tensor, fovy: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """World-space rays through every pixel centre.

    Args:
        c2w: [B,4,4] camera-to-world.
        fovy: [B] vertical FoV in radians.
        height, width: image size in pixels.
    Returns:
        origins [B,H,W,3], directions [B,H,W,3] (unit length). Differentiable w.r.t. c2w and fovy.
    """
    fovy = fovy.to(c2w.dtype)
    dirs_cam = _camera_directions(fovy, height, width)  # [B,H,W,3]
    rotation = c2w[:, :3, :3]
    dirs = torch.einsum("bij,bhwj->bhwi", rotation, dirs_cam)
    dirs = F.normalize(dirs, dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def project(points: Tensor, c2w: Tensor, fovy: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """Project world points into the image (pixel-centre convention, x right, y down).

    Args:
        points: [B,N,3] world points.
        c2w: [B,4,4]; fovy: [B] radians; height, width: image size.
    Returns:
        xy [B,N,2] continuous pixel coordinates; depth [B,N] distance along the viewing axis (> 0 in front).
    """
    fovy = fovy.to(c2w.dtype)
    rotation = c2w[:, :3, :3]
    local = torch.einsum("bji,bnj->bni", rotation, points - c2w[:, None, :3, 3])  # R^T (p - t)
    depth = -local[..., 2]
    focal = focal_from_fovy(fovy, height)[:, None]
    # Points at or behind the camera get a finite (meaningless) projection; callers test depth > 0.
    safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    x = focal * local[..., 0] / safe + 0.5 * width
    y = -focal * local[..., 1] / safe + 0.5 * height
    return torch.stack([x, y], dim=-1), depth


def rotation_angle_deg(R1: Tensor, R2: Tensor) -> Tensor:
    """Geodesic angle between rotations, in degrees: [...,3,3] × [...,3,3] -> [...].

    Uses atan2(|sin|, cos) of the relative rotation, accurate near 0° and 180° (acos of the trace is not).
    """
    rel = R1.transpose(-1, -2) @ R2
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) * 0.5
    axis = torch.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], dim=-1
    )
    sin = 0.5 * torch.linalg.vector_norm(axis, dim=-1)
    return torch.rad2deg(torch.atan2(sin, cos))


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices from axis-angle vectors (angle = |omega| radians): [...,3] -> [...,3,3], differentiable."""
    zero = torch.zeros_like(omega[..., 0])
    wx, wy, wz = omega.unbind(-1)
    skew = torch.stack(
        [
            torch.stack([zero, -wz, wy], dim=-1),
            torch.stack([wz, zero, -wx], dim=-1),
            torch.stack([-wy, wx, zero], dim=-1),
        ],
        dim=-2,
    )
    return torch.linalg.matrix_exp(skew)
