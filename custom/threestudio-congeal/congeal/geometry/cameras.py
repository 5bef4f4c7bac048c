"""Cameras in threestudio's convention: the batched `Cameras` object, spherical poses, rays, projection, rotations.

    cameras = Cameras.from_spherical(torch.tensor([30.0]), torch.tensor([15.0]), torch.tensor([3.0]),
                                     fovy=math.radians(40.0), height=64, width=64)      # one centred 64×64 camera
    origins, directions = get_rays(cameras)                   # [1,64,64,3] each, through the pixel centres
    xy, depth = project(torch.zeros(1, 1, 3), cameras)        # [1,1,2] pixels: the origin lands at (32, 32)
    working = cameras.rescaled(32, 32)                        # the same view sampled at 32×32

Convention (docs/internals.md): world z-up; camera axes OpenGL (x right, y up, looking down -z); `c2w` maps
camera to world. A camera at azimuth `a`, elevation `e`, distance `d` sits at `d·(cos e cos a, cos e sin a, sin e)`
and looks at the origin with up = +z, exactly as threestudio's `RandomCameraDataModule` builds it. Intrinsics: a
square pixel, `fovy` (radians) spans the image height, and an explicit principal point in pixels of the camera's
height×width frame (the image centre for a full render; a crop moves it, it does not move the camera). Pixel
(row i, col j) has its centre at continuous coordinate `(x, y) = (j + 0.5, i + 0.5)`, x right, y down.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "Cameras",
    "c2w_from_spherical",
    "look_at",
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


def focal_from_fovy(fovy: Float[Tensor, "*batch"], height: int) -> Float[Tensor, "*batch"]:
    """Focal length in pixels of a camera whose vertical FoV `fovy` (radians) spans `height` pixels."""
    return 0.5 * height / torch.tan(0.5 * fovy)


@dataclass
class Cameras:
    """B pinhole cameras sharing one image size (like nerfstudio's `Cameras`, in threestudio's convention).

    Indexing keeps the batch dimension (`cameras[3]` is a batch of one), so every tensor stays batched.
    """

    c2w: Float[Tensor, "B 4 4"]
    """Camera-to-world matrices (OpenGL camera axes); their dtype sets the dtype of rays and projections."""
    fovy: Float[Tensor, "B"]
    """Vertical field of view in radians, spanning the `height` pixels of the frame."""
    principal: Float[Tensor, "B 2"]
    """Principal point (x, y) in pixels of the height×width frame."""
    height: int
    """Frame height in pixels (the size `principal` is measured in)."""
    width: int
    """Frame width in pixels."""

    @classmethod
    def centred(cls, c2w: Union[Float[Tensor, "B 4 4"], Float[Tensor, "4 4"]],
                fovy: Union[float, Float[Tensor, ""], Float[Tensor, "B"]], height: int, width: int) -> "Cameras":
        """Full-frame cameras: principal point at the image centre. A single [4,4] or a scalar fovy is batched."""
        if c2w.ndim == 2:
            c2w = c2w[None]
        fovy = torch.as_tensor(fovy, device=c2w.device).to(c2w.dtype)
        if fovy.ndim == 0:
            fovy = fovy.expand(c2w.shape[0])
        centre = torch.tensor([0.5 * width, 0.5 * height], dtype=c2w.dtype, device=c2w.device)
        return cls(c2w, fovy, centre.expand(c2w.shape[0], 2), int(height), int(width))

    @classmethod
    def from_spherical(cls, azimuth_deg: Float[Tensor, "B"], elevation_deg: Float[Tensor, "B"],
                       distance: Float[Tensor, "B"], fovy: Union[float, Float[Tensor, ""], Float[Tensor, "B"]], height: int,
                       width: int) -> "Cameras":
        """Centred cameras on a sphere looking at the origin with up = +z (see `c2w_from_spherical`)."""
        return cls.centred(c2w_from_spherical(azimuth_deg, elevation_deg, distance), fovy, height, width)

    @property
    def focal(self) -> Float[Tensor, "B"]:
        """Focal length in pixels of this frame."""
        return focal_from_fovy(self.fovy, self.height)

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, index: Union[int, slice, Tensor, Sequence[int]]) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.c2w[index], self.fovy[index], self.principal[index], self.height, self.width)

    def split(self, size: int) -> List["Cameras"]:
        """Consecutive batches of at most `size` cameras."""
        return [self[start:start + size] for start in range(0, len(self), size)]

    @staticmethod
    def cat(parts: Sequence["Cameras"]) -> "Cameras":
        """Concatenate batches of cameras of one image size."""
        sizes = {(p.height, p.width) for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate cameras of different image sizes {sorted(sizes)}")
        return Cameras(torch.cat([p.c2w for p in parts]), torch.cat([p.fovy for p in parts]),
                       torch.cat([p.principal for p in parts]), parts[0].height, parts[0].width)

    def to(self, device: Union[str, torch.device]) -> "Cameras":
        return Cameras(self.c2w.to(device), self.fovy.to(device), self.principal.to(device), self.height, self.width)

    def detach(self) -> "Cameras":
        return Cameras(self.c2w.detach(), self.fovy.detach(), self.principal.detach(), self.height, self.width)

    def rescaled(self, height: int, width: int) -> "Cameras":
        """The same view sampled at height×width: `fovy` keeps spanning the height, the principal point scales."""
        if (height, width) == (self.height, self.width):
            return self
        sx, sy = width / self.width, height / self.height
        scale = sx if sx == sy else torch.tensor([sx, sy], dtype=self.principal.dtype, device=self.principal.device)
        return Cameras(self.c2w, self.fovy, self.principal * scale, int(height), int(width))


def look_at(eye: Float[Tensor, "*batch 3"], target: Float[Tensor, "*batch 3"],
            up: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 4 4"]:
    """Camera-to-world matrices of cameras at `eye` looking at `target` (OpenGL camera axes).

    `up` is an approximate up direction (must not be parallel to the viewing direction). The columns of the result
    are camera x (right), y (up), z (backwards = -viewing direction), position.
    """
    forward = F.normalize(target - eye, dim=-1)
    right = F.normalize(torch.cross(forward, up.to(forward), dim=-1), dim=-1)
    true_up = F.normalize(torch.cross(right, forward, dim=-1), dim=-1)
    rotation = torch.stack([right, true_up, -forward], dim=-1)  # [B,3,3]
    top = torch.cat([rotation, eye[..., :, None]], dim=-1)  # [B,3,4]
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def spherical_to_position(azimuth_deg: Float[Tensor, "*batch"], elevation_deg: Float[Tensor, "*batch"],
                          distance: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch 3"]:
    """Camera positions `distance·(cos e cos a, cos e sin a, sin e)`."""
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


def c2w_from_spherical(azimuth_deg: Union[float, Tensor], elevation_deg: Union[float, Tensor],
                       distance: Union[float, Tensor]) -> Float[Tensor, "*batch 4 4"]:
    """Cameras on a sphere looking at the origin with up = +z (threestudio's construction).

    Args:
        azimuth_deg: [B] degrees, measured from +x towards +y.
        elevation_deg: [B] degrees above the xy-plane, in (-90, 90).
        distance: [B] distance from the origin (the three broadcast; integers are promoted).
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


def get_rays(cameras: Cameras) -> Tuple[Float[Tensor, "B H W 3"], Float[Tensor, "B H W 3"]]:
    """World-space rays through every pixel centre of the cameras' height×width frame.

    Returns:
        origins, unit directions, in the dtype of `cameras.c2w`. Differentiable w.r.t. c2w, fovy and principal.
    """
    c2w = cameras.c2w
    dtype = c2w.dtype
    focal = focal_from_fovy(cameras.fovy.to(dtype), cameras.height)  # [B]
    principal = cameras.principal.to(dtype)
    xs = torch.arange(cameras.width, device=c2w.device, dtype=dtype) + 0.5
    ys = torch.arange(cameras.height, device=c2w.device, dtype=dtype) + 0.5
    x = (xs[None, None, :] - principal[:, 0, None, None]) / focal[:, None, None]  # [B,1,W]
    y = -(ys[None, :, None] - principal[:, 1, None, None]) / focal[:, None, None]  # [B,H,1] image y down, camera up
    x, y = torch.broadcast_tensors(x, y)
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # camera looks down -z
    dirs = F.normalize(torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], dirs_cam), dim=-1)
    return c2w[:, None, None, :3, 3].expand_as(dirs), dirs


