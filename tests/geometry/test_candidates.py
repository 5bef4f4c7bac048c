"""congeal.geometry.candidates: the pose-search grid of candidate cameras."""
import pytest
import torch

from congeal.geometry.candidates import CandidateGridConfig, candidate_index, candidate_poses


def test_candidate_grid_layout_and_fill():
    cfg = CandidateGridConfig()
    cams = candidate_poses(cfg, radius=0.8)
    assert cfg.size == 768 == len(cams)
    for key in ("c2w", "fovy", "fovy_deg", "azimuth_deg", "elevation_deg", "distance"):
        assert getattr(cams, key).shape[0] == 768, key
    assert cams.c2w.shape == (768, 4, 4)
    assert torch.allclose(cams.fovy, torch.deg2rad(cams.fovy_deg))
    table = cams.elevation_deg.reshape(3, 16, 16)
    assert torch.allclose(table[:, :, 0], table[:, :, 5])  # azimuth varies fastest
    assert table[0, 0, 0] == cfg.elevation_range_deg[0] and table[0, -1, 0] == cfg.elevation_range_deg[1]
    k = candidate_index(cfg, torch.tensor(2), torch.tensor(7), torch.tensor(11))
    assert cams.fovy_deg[k] == cfg.fovy_deg[2]
    assert cams.azimuth_deg[k] == pytest.approx(11 * 22.5)
    assert cams.elevation_deg[k] == pytest.approx(torch.linspace(-15, 60, 16)[7].item())
    # The bounding sphere's silhouette spans `fill` of the frame height at every FoV.
    half_angle = torch.asin(0.8 / cams.distance)
    projected = torch.tan(half_angle) / torch.tan(0.5 * cams.fovy)
    assert torch.allclose(projected, torch.full_like(projected, cfg.fill), atol=1e-5)
    # Closer for wide FoVs, farther for narrow ones.
    assert cams.distance[0] > cams.distance[-1]


def test_candidates_as_centred_cameras():
    poses = candidate_poses(CandidateGridConfig(n_azimuth=4, n_elevation=2), radius=1.0)
    cameras = poses.cameras(32, 48)
    assert len(cameras) == len(poses) == 24 and (cameras.height, cameras.width) == (32, 48)
    assert torch.equal(cameras.c2w, poses.c2w) and torch.equal(cameras.fovy, poses.fovy)
    assert torch.equal(cameras.principal, torch.tensor([[24.0, 16.0]]).expand(24, 2))
