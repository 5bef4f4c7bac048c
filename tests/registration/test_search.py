"""Pose search: batched N×K scoring, overlap-only feature distance, rotation NMS, the candidate cache."""
import pytest
import torch

from congeal.canonical.render import GridRenderer
from congeal.features.extractors import RGBFeatures
from congeal.geometry.cameras import rotation_angle_deg
from congeal.geometry.candidates import CandidateGridConfig
from congeal.registration.losses import sharpen
from congeal.registration.search import (SearchConfig, bank_key, build_candidate_bank, load_bank, save_bank, score_candidates,
                            score_grid, top_k_hypotheses)
from helpers.canonicals import small_canonical

GRID = CandidateGridConfig(fovy_deg=(30.0, 50.0), n_azimuth=8, n_elevation=3, elevation_range_deg=(0.0, 40.0))
CFG = SearchConfig(render_size=48, render_samples=24, chunk=16, mask_size=16, top_k=3, nms_deg=30.0)


@pytest.fixture(scope="module")
def bank():
    canonical = small_canonical()
    renderer = GridRenderer(canonical, num_samples=CFG.render_samples)
    extractor = RGBFeatures(grid=8)
    return build_candidate_bank(renderer, extractor, GRID, canonical.bounding_radius(), CFG, 32, 0.1, "cpu"), \
        extractor


def test_bank_shapes(bank):
    bank, _ = bank
    k = GRID.size
    assert bank.cameras.c2w.shape == (k, 4, 4) and bank.cameras.principal.shape == (k, 2)
    assert bank.opacity.shape == (k, 1, 32, 32) and len(bank) == k
    assert (bank.cameras.height, bank.cameras.width) == (32, 32)  # working-frame cameras
    assert bank.features.shape == (k, 7, 8, 8)
    assert (bank.opacity.amax(dim=(1, 2, 3)) > 0.9).all()  # every framed candidate shows the object


def test_a_candidate_finds_itself(bank):
    bank, _ = bank
    picks = torch.tensor([3, 17, 40])
    masks = (bank.opacity[picks] > 0.5).float()
    # the "photos" are framed candidate renders: their own candidate must score best
    photos_feats = bank.features[picks]
    scores = score_candidates(photos_feats, masks, bank, CFG)
    assert scores["score"].shape == (3, GRID.size)
    assert torch.equal(scores["score"].argmin(1), picks)
    assert (scores["iou"][torch.arange(3), picks] > 0.9).all()
    assert (scores["feature_distance"][torch.arange(3), picks] < 0.01).all()


def test_batched_scores_equal_a_direct_computation(bank):
    bank, _ = bank
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(2, 7, 8, 8), dim=1)
    masks = (torch.rand(2, 1, 32, 32) > 0.5).float()
    scores = score_candidates(feats, masks, bank, CFG, eps=0.0)
    n, k = 1, 11
    m = torch.nn.functional.adaptive_avg_pool2d(masks[n], 8)[0]
    sharp = sharpen(bank.opacity[k], CFG.opacity_sharpness)
    o = torch.nn.functional.adaptive_avg_pool2d(sharp, 8)[0]
    cos = (feats[n] * bank.features[k]).sum(0)
    expected = ((1 - cos) * m * o).sum() / (m * o).sum()
    assert torch.allclose(scores["feature_distance"][n, k], expected, atol=1e-5)
    mi = torch.nn.functional.adaptive_avg_pool2d(masks[n], 16) >= 0.5
    oi = torch.nn.functional.adaptive_avg_pool2d(sharp, 16) >= 0.5
    iou = (mi & oi).sum() / (mi | oi).sum()
    assert torch.allclose(scores["iou"][n, k], iou, atol=1e-5)
    assert torch.allclose(scores["score"], scores["feature_distance"] + CFG.iou_weight * (1 - scores["iou"]))


def test_background_features_do_not_count(bank):
    """Feature cells outside the photo's mask have zero weight: changing them leaves every score unchanged."""
    bank, _ = bank
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1.0
    feats = bank.features[5:6].clone()
    scrambled = feats.clone()
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:6, 2:6] = False  # feature cells covering the mask
    scrambled[..., outside] = torch.nn.functional.normalize(torch.randn(1, 7, int(outside.sum())), dim=1)
    a = score_candidates(feats, masks, bank, CFG)["score"]
    b = score_candidates(scrambled, masks, bank, CFG)["score"]
    assert torch.allclose(a, b, atol=1e-6)


def test_top_k_keeps_distinct_readings(bank):
    bank, _ = bank
    torch.manual_seed(1)
    scores = torch.rand(4, GRID.size)
    top = top_k_hypotheses(scores, bank, k=3, nms_deg=30.0)
    assert torch.equal(top[:, 0], scores.argmin(1))
    rotations = bank.grid_c2w[:, :3, :3]
    for row in top:
        for i in range(3):
            for j in range(i + 1, 3):
                assert rotation_angle_deg(rotations[row[i]], rotations[row[j]]) >= 30.0
    assert score_grid(scores, GRID).shape == (4, 3, 8)


def test_cache_round_trip_and_key(bank, tmp_path):
    bank, extractor = bank
    key = bank_key("abc", extractor.identity, GRID, 32, 0.1, CFG, 0.9)
    save_bank(tmp_path / "bank.safetensors", bank, key)
    loaded = load_bank(tmp_path / "bank.safetensors", key, "cpu")
    assert torch.allclose(loaded.features, bank.features, atol=1e-3) and torch.equal(loaded.cameras.c2w, bank.cameras.c2w)
    assert torch.equal(loaded.cameras.principal, bank.cameras.principal) and loaded.cameras.height == 32
    assert load_bank(tmp_path / "bank.safetensors", "other", "cpu") is None
    assert load_bank(tmp_path / "missing.safetensors", key, "cpu") is None
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 32)
    assert load_bank(tmp_path / "corrupt.safetensors", key, "cpu") is None
    assert bank_key("abc", "dinov2-x", GRID, 32, 0.1, CFG, 0.9) != key
    assert bank_key("abd", extractor.identity, GRID, 32, 0.1, CFG, 0.9) != key
    assert bank_key("abc", extractor.identity, GRID, 64, 0.1, CFG, 0.9) != key
