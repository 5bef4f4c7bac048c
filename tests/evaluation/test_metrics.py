"""congeal.evaluation.metrics and congeal.geometry.conventions against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from congeal.evaluation.metrics import (accuracy, bbox_threshold, chordal_mean, direction_error_deg, nan_stats, pck_correct,
                             pck_summary, pose_auc, relative_pose_errors, robust_rotation_alignment,
                             rotation_error_deg, umeyama)
from congeal.geometry.conventions import (camera_centres, matrix_to_quaternion, opencv_w2c_to_opengl_c2w,
                                      opengl_c2w_to_opencv_w2c, quaternion_to_matrix)


def rot_z(deg):
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def rot_x(deg):
    a = math.radians(deg)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]],
                        dtype=torch.float64)


def random_rotations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return quaternion_to_matrix(q)


# ------------------------------------------------------------------------------------------- rotations
def test_rotation_error_identity_known_and_extremes():
    eye = torch.eye(3, dtype=torch.float64)
    assert rotation_error_deg(eye, eye).item() == pytest.approx(0.0, abs=1e-9)
    assert rotation_error_deg(rot_z(37.0), eye).item() == pytest.approx(37.0, abs=1e-9)
    assert rotation_error_deg(rot_x(90.0), rot_z(90.0)).item() == pytest.approx(120.0, abs=1e-9)  # hand: trace 0
    assert rotation_error_deg(rot_x(180.0), eye).item() == pytest.approx(180.0, abs=1e-6)
    assert rotation_error_deg(rot_z(1e-4), eye).item() == pytest.approx(1e-4, rel=1e-6)  # atan2 keeps tiny angles
    nan = torch.full((3, 3), float("nan"), dtype=torch.float64)
    assert math.isnan(rotation_error_deg(nan, eye).item())


def test_quaternion_convention_and_round_trip():
    # [w,x,y,z]: 90° about z is (cos45, 0, 0, sin45)
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], dtype=torch.float64)
    assert torch.allclose(quaternion_to_matrix(q), rot_z(90.0), atol=1e-12)
    R = random_rotations(50, seed=3)
    R = torch.cat([R, rot_x(180.0)[None], rot_z(180.0)[None], torch.eye(3, dtype=torch.float64)[None]])
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-10)
    assert (matrix_to_quaternion(R)[:, 0] >= 0).all()


def test_opengl_opencv_conversion_hand_case_and_round_trip():
    # an OpenGL camera at (0, -3, 0) looking at the origin along +y with z up: its -z axis is world +y
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0] = torch.tensor([1.0, 0, 0])
    c2w[:3, 1] = torch.tensor([0.0, 0, 1])   # camera up = world z
    c2w[:3, 2] = torch.tensor([0.0, -1, 0])  # camera backward = world -y (looks along +y)
    c2w[:3, 3] = torch.tensor([0.0, -3, 0])
    R, t = opengl_c2w_to_opencv_w2c(c2w)
    # OpenCV: the origin is straight ahead at depth 3, world z (up) maps to camera -y (image up)
    assert torch.allclose(R @ torch.zeros(3, dtype=torch.float64) + t, torch.tensor([0.0, 0, 3], dtype=torch.float64))
    up = torch.tensor([0.0, 0, 1], dtype=torch.float64)
    assert torch.allclose(R @ up, torch.tensor([0.0, -1, 0], dtype=torch.float64))
    assert torch.allclose(camera_centres(R, t), c2w[:3, 3])
    assert torch.allclose(opencv_w2c_to_opengl_c2w(R, t), c2w, atol=1e-12)


def test_chordal_mean_and_robust_alignment_rejects_outliers():
    eye = torch.eye(3, dtype=torch.float64)
    # symmetric ±10° about z average to the identity
    mean = chordal_mean(torch.stack([rot_z(10), rot_z(-10)]))
    assert rotation_error_deg(mean, eye).item() == pytest.approx(0, abs=1e-9)
    A_true = rot_x(40.0) @ rot_z(-25.0)
    noise = torch.stack([rot_z(d) for d in (2.0, -2.0, 1.0, -1.0, 0.0, 3.0)])
    outliers = torch.stack([rot_x(90.0), rot_z(170.0), rot_x(-120.0)])
    candidates = torch.cat([noise @ A_true, outliers @ A_true])
    A, inliers = robust_rotation_alignment(candidates, inlier_deg=15.0)
    assert inliers.tolist() == [True] * 6 + [False] * 3
    assert rotation_error_deg(A, A_true).item() < 1.0
    # one candidate: it is the answer
    A1, inl1 = robust_rotation_alignment(A_true[None])
    assert rotation_error_deg(A1, A_true).item() == pytest.approx(0.0, abs=1e-6) and inl1.tolist() == [True]
    # NaN candidates are never inliers
    bad = torch.full((1, 3, 3), float("nan"), dtype=torch.float64)
    A2, inl2 = robust_rotation_alignment(torch.cat([bad, A_true[None], A_true[None]]))
    assert inl2.tolist() == [False, True, True] and rotation_error_deg(A2, A_true).item() < 1e-6


# ------------------------------------------------------------------------------------------ relative poses
def test_relative_errors_are_gauge_free_and_zero_for_identical_cameras():
    R = random_rotations(5, seed=1)
    t = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # same cameras in a world rotated by G, scaled by 2.5 and shifted by d: x' = 2.5 G x + d
    G, s, d = rot_x(33.0) @ rot_z(71.0), 2.5, torch.tensor([0.3, -1.0, 4.0], dtype=torch.float64)
    R2 = R @ G.T
    t2 = s * t - (R2 @ d[:, None]).squeeze(-1)
    out = relative_pose_errors(R2, t2, R, t)
    assert out["rotation_deg"].shape == (10,)
    assert out["rotation_deg"].abs().max() < 1e-6 and out["translation_deg"].abs().max() < 1e-5
    assert accuracy(out["rotation_deg"], 15) == 1.0 and pose_auc(out["rotation_deg"], out["translation_deg"]) == 1.0


def test_pair_of_90_degree_rotations():
    eye = torch.eye(3, dtype=torch.float64)
    z = torch.zeros(2, 3, dtype=torch.float64)
    t_gt = torch.tensor([[0.0, 0, 3], [0.0, 0, 3]], dtype=torch.float64)
    R_gt = torch.stack([eye, rot_z(90.0)])
    # prediction: both cameras the same (relative rotation 0 instead of 90)
    out = relative_pose_errors(torch.stack([eye, eye]), t_gt, R_gt, t_gt)
    assert out["rotation_deg"].tolist() == pytest.approx([90.0])
    # hand: t_ij_gt = t_j - R_ij t_i = (0,0,3) - (0,0,3) = 0 -> undefined direction -> NaN -> miss
    assert math.isnan(out["translation_deg"].item())
    assert accuracy(out["translation_deg"], 30) == 0.0
    # prediction 90° about x instead of z: relative rotation error = angle(Rx90 Rz90ᵀ) = 120°
    out = relative_pose_errors(torch.stack([eye, rot_x(90.0)]), z, R_gt, z)
    assert out["rotation_deg"].item() == pytest.approx(120.0)


def test_direction_error_and_auc_hand_values():
    a = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    b = torch.tensor([[0.0, 2, 0], [-3.0, 0, 0], [0.0, 0, 0]])
    e = direction_error_deg(a, b)
    assert e[:2].tolist() == pytest.approx([90.0, 180.0]) and math.isnan(e[2].item())
    # errors 0.5 (below every threshold), 10.5 (below 11..30 -> 20 of 30), 45 (never), NaN (never)
    r = torch.tensor([0.5, 10.5, 45.0, float("nan")])
    auc = pose_auc(r, torch.zeros(4), 30)
    assert auc == pytest.approx((30 + 20) / 30 / 4)
    assert math.isnan(pose_auc(torch.zeros(0), torch.zeros(0)))
    assert accuracy(r, 15) == 0.5 and math.isnan(accuracy(torch.zeros(0), 15))


def test_single_image_has_no_pairs():
    R = torch.eye(3, dtype=torch.float64)[None]
    out = relative_pose_errors(R, torch.zeros(1, 3), R, torch.zeros(1, 3))
    assert out["rotation_deg"].numel() == 0
    assert math.isnan(accuracy(out["rotation_deg"], 15))
    assert nan_stats(out["rotation_deg"])["n"] == 0 and math.isnan(nan_stats(out["rotation_deg"])["median"])


# ------------------------------------------------------------------------------------------------ umeyama
def test_umeyama_recovers_similarity_and_rejects_degenerate():
    src = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    R = rot_x(20.0) @ rot_z(-70.0)
    dst = 1.7 * src @ R.T + torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    s, R_fit, t = umeyama(src, dst)
    assert float(s) == pytest.approx(1.7) and torch.allclose(R_fit, R, atol=1e-9)
    assert torch.allclose(t, torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64), atol=1e-9)
    # a mirrored target still yields a proper rotation (det +1)
    _, R_m, _ = umeyama(src, src * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.det(R_m).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        umeyama(torch.zeros(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError):
        umeyama(torch.zeros(1, 3), torch.zeros(1, 3))


# -------------------------------------------------------------------------------------------------- PCK
def test_pck_hand_case_nan_and_zero_bbox():
    bbox = torch.tensor([10.0, 20.0, 110.0, 70.0])  # 100 x 50 -> threshold 10
    thr = bbox_threshold(bbox, 0.1)
    assert float(thr) == pytest.approx(10.0)
    gt = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    pred = torch.tensor([[6.0, 8.0], [6.0, 8.01], [float("nan"), 0.0], [0.0, 0.0]])  # 10 (edge), >10, NaN, 0
    assert pck_correct(pred, gt, thr).tolist() == [True, False, False, True]
    # zero-size bbox: threshold 0, only exact hits count
    zero = bbox_threshold(torch.tensor([5.0, 5.0, 5.0, 5.0]))
    assert float(zero) == 0.0
    assert pck_correct(pred, gt, zero).tolist() == [False, False, False, True]


def test_pck_summary_per_point_vs_per_image_and_empty():
    pairs = [torch.tensor([True, True, True, False]), torch.tensor([False]), torch.zeros(0, dtype=torch.bool)]
    s = pck_summary(pairs)
    assert s["pck_per_point"] == pytest.approx(3 / 5)  # 3 correct of 5 points
    assert s["pck_per_image"] == pytest.approx((0.75 + 0.0) / 2)  # the empty pair is left out
    assert s["n_pairs"] == 2 and s["n_points"] == 5
    empty = pck_summary([])
    assert math.isnan(empty["pck_per_point"]) and math.isnan(empty["pck_per_image"]) and empty["n_points"] == 0
    assert np.isnan(pck_summary([torch.zeros(0, dtype=torch.bool)])["pck_per_image"])
