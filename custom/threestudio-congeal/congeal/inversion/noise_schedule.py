"""The DDPM forward-noising schedule shared by Stable Diffusion 2.1 and MVDream.

    schedule = NoiseSchedule.scaled_linear()                  # 0.00085 -> 0.012, 1000 steps
    noisy = schedule.add_noise(latents, noise, t)             # q(x_t | x_0)
    target = schedule.target(latents, noise, t, "epsilon")    # what the denoiser must predict

SD2.1's diffusers scheduler calls this schedule "scaled_linear"; MVDream/LDM call it "linear" (both are
`linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2`). Computed in float64, applied in the latents' dtype.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from congeal.common.errors import InputError

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class NoiseSchedule:
    """Cumulative signal rates of a discrete DDPM."""

    alphas_cumprod: Float[Tensor, " T"]
    """alpha-bar_t for t = 0 .. T-1 (float64)."""

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def scaled_linear(cls, beta_start: float = 0.00085, beta_end: float = 0.012,
                      num_train_timesteps: int = 1000) -> "NoiseSchedule":
        """The SD2.1 / MVDream schedule: betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2."""
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def from_scheduler_config(cls, config: Dict[str, Any], path: Optional[str] = None) -> "NoiseSchedule":
        """Build from a diffusers `scheduler_config.json` dict (beta_schedule scaled_linear or linear).

        Raises:
            InputError: for schedules other than (scaled_)linear or explicit trained betas.
        """
        kind = config.get("beta_schedule", "linear")
        start = float(config.get("beta_start", 0.0001))
        end = float(config.get("beta_end", 0.02))
        steps = int(config.get("num_train_timesteps", 1000))
        if config.get("trained_betas") is not None:
            betas = torch.as_tensor(config["trained_betas"], dtype=torch.float64)
            return cls(torch.cumprod(1.0 - betas, dim=0))
        if kind == "scaled_linear":
            return cls.scaled_linear(start, end, steps)
        if kind == "linear":
            betas = torch.linspace(start, end, steps, dtype=torch.float64)
            return cls(torch.cumprod(1.0 - betas, dim=0))
        raise InputError(path, f"beta_schedule {kind!r} is not supported",
                         "use a Stable-Diffusion-format model (scaled_linear or linear betas)")

    def _rates(self, t: Int[Tensor, " B"], like: Float[Tensor, "B *rest"]
               ) -> Tuple[Float[Tensor, "B *ones"], Float[Tensor, "B *ones"]]:
        # gather per-sample rates, shaped to broadcast over [B, C, h, w]
        abar = self.alphas_cumprod.to(t.device)[t.long()]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return abar.sqrt().to(like.dtype).view(shape), (1.0 - abar).sqrt().to(like.dtype).view(shape)

    def add_noise(self, x0: Float[Tensor, "B *rest"], noise: Float[Tensor, "B *rest"], t: Int[Tensor, " B"]
                  ) -> Float[Tensor, "B *rest"]:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise: clean latents + noise at integer timesteps -> noisy."""
        a, s = self._rates(t, x0)
        return a * x0 + s * noise

    def target(self, x0: Float[Tensor, "B *rest"], noise: Float[Tensor, "B *rest"], t: Int[Tensor, " B"],
               prediction_type: str = "epsilon") -> Float[Tensor, "B *rest"]:
        """The regression target of the denoiser: `noise` (epsilon) or v = a·noise − s·x0 (v_prediction)."""
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "v_prediction":
            a, s = self._rates(t, x0)
            return a * noise - s * x0
        raise InputError(None, f"prediction_type {prediction_type!r} is not supported",
                         f"use one of {PREDICTION_TYPES}")
