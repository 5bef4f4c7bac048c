"""The DDPM schedule matches diffusers' DDPMScheduler (SD2.1) and MVDream's numbers."""
import pytest
import torch

from congeal.common.errors import InputError
from congeal.inversion.noise_schedule import NoiseSchedule


def test_matches_diffusers_scaled_linear():
    from diffusers import DDPMScheduler

    ours = NoiseSchedule.scaled_linear()
    theirs = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    assert ours.num_train_timesteps == 1000
    assert torch.allclose(ours.alphas_cumprod.float(), theirs.alphas_cumprod, rtol=1e-5, atol=1e-7)
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 500, 999])
    assert torch.allclose(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=1e-5)
    v = ours.target(x0, noise, t, "v_prediction")
    assert torch.allclose(v, theirs.get_velocity(x0, noise, t), atol=1e-5)
    assert ours.target(x0, noise, t, "epsilon") is noise
    # endpoints of SD2.1/MVDream's schedule
    assert abs(float(ours.alphas_cumprod[0]) - (1 - 0.00085)) < 1e-12
    assert abs(float(ours.alphas_cumprod[-1]) - 0.0046) < 1e-4


def test_from_scheduler_config_and_errors():
    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
    assert torch.equal(NoiseSchedule.from_scheduler_config(config).alphas_cumprod,
                       NoiseSchedule.scaled_linear().alphas_cumprod)
    with pytest.raises(InputError, match="squaredcos_cap_v2"):
        NoiseSchedule.from_scheduler_config({"beta_schedule": "squaredcos_cap_v2"})
    with pytest.raises(InputError, match="prediction_type"):
        NoiseSchedule.scaled_linear().target(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1).long(), "sample")
