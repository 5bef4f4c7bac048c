"""The denoiser seam: the diffusers denoiser satisfies the `Denoiser` protocol the trainer is typed against."""
import torch

from congeal.inversion.denoiser import Denoiser
from helpers.textual_inversion import tiny_denoiser


def test_diffusers_denoiser_is_a_denoiser():
    denoiser = tiny_denoiser()
    assert isinstance(denoiser, Denoiser)
    mean, std = denoiser.encode(torch.rand(2, 3, 32, 32))
    eps = denoiser(mean, torch.tensor([10, 900]), torch.zeros(2, 77, 32))
    assert eps.shape == mean.shape == std.shape and mean.shape[0] == 2
    assert not isinstance(object(), Denoiser)