def project(points: Float[Tensor, "B N 3"], cameras: Cameras) -> Tuple[Float[Tensor, "B N 2"], Float[Tensor, "B N"]]:
    """Project world points into the cameras' frames (pixel-centre convention, x right, y down).

    Returns:
        xy continuous pixel coordinates; depth, the distance along the viewing axis (> 0 in front).
    """
    c2w = cameras.c2w
    fovy = cameras.fovy.to(c2w.dtype)
    principal = cameras.principal.to(c2w.dtype)
    rotation = c2w[:, :3, :3]
    local = torch.einsum("bji,bnj->bni", rotation, points - c2w[:, None, :3, 3])  # R^T (p - t)
    depth = -local[..., 2]
    focal = focal_from_fovy(fovy, cameras.height)[:, None]
    # Points at or behind the camera get a finite (meaningless) projection; callers test depth > 0.
    safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    x = focal * local[..., 0] / safe + principal[:, 0, None]
    y = -focal * local[..., 1] / safe + principal[:, 1, None]
    return torch.stack([x, y], dim=-1), depth


def rotation_angle_deg(R1: Float[Tensor, "*a 3 3"], R2: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "..."]:
    """Geodesic angle between rotations, in degrees (batch dimensions broadcast).

    Uses atan2(|sin|, cos) of the relative rotation, accurate near 0° and 180° (acos of the trace is not).
    """
    rel = R1.transpose(-1, -2) @ R2
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) * 0.5
    axis = torch.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], dim=-1
    )
    sin = 0.5 * torch.linalg.vector_norm(axis, dim=-1)
    return torch.rad2deg(torch.atan2(sin, cos))


