"""TEST-ONLY threestudio modules for CPU integration tests (registered names start with `congeal-test-`).

    import tiny_modules; tiny_modules.register_all()
    system: {renderer_type: congeal-test-dense-volume-renderer, ti_guidance_type: congeal-test-ti-guidance,
             prompt_processor_type: congeal-test-prompt-processor}

* `congeal-test-dense-volume-renderer`: a plain-torch volume renderer (uniform samples through the bounding sphere,
  alpha compositing). threestudio's NeRF/NeuS renderers composite through nerfacc's packed CUDA kernels, which do
  not run on a CPU.
* `congeal-test-ti-guidance`: the call signature of `congeal-textual-inversion-guidance` (`__call__(images, masks)
  -> {"loss_ti"}`, `learned_embeds()`, `save(path)`, `trainable_parameters()`) over a tiny frozen conv denoiser
  conditioned on y*: used when the real TI guidance is not available.
* `congeal-test-prompt-processor`: turns y* (the `learned_embeds_path` file the system writes) into threestudio's
  `PromptProcessorOutput` without a text encoder (context dim = y*'s dim).
None of these is shipped or used by the extension's own configs.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

import threestudio
from threestudio.models.prompt_processors.base import PromptProcessorOutput
from threestudio.models.renderers.base import VolumeRenderer
from threestudio.utils.base import BaseObject


def _register(name: str):
    def decorator(cls):
        if name not in threestudio.__modules__:
            threestudio.__modules__[name] = cls
        return threestudio.__modules__[name]

    return decorator


@_register("congeal-test-dense-volume-renderer")
class DenseVolumeRenderer(VolumeRenderer):
    """TEST-ONLY: `num_samples_per_ray` uniform samples across the sphere of `radius`, composited in plain torch."""

    @dataclass
    class Config(VolumeRenderer.Config):
        num_samples_per_ray: int = 16

    cfg: Config

    def forward(self, rays_o, rays_d, light_positions, bg_color=None, **kwargs) -> Dict[str, torch.Tensor]:
        batch, height, width, _ = rays_o.shape
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        n, s, r = o.shape[0], self.cfg.num_samples_per_ray, self.cfg.radius
        closest = -(o * d).sum(-1, keepdim=True)  # ray parameter of the point nearest the origin
        edges = closest + r * torch.linspace(-1.0, 1.0, s + 1, device=o.device, dtype=o.dtype)
        mid, delta = 0.5 * (edges[:, 1:] + edges[:, :-1]), edges[:, 1:] - edges[:, :-1]
        points = o[:, None] + d[:, None] * mid[..., None]  # [N,S,3]
        geo = self.geometry(points.reshape(-1, 3), output_normal=False)
        lights = light_positions.reshape(batch, 1, 3).expand(batch, height * width * s, 3).reshape(-1, 3)
        rgb = self.material(viewdirs=d[:, None].expand(n, s, 3).reshape(-1, 3), positions=points.reshape(-1, 3),
                            light_positions=lights, **geo, **kwargs).reshape(n, s, -1)
        sigma = geo["density"].reshape(n, s)
        alpha = 1.0 - torch.exp(-sigma * delta)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)
        weights = alpha * transmittance[:, :-1]
        opacity = weights.sum(-1, keepdim=True)
        depth = (weights * mid).sum(-1, keepdim=True)
        z_variance = (weights * (mid - depth) ** 2).sum(-1, keepdim=True)
        fg = (weights[..., None] * rgb).sum(1)
        bg = self.background(dirs=rays_d) if bg_color is None else bg_color.expand(batch, height, width, -1)
        bg = bg.reshape(n, -1)
        view = lambda x: x.reshape(batch, height, width, -1)  # noqa: E731
        return {"comp_rgb": view(fg + (1.0 - opacity) * bg), "comp_rgb_fg": view(fg), "comp_rgb_bg": view(bg),
                "opacity": view(opacity), "depth": view(depth), "z_variance": view(z_variance)}


@_register("congeal-test-ti-guidance")
class TinyTextualInversionGuidance(BaseObject):
    """TEST-ONLY stand-in with the TI guidance's call signature: a frozen conv denoiser conditioned on y*."""

    @dataclass
    class Config(BaseObject.Config):
        token: str = "<congeal>"
        n_vectors: int = 1
        dim: int = 32
        latent_size: int = 8
        seed: int = 0

    cfg: Config

    def configure(self) -> None:
        gen = torch.Generator().manual_seed(self.cfg.seed)
        self.rows = torch.nn.Parameter(torch.randn(self.cfg.n_vectors, self.cfg.dim, generator=gen) * 0.1)
        self.conv = torch.randn(3, 3, 3, 3, generator=gen) * 0.2  # frozen denoiser weights
        self.film = torch.randn(self.cfg.dim, 3, generator=gen) * 0.5  # y* -> per-channel shift

    def trainable_parameters(self) -> List[torch.nn.Parameter]:
        return [self.rows]

    def __call__(self, images: torch.Tensor, masks: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """images [B,3,S,S] in [0,1], masks [B,1,S,S] -> {"loss_ti": scalar}: one denoising step's loss."""
        x = images if masks is None else images * masks
        x = F.interpolate(x, size=(self.cfg.latent_size,) * 2, mode="area") * 2.0 - 1.0
        noise = torch.randn_like(x)
        noisy = 0.7 * x + 0.7 * noise
        shift = (self.rows.mean(0) @ self.film.to(x))[None, :, None, None]
        pred = F.conv2d(noisy, self.conv.to(x), padding=1) + shift
        return {"loss_ti": F.mse_loss(pred, noise)}

    def learned_embeds(self) -> Dict[str, torch.Tensor]:
        return {self.cfg.token: self.rows.detach()}

    def save(self, path: str) -> None:
        from congeal.inversion.embedding_files import save_learned_embeds

        save_learned_embeds(path, self.learned_embeds())


@_register("congeal-test-prompt-processor")
class TinyPromptProcessor(BaseObject):
    """TEST-ONLY: y* rows (from `learned_embeds_path`) padded to `length` tokens; the unconditional side is zeros."""

    @dataclass
    class Config(BaseObject.Config):
        learned_embeds_path: Optional[str] = None
        prompt: str = "a photo of a <congeal>"
        length: int = 8

    cfg: Config

    def configure(self) -> None:
        from congeal.inversion.embedding_files import load_learned_embeds

        rows = torch.cat(list(load_learned_embeds(self.cfg.learned_embeds_path).values()), 0).float()
        text = torch.zeros(1, self.cfg.length, rows.shape[-1])
        text[0, 1:1 + rows.shape[0]] = rows
        self.text, self.uncond = text, torch.zeros_like(text)

    def __call__(self) -> PromptProcessorOutput:
        return PromptProcessorOutput(
            text_embeddings=self.text, uncond_text_embeddings=self.uncond,
            text_embeddings_vd=self.text.expand(4, -1, -1), uncond_text_embeddings_vd=self.uncond.expand(4, -1, -1),
            directions=[], direction2idx={}, use_perp_neg=False, perp_neg_f_sb=(1, 0.5, -0.6088),
            perp_neg_f_fsb=(1, 0.5, 0.967), perp_neg_f_fs=(4, 0.5, -2.426), perp_neg_f_sf=(4, 0.5, -2.426),
            prompt=self.cfg.prompt, prompts_vd=[])
