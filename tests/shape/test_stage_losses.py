"""A stage's loss is its loss_* terms weighted by the matching lambda_*, in order; other outputs are only logged."""
import pytest
import torch

from congeal.shape.stage_losses import scalar_values, weight_key, weighted_sum


def test_weighted_sum_of_loss_terms_only():
    out = {"loss_sds": torch.tensor(2.0), "grad_norm": torch.tensor(100.0), "loss_sparsity": torch.tensor(3.0)}
    weights = {"lambda_sds": 1.0, "lambda_sparsity": 0.5}
    assert weighted_sum(out, weights.__getitem__).item() == 3.5
    assert weighted_sum(out, weights.__getitem__, start=torch.tensor(1.0)).item() == 4.5
    assert weighted_sum({"grad_norm": 1.0}, weights.__getitem__) == 0.0
    with pytest.raises(KeyError):  # a loss term without a weight in the config is an error, as in threestudio
        weighted_sum({"loss_other": torch.tensor(1.0)}, weights.__getitem__)
    assert weight_key("loss_z_variance") == "lambda_z_variance"


def test_gradients_flow_through_the_weighted_terms():
    x = torch.tensor(2.0, requires_grad=True)
    weighted_sum({"loss_a": x * x}, lambda key: 0.25).backward()
    assert x.grad.item() == 1.0


def test_scalars_for_the_loggers():
    out = {"loss_ti": torch.tensor([0.25]), "images": torch.zeros(2, 3), "step": 3}
    assert scalar_values(out, "train/") == {"train/loss_ti": 0.25}
