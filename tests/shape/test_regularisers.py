"""The SDS regularisers' values on a tiny hand-made render, and only the ones weighted on."""
import math

import pytest
import torch

from congeal.shape.regularisers import eikonal, opaqueness, orientation, sds_regularisers, sparsity, z_variance


def render():
    opacity = torch.tensor([[[[0.0], [0.5]], [[1.0], [0.8]]]])  # [1, 2, 2, 1]: one empty ray
    return {
        "opacity": opacity,
        "normal": torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.6, 0.8, 0.0]]),
        "t_dirs": torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
        "weights": torch.tensor([[0.5], [2.0], [1.0]]),
        "z_variance": torch.tensor([[[[9.0], [1.0]], [[2.0], [4.0]]]]),
        "sdf_grad": torch.tensor([[0.0, 0.0, 2.0], [3.0, 4.0, 0.0]]),
    }


def test_values_by_hand():
    out = render()
    # normals facing away: (1^2 * 0.5 + 0 * 2.0 + 0.6^2 * 1.0) / 3 covered rays
    assert orientation(out["normal"], out["t_dirs"], out["weights"], out["opacity"]).item() == pytest.approx(0.86 / 3)
    expected = sum(math.sqrt(o * o + 0.01) for o in (0.0, 0.5, 1.0, 0.8)) / 4
    assert sparsity(out["opacity"]).item() == pytest.approx(expected)
    entropy = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert opaqueness(out["opacity"]).item() == pytest.approx(
        sum(entropy(min(max(o, 1e-3), 1 - 1e-3)) for o in (0.0, 0.5, 1.0, 0.8)) / 4, rel=1e-5)
    assert z_variance(out["z_variance"], out["opacity"]).item() == pytest.approx(3.0)  # rays with opacity > 0.5
    assert eikonal(out["sdf_grad"]).item() == pytest.approx((1 + 16) / 2)


def test_orientation_does_not_train_the_weights():
    out = render()
    out["weights"].requires_grad_(True)
    out["normal"].requires_grad_(True)
    orientation(out["normal"], out["t_dirs"], out["weights"], out["opacity"]).backward()
    assert out["weights"].grad is None and out["normal"].grad is not None


def test_only_terms_weighted_on_are_computed():
    out = render()
    weights = {"lambda_sparsity": 1.0, "lambda_opaque": 0.0, "lambda_eikonal": 0.1}
    terms = sds_regularisers(out, lambda key: weights.get(key, 0.0))
    assert sorted(terms) == ["loss_eikonal", "loss_sparsity"]
    assert terms["loss_sparsity"].item() == pytest.approx(sparsity(out["opacity"]).item())
    all_on = sds_regularisers(out, lambda key: 1.0)
    assert sorted(all_on) == ["loss_eikonal", "loss_opaque", "loss_orient", "loss_sparsity", "loss_z_variance"]


def test_orient_without_normals_says_what_to_set():
    out = render()
    del out["normal"]
    with pytest.raises(ValueError, match="normal_type"):
        sds_regularisers(out, lambda key: 1.0 if key == "lambda_orient" else 0.0)
