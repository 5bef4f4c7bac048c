"""Conversions between rotation/camera representations used by the evaluation harnesses.

    R = quaternion_to_matrix(torch.tensor([1.0, 0.0, 0.0, 0.0]))          # [w,x,y,z] -> identity [3,3]
    R_w2c, t_w2c = opengl_c2w_to_opencv_w2c(c2w)                           # ours -> NAVI-style extrinsics
    c2w = opencv_w2c_to_opengl_c2w(R_w2c, t_w2c)                           # and back

Our cameras (docs/internals.md) are threestudio's: `c2w` camera-to-world with OpenGL camera axes (x right, y up,
looking down -z). Datasets such as NAVI give world-to-camera extrinsics with OpenCV camera axes (x right, y down,
looking down +z): `x_cam = R x_world + t`. The two camera frames differ by a 180° turn about the camera x axis,
`diag(1, -1, -1)`.
"""
from typing import Tuple

import torch
from torch import Tensor

# OpenGL camera axes <-> OpenCV camera axes (its own inverse)
_FLIP_YZ = (1.0, -1.0, -1.0)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions [...,4] ordered [w,x,y,z] (normalised here) -> rotation matrices [...,3,3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] [w,x,y,z] with w >= 0.

    Uses the numerically best of the four standard branches per matrix (largest diagonal term), batched.
    """
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # 4 * q_k^2 for k = w, x, y, z
    squares = torch.stack([
        1 + trace,
        1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
    ], dim=-1)
    # candidate quaternions, each scaled by 4 q_k for its own branch k
    cands = torch.stack([
        torch.stack([squares[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], squares[..., 1], m[..., 1, 0] + m[..., 0, 1],
                     m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], squares[..., 2],
                     m[..., 2, 1] + m[..., 1, 2]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2],
                     squares[..., 3]], -1),
    ], dim=-2)  # [...,4 branches,4]
    best = squares.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def opengl_c2w_to_opencv_w2c(c2w: Tensor) -> Tuple[Tensor, Tensor]:
    """Camera-to-world, OpenGL camera axes [...,4,4] (or [...,3,4]) -> world-to-camera OpenCV (R [...,3,3], t [...,3]).

    The world frame is unchanged; only the camera axes flip (y, z) and the transform is inverted.
    """
    flip = c2w.new_tensor(_FLIP_YZ)
    R_c2w = c2w[..., :3, :3] * flip  # scales columns: camera y, z axes flipped
    centre = c2w[..., :3, 3]
    R = R_c2w.transpose(-1, -2)
    t = -(R @ centre.unsqueeze(-1)).squeeze(-1)
    return R, t


def opencv_w2c_to_opengl_c2w(R: Tensor, t: Tensor) -> Tensor:
    """World-to-camera OpenCV (R [...,3,3], t [...,3]) -> camera-to-world OpenGL [...,4,4]."""
    flip = R.new_tensor(_FLIP_YZ)
    R_c2w = R.transpose(-1, -2)
    centre = -(R_c2w @ t.unsqueeze(-1)).squeeze(-1)
    c2w = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    c2w[..., :3, :3] = R_c2w * flip
    c2w[..., :3, 3] = centre
    c2w[..., 3, 3] = 1.0
    return c2w


def camera_centres(R: Tensor, t: Tensor) -> Tensor:
    """World-to-camera (R [...,3,3], t [...,3]) -> camera centres in world coordinates [...,3] (= -Rᵀ t)."""
    return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)
