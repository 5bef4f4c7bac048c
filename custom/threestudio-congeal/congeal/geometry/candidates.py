"""The pose-search grid: every combination of FoV × elevation × azimuth, each camera looking at the origin.

    poses = candidate_poses(CandidateGridConfig(), radius=1.0)   # 768 candidates: poses.c2w [768,4,4], fovy [768]
    cameras = poses.cameras(128, 128)[:64]                         # the first 64 as centred 128×128 `Cameras`
    k = candidate_index(CandidateGridConfig(), torch.tensor(2), torch.tensor(7), torch.tensor(11))   # flat index

Candidate k = (f · n_elevation + e) · n_azimuth + a, i.e. `reshape(n_fov, n_elevation, n_azimuth)` gives the
FoV × elevation × azimuth table (score maps use this). Each FoV gets its own distance, chosen so that the bounding
sphere fills the same fraction of the frame.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from congeal.geometry.cameras import Cameras, c2w_from_spherical

__all__ = ["CandidateGridConfig", "CandidatePoses", "candidate_poses", "candidate_index", "distance_for_fill"]


@dataclass
class CandidateGridConfig:
    """The pose-search grid: every combination of FoV × elevation × azimuth (3 × 16 × 16 = 768 by default).

    Defaults are chosen for internet photos of objects; the search only needs the right perspective strength,
    refinement then adjusts FoV continuously.
    """

    fovy_deg: Tuple[float, ...] = (25.0, 40.0, 55.0)
    """Vertical FoVs: a mild telephoto / product shot (25°), a typical cropped phone photo (40°), a phone's wide
    main camera in landscape (≈55°)."""
    n_azimuth: int = 16
    """Azimuth steps of 360°/n covering the full circle."""
    n_elevation: int = 16
    """Elevation steps across `elevation_range_deg` (16 give 5° steps)."""
    elevation_range_deg: Tuple[float, float] = (-15.0, 60.0)
    """People photograph objects from slightly below to well above, rarely from straight overhead or underneath."""
    fill: float = 0.8
    """The bounding sphere spans this fraction of the frame's height: nothing is clipped at any FoV while the object
    keeps most of the render's pixels."""
    azimuth_start_deg: float = 0.0
    """Azimuth of the first step, measured from +x towards +y."""

    @property
    def size(self) -> int:
        """Number of candidates K."""
        return len(self.fovy_deg) * self.n_azimuth * self.n_elevation


def distance_for_fill(radius: float, fovy: Float[Tensor, "*batch"], fill: float) -> Float[Tensor, "*batch"]:
    """Distance at which a sphere of `radius` at the origin spans `fill` of the frame height.

    The sphere's silhouette has angular half-size asin(radius/d); its projected half-height is f·tan of that.
    Setting f·tan(asin(radius/d)) = fill·H/2 gives d = radius / sin(atan(fill·tan(fovy/2))).
    """
    half = torch.atan(fill * torch.tan(0.5 * fovy))
    return radius / torch.sin(half)


@dataclass
class CandidatePoses:
    """The K grid cameras (float32), in candidate order (see the module docstring)."""

    c2w: Float[Tensor, "K 4 4"]
    """Camera-to-world, looking at the origin with up = +z."""
    fovy: Float[Tensor, "K"]
    """Vertical FoV in radians."""
    fovy_deg: Float[Tensor, "K"]
    """The same FoV in degrees (the grid's value)."""
    azimuth_deg: Float[Tensor, "K"]
    """Azimuth of the camera position, degrees from +x towards +y."""
    elevation_deg: Float[Tensor, "K"]
    """Elevation of the camera position above the xy-plane, degrees."""
    distance: Float[Tensor, "K"]
    """Distance from the origin: the bounding sphere fills `CandidateGridConfig.fill` of the frame height."""

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def cameras(self, height: int, width: int) -> Cameras:
        """All candidates as centred `Cameras` of a height×width render."""
        return Cameras.centred(self.c2w, self.fovy, height, width)


def candidate_poses(cfg: CandidateGridConfig, radius: float,
                    device: Optional[Union[str, torch.device]] = None) -> CandidatePoses:
    """All candidate cameras of the search grid, looking at the origin.

    Args:
        cfg: the grid.
        radius: radius of an origin-centred sphere that contains the object (e.g. `Canonical.bounding_radius()`).
        device: where the tensors go.
    Returns:
        the K = cfg.size candidates (float32).
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
    return CandidatePoses(c2w=c2w_from_spherical(a_flat, e_flat, distance), fovy=fovy, fovy_deg=f_flat,
                          azimuth_deg=a_flat, elevation_deg=e_flat, distance=distance)


def candidate_index(cfg: CandidateGridConfig, fov_index: Int[Tensor, "*batch"], elevation_index: Int[Tensor, "*batch"],
                    azimuth_index: Int[Tensor, "*batch"]) -> Int[Tensor, "*batch"]:
    """Flat candidate index of (FoV, elevation, azimuth) grid indices (inverse of the reshape documented above)."""
    return (fov_index * cfg.n_elevation + elevation_index) * cfg.n_azimuth + azimuth_index
