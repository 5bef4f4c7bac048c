"""The DINOv2 nearest-neighbour baseline on a tiny random DINOv2: cell arithmetic with hand-computed answers."""
import torch


def test_dinov2_nn_self_match_returns_the_source_cell(tiny_dinov2):
    from congeal.evaluation.dinov2_nn import DinoNNMatcher
    from congeal.features.extractors import build_extractor

    matcher = DinoNNMatcher(build_extractor("dinov2", model=str(tiny_dinov2), input_size=56), input_size=56)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 60, 80, generator=g)
    feats = matcher.features([image, torch.rand(3, 50, 50, generator=g)])
    assert feats[0].shape == (32, 4, 4)
    xy = torch.tensor([[1.0, 1.0], [79.0, 59.0], [41.0, 16.0], [float("nan"), 3.0]])
    out = matcher.transfer(feats[0], feats[0], xy, (60, 80), (60, 80))
    # cells are 20 x 15 px: hand-computed centres of the cells holding each point
    assert out[:3].tolist() == [[10.0, 7.5], [70.0, 52.5], [50.0, 22.5]]
    assert torch.isnan(out[3]).all()
    # into another image: every answer is a cell centre of that image's 4x4 grid
    other = matcher.transfer(feats[0], feats[1], xy[:3], (60, 80), (50, 50))
    assert set(((other[:, 0] - 6.25) / 12.5).tolist()) <= {0.0, 1.0, 2.0, 3.0}

