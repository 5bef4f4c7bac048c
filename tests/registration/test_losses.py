"""congeal.registration.losses: sharpened opacity, soft and binary IoU, masked feature distance."""
import torch
import torch.nn.functional as F

from congeal.registration.losses import binary_iou, masked_feature_distance, sharpen, soft_iou_loss


def test_losses():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    assert soft_iou_loss(mask, mask).item() == 0.0 and binary_iou(mask, mask).item() == 1.0
    assert torch.allclose(soft_iou_loss(torch.zeros_like(mask), mask), torch.ones(1))
    half = mask.clone()
    half[..., 2:4, 2:6] = 0
    assert torch.allclose(binary_iou(half, mask), torch.tensor([0.5]))
    assert torch.allclose(sharpen(torch.tensor([0.0, 0.5, 1.0]), 10.0), torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)


def test_masked_feature_distance_counts_only_weighted_cells():
    feats = F.normalize(torch.randn(2, 4, 3, 3), dim=1)
    weight = torch.zeros(2, 1, 3, 3)
    weight[..., 1, 1] = 1.0
    assert torch.allclose(masked_feature_distance(feats, feats, weight), torch.zeros(2), atol=2e-3)  # eps / (1 + eps)
    other = feats.clone()
    other[..., 0, 0] = -other[..., 0, 0]  # a cell with zero weight
    assert torch.allclose(masked_feature_distance(feats, other, weight), torch.zeros(2), atol=2e-3)
    other[..., 1, 1] = -other[..., 1, 1]  # the weighted cell, opposite: 1 − cos = 2
    assert torch.allclose(masked_feature_distance(feats, other, weight), torch.full((2,), 2.0), atol=1e-2)


def test_sharpen_at_another_edge_level_thins_the_render_and_takes_a_level_per_item():
    opacity = torch.linspace(0.0, 1.0, 101)
    at_half, at_high = sharpen(opacity, 10.0), sharpen(opacity, 10.0, 0.8)
    assert torch.allclose(at_high[[0, -1]], torch.tensor([0.0, 1.0]), atol=1e-6)  # still 0 -> 0 and 1 -> 1
    assert bool((at_high.diff() > 0).all())  # monotone
    assert bool((at_high[1:-1] < at_half[1:-1]).all())  # a higher edge level: less of the render counts as object
    items = torch.rand(3, 1, 4, 4)
    levels = torch.tensor([0.5, 0.7, 0.9])
    each = torch.cat([sharpen(items[i:i + 1], 10.0, float(levels[i])) for i in range(3)])
    assert torch.allclose(sharpen(items, 10.0, levels[:, None, None, None]), each)
