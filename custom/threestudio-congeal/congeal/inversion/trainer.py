"""Textual inversion: learn a token embedding y* that describes a photo collection (denoiser-agnostic trainer).

    ti = TextualInversion(tokenizer, text_encoder, denoiser, TextualInversionConfig(token="<congeal>", init_word="toy"))
    ti.set_images(images)                   # [N,3,H,W] in [0,1]; encoded once, latents cached
    ti.train(1000); ti.save_embeds("out/")  # -> out/learned_embeds.safetensors (diffusers format)

The denoiser follows `congeal.inversion.denoiser.Denoiser` (`eps = denoiser(noisy_latents, t, text_embeddings)`,
plus `encode`, `schedule`, `prediction_type`): `congeal.inversion.diffusers_denoiser.DiffusersDenoiser` (any SD-format
model) or `congeal.inversion.mvdream_denoiser.MVDreamDenoiser` (MVDream's UNet in single-view mode). The settings are
`congeal.inversion.inversion_config.TextualInversionConfig`. Only the placeholder rows
are trained (AdamW); the text encoder and denoiser stay frozen. A dedicated random generator drives every random
choice (images, timesteps, noise, templates), so a run resumed from a checkpoint continues the same trajectory.

Data-parallel training (`set_shard(rank, world_size)`): every process draws the random numbers of the *whole*
batch (`world_size` x its own) from the same generator and keeps its own slice, so the processes' generators stay
in step and the union of their batches is exactly the batch one process would train on; averaging the rows'
gradients over processes (mean of per-process means) then gives one process's gradient of the whole batch.
"""
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.inversion.inversion_config import TextualInversionConfig
from congeal.inversion.denoiser import Denoiser
from congeal.inversion.embedding_files import LearnedEmbeds
from congeal.inversion.placeholder_tokens import PlaceholderTokens, TrainableRows, add_placeholder_tokens

# object masks in [0,1], one per photo; their own dims, so a size mismatch is an InputError, not a type error
Masks = Union[Float[Tensor, "Bm 1 Hm Wm"], Float[Tensor, "Bm Hm Wm"], Float[Tensor, "Bm Hm Wm 1"]]