def _skew_and_square(v: Float[Tensor, "*batch 3"]
                     ) -> Tuple[Float[Tensor, "*batch 3 3"], Float[Tensor, "*batch 3 3"]]:
    """The cross-product matrix [v]x and its square, elementwise (no batched-GEMM kernel choice), so each row's
    result is the same whatever else is in the batch."""
    zero = torch.zeros_like(v[..., 0])
    vx, vy, vz = v.unbind(-1)
    skew = torch.stack([torch.stack([zero, -vz, vy], dim=-1),
                        torch.stack([vz, zero, -vx], dim=-1),
                        torch.stack([-vy, vx, zero], dim=-1)], dim=-2)
    return skew, (skew[..., :, :, None] * skew[..., None, :, :]).sum(-2)


def so3_exp(omega: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrices from axis-angle vectors (angle = |omega| radians), differentiable.

    Rodrigues' formula, R = I + a·K + b·K² with a = sin θ / θ, b = (1 − cos θ) / θ² (Taylor series near θ = 0, so
    the gradient at ω = 0 is exact): elementwise, so each rotation is the same whatever else is in the batch.
    `torch.linalg.matrix_exp` is not — a batch of one takes another code path than a batch of many, and refinement,
    whose batch shrinks as hypotheses freeze, amplified that ulp into a different pose."""
    skew, skew_sq = _skew_and_square(omega)
    theta2 = omega.square().sum(-1)
    small = theta2 < 1e-6
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()  # no 0/0 in the unused branch's gradient
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta.square())
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a[..., None, None] * skew + b[..., None, None] * skew_sq


def rotation_between(a: Float[Tensor, "*batch 3"], b: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3 3"]:
    """The smallest rotation taking unit vector `a` to unit vector `b` (a = -b is not expected).

    Rodrigues without an angle: R = I + [v]x + [v]x² / (1 + cos), v = a × b. Only products and sums, so each row's
    result is the same whatever else is in the batch (vectorised atan2 is not: its results differ by an ulp between
    SIMD lanes and the scalar tail, and refinement amplifies that into a run that depends on how it was sharded)."""
    skew, skew_sq = _skew_and_square(torch.cross(a, b, dim=-1))
    cos = (a * b).sum(-1)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(skew)
    return eye + skew + skew_sq / (1.0 + cos)[..., None, None].clamp_min(1e-12)


def turned_to_principal(cameras: Cameras, principal: Float[Tensor, "B 2"],
                        target: Optional[Float[Tensor, "B 3"]] = None) -> Cameras:
    """The same cameras with the principal point moved to `principal`, turned about their centres so that `target`
    (default: the world origin) projects to the pixel it projected to before.

    A look-at camera whose principal point was shifted to frame an off-centre object reports the object's viewing
    direction as its optical axis; the real camera (principal point known, e.g. the photo's centre) looks past the
    object by the object's off-axis angle. Turning, not translating, keeps the camera centre and so the side of the
    object it sees. Focal length and image size are unchanged.
    """
    c2w = cameras.c2w
    if target is None:
        target = torch.zeros(len(cameras), 3, dtype=c2w.dtype, device=c2w.device)
    xy, _depth = project(target[:, None], cameras)
    focal = cameras.focal.to(c2w.dtype)
    principal = principal.to(c2w.dtype)
    rotation = c2w[:, :3, :3]
    # the target's direction in camera axes, before (through the old principal point) and after (through the new)
    def direction(p: Tensor) -> Tensor:
        d = torch.stack([(xy[:, 0, 0] - p[:, 0]) / focal, -(xy[:, 0, 1] - p[:, 1]) / focal,
                         -torch.ones_like(focal)], dim=-1)
        return F.normalize(d, dim=-1)

    before, after = direction(cameras.principal.to(c2w.dtype)), direction(principal)
    # new rotation R' with R' · after = R · before  =>  R' = R · Q, Q taking `after` to `before`
    turned = rotation @ rotation_between(after, before)
    out = c2w.clone()
    out[:, :3, :3] = turned
    return Cameras(out, cameras.fovy, principal, cameras.height, cameras.width)
