"""The denoiser seam: what textual inversion needs from a diffusion model.

    eps = denoiser(noisy_latents, t, text_embeddings)      # [B,C,h,w], [B] long, [B,L,D] -> [B,C,h,w]
    mean, std = denoiser.encode(images)                    # [B,3,H,W] in [0,1] -> scaled latent posterior

Implementations: `congeal.inversion.diffusers_denoiser.DiffusersDenoiser` (any SD-format model) and
`congeal.inversion.mvdream_denoiser.MVDreamDenoiser` (MVDream's UNet in single-view mode).
"""
from typing import Protocol, Tuple, runtime_checkable

from jaxtyping import Float, Int
from torch import Tensor

from congeal.inversion.noise_schedule import NoiseSchedule


@runtime_checkable  # the test-time type checker verifies arguments against it
class Denoiser(Protocol):
    """What the trainer needs from a diffusion model."""

    schedule: NoiseSchedule
    prediction_type: str

    def encode(self, images: Float[Tensor, "B 3 H W"]) -> Tuple[Float[Tensor, "B C h w"], Float[Tensor, "B C h w"]]:
        """Photos in [0,1] -> (mean, std) of the scaled latent posterior."""

    def __call__(self, noisy_latents: Float[Tensor, "B C h w"], t: Int[Tensor, " B"],
                 text_embeddings: Float[Tensor, "B L D"]) -> Float[Tensor, "B C h w"]:
        """Predicted eps (or v, per `prediction_type`)."""