def resolve_precision(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """The dtype for frozen weights under `mode` on `device` (None = keep float32)."""
    if mode == "no" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def _grad_scaler(device: torch.device, enabled: bool):
    # torch.amp.GradScaler is torch >= 2.3; threestudio users often run older versions
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


class TextualInversion:
    """Trains the placeholder rows of `text_encoder` against `denoiser`'s denoising loss.

    Args:
        tokenizer, text_encoder: transformers CLIP pair; the placeholder is added to them (in place).
        denoiser: see `Denoiser` (None: set it later with `set_denoiser`).
        config: TextualInversionConfig.
        device: where to train (default: the text encoder's device).
        slots: an already-added placeholder to train instead of adding `config.token`.
    """

    def __init__(self, tokenizer, text_encoder, denoiser: Optional[Denoiser],
                 config: Optional[TextualInversionConfig] = None, device: Optional[Union[str, torch.device]] = None,
                 slots: Optional[PlaceholderTokens] = None):
        self.config = config or TextualInversionConfig()
        self.config.validate()
        self.device = torch.device(device) if device is not None else next(text_encoder.parameters()).device
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.slots = slots or add_placeholder_tokens(tokenizer, text_encoder, self.config.token,
                                                     self.config.init_word, self.config.n_vectors)
        self.weight_dtype = resolve_precision(self.config.mixed_precision, self.device)
        text_encoder.to(self.device).eval()
        if self.weight_dtype is not None:
            text_encoder.to(self.weight_dtype)
        self.rows = TrainableRows(text_encoder, self.slots).to(self.device)
        prompts = [t.format(self.slots.prompt_string) for t in self.config.templates]
        self.template_ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                                      truncation=True, return_tensors="pt").input_ids.to(self.device)  # [T,L]
        self.optimizer = torch.optim.AdamW([self.rows.rows], lr=self.config.lr, betas=self.config.adam_betas,
                                           eps=self.config.adam_eps, weight_decay=self.config.weight_decay)
        # fp16 gradients through a 23-layer encoder underflow without loss scaling; bf16/fp32 need none
        self.scaler = _grad_scaler(self.device, enabled=self.weight_dtype == torch.float16)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.shard = (0, 1)  # (rank, world size): see set_shard
        self.images_digest: Optional[str] = None  # sha256 of the encoded collection (set_images)
        self._expected_images: Optional[str] = None  # the digest a loaded checkpoint was trained on
        self.step_count = 0
        self._losses: List[float] = []
        self._pending: List[Tensor] = []  # per-step losses still on the device: no host sync inside the loop
        self.latent_mean: Optional[Tensor] = None  # [N',C,h,w] (N' = 2N with flips)
        self.latent_std: Optional[Tensor] = None
        self.denoiser: Optional[Denoiser] = None
        if denoiser is not None:
            self.set_denoiser(denoiser)

    def set_denoiser(self, denoiser: Denoiser) -> None:
        """Use `denoiser` from now on (frozen, moved to the device and weight dtype); cached latents are dropped."""
        if isinstance(denoiser, torch.nn.Module):
            denoiser.to(self.device).eval().requires_grad_(False)
            if self.weight_dtype is not None:
                denoiser.to(self.weight_dtype)
        self.denoiser = denoiser
        self.latent_mean = self.latent_std = None

    def set_shard(self, rank: int, world_size: int) -> None:
        """Train as process `rank` of `world_size` data-parallel processes (see the module docstring).

        Each call's batch is this process's slice; random draws are made for all `world_size` slices.
        """
        if not 0 <= int(rank) < int(world_size):
            raise InputError(None, f"shard rank {rank} of world size {world_size}", "use 0 <= rank < world_size")
        self.shard = (int(rank), int(world_size))

    def _sliced(self, draw: Callable[[int], Tensor], n: int) -> Tensor:
        """`draw(n * world)` (leading dim) and keep this shard's `n` rows: identical generator use on every rank."""
        rank, world = self.shard
        if world == 1:
            return draw(n)
        return draw(n * world)[rank * n:(rank + 1) * n]

    def _require_denoiser(self) -> Denoiser:
        if self.denoiser is None:
            raise InputError(None, "no denoiser set", "pass one to TextualInversion(...) or call set_denoiser()")
        return self.denoiser

    # ---- data ---------------------------------------------------------------------------------------------
    def prepare_images(self, images: Union[Float[Tensor, "B 3 H W"], Float[Tensor, "B H W 3"]],
                       masks: Optional[Masks] = None) -> Float[Tensor, "B 3 R R"]:
        """Photos in [0,1] (masks used with background "white") -> `[B,3,R,R]` at `config.resolution`, on the device."""
        if images.dim() != 4 or 3 not in (images.shape[1], images.shape[-1]):
            raise InputError(None, f"images must be [B,3,H,W] or [B,H,W,3], got {tuple(images.shape)}",
                             "pass RGB images in [0,1]")
        if images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)
        images = images.to(self.device, torch.float32)
        if masks is not None and self.config.background == "white":
            masks = masks.to(self.device, torch.float32)
            masks = masks.reshape(masks.shape[0], 1, *masks.shape[-2:]) if masks.dim() == 3 or masks.shape[1] == 1 \
                else masks.permute(0, 3, 1, 2)[:, :1]
            if masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
                raise InputError(None, f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}",
                                 "pass one [H,W] mask per photo, at the photo's size")
            images = images * masks + (1.0 - masks)
        size = self.config.resolution
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, (size, size), mode="bilinear", align_corners=False, antialias=True)
        return images.clamp(0.0, 1.0)

    @torch.no_grad()
    def set_images(self, images: Union[Float[Tensor, "N 3 H W"], Float[Tensor, "N H W 3"]],
                   masks: Optional[Masks] = None,
                   chunk: int = 8) -> None:
        """Encode the collection once; every step samples from the cached latent posteriors.

        Args:
            images: in [0,1] (resized to `config.resolution`). masks: optional, in [0,1].
            chunk: images per VAE call.
        """
        if images.shape[0] == 0:
            raise InputError(None, "the collection has no images", "pass at least one photo")
        images = self.prepare_images(images, masks)
        if self.config.flip:
            images = torch.cat([images, images.flip(-1)], dim=0)
        means, stds = [], []
        for start in range(0, images.shape[0], chunk):
            mean, std = self._require_denoiser().encode(self._weights(images[start:start + chunk]))
            means.append(mean.float())
            stds.append(std.float())
        self.latent_mean, self.latent_std = torch.cat(means), torch.cat(stds)
        self.images_digest = _digest(images)
        if self._expected_images is not None and self._expected_images != self.images_digest:
            raise InputError(None, "these photos (or their masks, size, background) are not the ones the resumed "
                             "checkpoint was trained on", "resume with the same photos and settings, or start over")

    def _weights(self, x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
        return x if self.weight_dtype is None else x.to(self.weight_dtype)

    def _randint(self, high: int, n: int, low: int = 0, generator: Optional[torch.Generator] = None
                 ) -> Int[Tensor, " n"]:
        g = generator or self.generator
        return self._sliced(lambda m: torch.randint(low, high, (m,), generator=g, device=self.device), n)

    def _randn(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
               dtype: torch.dtype = torch.float32) -> Float[Tensor, "..."]:
        g = generator or self.generator
        return self._sliced(lambda m: torch.randn((m, *shape[1:]), generator=g, device=self.device, dtype=dtype),
                            shape[0])

    def sample_latents(self, batch_size: int) -> Float[Tensor, "B C h w"]:
        """Latents drawn from the cached posteriors of `batch_size` random collection images."""
        if self.latent_mean is None:
            raise InputError(None, "no images set", "call set_images(images) before training")
        index = self._randint(self.latent_mean.shape[0], batch_size)
        mean, std = self.latent_mean[index], self.latent_std[index]
        return mean + std * self._randn(mean.shape)

    # ---- loss ---------------------------------------------------------------------------------------------
    def text_embeddings(self, template_index: Int[Tensor, " B"]) -> Float[Tensor, "B L D"]:
        """Template indices -> text-encoder hidden states (grad flows into the rows)."""
        return self.text_encoder(self.template_ids[template_index])[0]

    def loss_on_latents(self, latents: Float[Tensor, "B C h w"], generator: Optional[torch.Generator] = None
                        ) -> Float[Tensor, ""]:
        """Denoising loss for clean latents with random timesteps, noise and templates."""
        g = generator or self.generator
        b = latents.shape[0]
        t = self._randint(self.config.max_timestep, b, low=self.config.min_timestep, generator=g)
        noise = self._randn(latents.shape, generator=g, dtype=latents.dtype)
        template = self._randint(self.template_ids.shape[0], b, generator=g)
        schedule = self._require_denoiser().schedule
        noisy = schedule.add_noise(latents, noise, t)
        prediction = self.denoiser(self._weights(noisy), t, self.text_embeddings(template))
        target = schedule.target(latents, noise, t, self.denoiser.prediction_type)
        return F.mse_loss(prediction.float(), target.float())

    def loss_on_images(self, images: Union[Float[Tensor, "B 3 H W"], Float[Tensor, "B H W 3"]],
                       masks: Optional[Masks] = None) -> Float[Tensor, ""]:
        """One denoising loss on a batch of photos in [0,1] (encoded now, not cached).

        With `config.flip`, each photo is mirrored with probability 1/2.
        """
        with torch.no_grad():
            images = self.prepare_images(images, masks)
            if self.config.flip:
                mirror = self._sliced(lambda m: torch.rand(m, generator=self.generator, device=self.device),
                                      images.shape[0]) < 0.5
                images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
            mean, std = self._require_denoiser().encode(self._weights(images))
            latents = mean.float() + std.float() * self._randn(mean.shape)
        return self.loss_on_latents(latents)

    def optimizer_step(self, loss: Optional[Float[Tensor, ""]] = None) -> None:
        """Backpropagate `loss` (if given) and apply AdamW to the rows; keeps the table copy in sync."""
        if loss is not None:
            self.scaler.scale(loss).backward()
        if self.rows.rows.grad is None:
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.rows.sync_()
        self.step_count += 1

    @property
    def losses(self) -> List[float]:
        """Per-step training losses of the whole run (resumed runs included)."""
        if self._pending:
            self._losses.extend(torch.stack(self._pending).float().cpu().tolist())
            self._pending.clear()
        return self._losses

    def step(self) -> Float[Tensor, ""]:
        """One training step on a random batch of the cached collection; returns its loss (detached, on device)."""
        loss = self.loss_on_latents(self.sample_latents(self.config.batch_size))
        self.optimizer_step(loss)
        loss = loss.detach()
        self._pending.append(loss)
        return loss

    def train(self, steps: Optional[int] = None, progress: bool = True, log_every: int = 0,
              log: Callable[[str], None] = print, checkpoint: Optional[PathLike] = None,
              checkpoint_every: int = 0) -> List[float]:
        """Run until `steps` total steps (default `config.steps`); resumes from `step_count`.

        Args:
            progress: show a tqdm bar. log_every: print the mean loss of the last `log_every` steps.
            checkpoint, checkpoint_every: save a resumable checkpoint every so many steps (and at the end).
        Returns:
            The per-step losses of the whole run so far.
        """
        from tqdm.auto import tqdm

        total = self.config.steps if steps is None else int(steps)
        bar = tqdm(total=total, initial=self.step_count, disable=not progress, desc="textual inversion",
                   dynamic_ncols=True)
        refresh = log_every or 25  # reading a loss waits for the device: only every `refresh` steps
        while self.step_count < total:
            self.step()
            bar.update(1)
            if self.step_count % refresh == 0 or self.step_count == total:
                window = self.losses[-refresh:]
                mean = sum(window) / len(window)
                bar.set_postfix(loss=f"{mean:.4f}")
                if log_every and self.step_count % log_every == 0:
                    (bar.write if progress else log)(f"step {self.step_count}/{total} loss {mean:.5f}")
            if checkpoint is not None and checkpoint_every and self.step_count % checkpoint_every == 0:
                self.save_checkpoint(checkpoint)
        bar.close()
        if checkpoint is not None:
            self.save_checkpoint(checkpoint)
        return self.losses

    @torch.no_grad()
    def evaluate(self, n_samples: int = 32, seed: int = 1234) -> float:
        """Deterministic loss (fixed images, timesteps, noise, templates; posterior means) for before/after checks."""
        if self.latent_mean is None:
            raise InputError(None, "no images set", "call set_images(images) first")
        g = torch.Generator(device=self.device).manual_seed(seed)
        index = torch.randint(0, self.latent_mean.shape[0], (n_samples,), generator=g, device=self.device)
        total = 0.0
        for start in range(0, n_samples, self.config.batch_size):
            part = index[start:start + self.config.batch_size]
            total += float(self.loss_on_latents(self.latent_mean[part], generator=g)) * part.numel()
        return total / n_samples

    # ---- outputs and resume -------------------------------------------------------------------------------
    def learned_embeds(self) -> LearnedEmbeds:
        """{token: float32 rows} (CPU copy)."""
        return self.rows.learned_embeds()

    def save_embeds(self, path: PathLike) -> Path:
        """Write `learned_embeds.safetensors` (a folder or file path); see `congeal.inversion.embedding_files`."""
        from congeal.inversion.embedding_files import save_learned_embeds

        return save_learned_embeds(path, self.learned_embeds())

    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": "congeal-ti-checkpoint-v1",
            "config": asdict(self.config),
            "tokens": list(self.slots.tokens),
            "rows": self.rows.rows.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step_count,
            "losses": list(self.losses),
            "images": self.images_digest,
        }

    def load_state_dict(self, state: Dict[str, Any], path: Optional[PathLike] = None) -> None:
        """Restore rows, optimizer, generator and history saved by `state_dict`.

        Raises:
            InputError: a checkpoint of another token, vector count or text-encoder size.
        """
        if state.get("format") != "congeal-ti-checkpoint-v1":
            raise InputError(path, "is not a congeal textual-inversion checkpoint", "start without --resume")
        if list(state["tokens"]) != list(self.slots.tokens) or tuple(state["rows"].shape) != tuple(self.rows.rows.shape):
            raise InputError(path, f"checkpoint is for tokens {state['tokens']} with rows {tuple(state['rows'].shape)}, "
                             f"this run has {self.slots.tokens} with {tuple(self.rows.rows.shape)}",
                             "use the same --token/--n-vectors/--model, or a fresh --out folder")
        # a resumed run continues the same trajectory only with the same settings (more steps are fine)
        changed = _changed_settings(state.get("config", {}), asdict(self.config))
        if changed:
            raise InputError(path, "checkpoint was trained with other settings: " + ", ".join(changed),
                             "resume with the same settings (only --steps may change), or start over")
        with torch.no_grad():
            self.rows.rows.copy_(state["rows"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"].cpu())
        self.step_count = int(state["step"])
        self._losses, self._pending = list(state["losses"]), []
        self._expected_images = state.get("images")
        if self.images_digest is not None and self._expected_images not in (None, self.images_digest):
            raise InputError(path, "checkpoint was trained on other photos (or masks, size, background)",
                             "resume with the same photos and settings, or start over")
        self.rows.sync_()

    def save_checkpoint(self, path: PathLike) -> Path:
        """Atomically write the resumable state (torch pickle of tensors and plain types)."""
        from congeal.common.atomic import save_torch

        save_torch(path, self.state_dict())  # a full disk -> WriteError naming the file (torch gives no errno)
        return Path(path)

    def load_checkpoint(self, path: PathLike) -> None:
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise InputError(path, f"cannot be read as a checkpoint ({type(error).__name__})",
                             "delete it to start over") from error
        self.load_state_dict(state, path)


def _digest(images: Float[Tensor, "..."]) -> str:
    """sha256 of a float tensor's values (the photos a run trains on, as prepared)."""
    import hashlib

    return hashlib.sha256(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def _changed_settings(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """'name: saved -> current' for every setting except `steps` that differs."""
    plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - tuples come back as lists
    return [f"{key}: {saved[key]!r} -> {current.get(key)!r}" for key in sorted(saved)
            if key != "steps" and plain(saved[key]) != plain(current.get(key))]


def loss_summary(losses: Sequence[float], window: Optional[int] = None) -> Dict[str, float]:
    """first/last loss as means over a window (default: 10% of the run, 1..50 steps); per-step losses are noisy."""
    if not losses:
        return {"first_loss": math.nan, "last_loss": math.nan, "window": 0}
    window = window or max(1, min(50, len(losses) // 10))
    return {"first_loss": sum(losses[:window]) / window, "last_loss": sum(losses[-window:]) / window,
            "window": window}
