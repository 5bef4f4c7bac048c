"""`learned_embeds.safetensors`: learned token embeddings in the diffusers textual-inversion format.

    save_learned_embeds("out/learned_embeds.safetensors", {"<congeal>": rows})   # rows float32 [n_vectors, dim]
    embeds = load_learned_embeds("out/learned_embeds.safetensors")             # {"<congeal>": [n_vectors, dim]}
    key = embeds_hash(embeds)                                                  # sha256 hex, for cache keys

The file holds one tensor per placeholder token, metadata {"format": "pt"}, exactly as diffusers' textual-inversion
script writes it, so `StableDiffusionPipeline.load_textual_inversion(path)` loads it. A multi-vector token
`<t>` of n rows stands for the n tokenizer entries `<t>`, `<t>_1`, ..., `<t>_{n-1}` (diffusers' convention).
"""
import hashlib
from pathlib import Path
from typing import Dict, Union

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.atomic import write_safetensors
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.weights.torch_files import load_torch_file

FILE_NAME = "learned_embeds.safetensors"
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # torch pickles of the same dict; anything else: safetensors
# token -> its rows [n_vectors, dim] (one token may have more vectors than another, hence the unbound dims)
LearnedEmbeds = Dict[str, Float[Tensor, "_n_vectors _dim"]]
# what callers may pass: a single vector [dim] stands for [1, dim]
EmbedsArgument = Dict[str, Union[Float[Tensor, "_n_vectors _dim"], Float[Tensor, " _dim"]]]


def save_learned_embeds(path: PathLike, embeds: EmbedsArgument) -> Path:
    """Write `{token: float32 [n_vectors, dim]}` atomically with metadata {"format": "pt"}.

    Args:
        path: destination file, or a folder (an existing one, or a path without suffix) for
            `<folder>/learned_embeds.safetensors`.
        embeds: token -> [n_vectors, dim] (a 1-D [dim] tensor is stored as [1, dim]).
    Returns:
        The written path.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    tensors = {}
    for token, rows in embeds.items():
        rows = rows.detach().to("cpu", torch.float32)
        tensors[token] = (rows[None] if rows.dim() == 1 else rows).contiguous()
    write_safetensors(path, tensors, metadata={"format": "pt"})
    return path


def load_learned_embeds(path: PathLike) -> LearnedEmbeds:
    """Read a diffusers textual-inversion file (`.safetensors`, or a torch `.bin`/`.pt` of the same dict).

    Returns:
        token -> float32 [n_vectors, dim] on the CPU.
    Raises:
        InputError: missing/unreadable file, empty dict, a torch file holding more than tensors and plain data, or
            entries that are not [n_vectors, dim] tensors of finite floats.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise InputError(path, "learned-embedding file not found",
                         "run `congeal invert ... --out DIR` first and pass DIR/learned_embeds.safetensors")
    if path.suffix in TORCH_SUFFIXES:  # weights_only, never a full unpickle: the file may be a stranger's
        raw = load_torch_file(path, "re-create it with `congeal invert`", what="learned-embedding file")
    else:
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except Exception as error:  # a truncated or foreign file: say which, not a deep traceback
            message = (str(error).splitlines() or [""])[0][:200]
            raise InputError(path, f"cannot be read as a learned-embedding file ({type(error).__name__}: "
                                   f"{message})", "re-create it with `congeal invert`") from None
    if isinstance(raw, dict) and "string_to_param" in raw:  # Automatic1111 layout
        table = raw["string_to_param"]
        if not isinstance(table, dict) or "*" not in table:
            raise InputError(path, "has a string_to_param entry without its '*' tensor",
                             "re-create it with `congeal invert`")
        raw = {str(raw.get("name", "<embedding>")): table["*"]}
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, "holds no token embeddings", "re-create it with `congeal invert`")
    embeds = {}
    for token, rows in raw.items():
        if not isinstance(rows, Tensor) or rows.dim() not in (1, 2) or rows.numel() == 0 \
                or not rows.is_floating_point() or not bool(torch.isfinite(rows).all()):
            raise InputError(path, f"entry {str(token)[:80]!r} is not a [n_vectors, dim] tensor of finite floats",
                             "re-create it with `congeal invert`")
        embeds[str(token)] = (rows[None] if rows.dim() == 1 else rows).to(torch.float32)
    return embeds


def embeds_hash(embeds: EmbedsArgument) -> str:
    """sha256 hex digest over token names, shapes and float32 values (order-independent)."""
    digest = hashlib.sha256()
    for token in sorted(embeds):
        rows = embeds[token].detach().to("cpu", torch.float32).contiguous()
        digest.update(token.encode("utf-8"))
        digest.update(str(tuple(rows.shape)).encode("ascii"))
        digest.update(rows.numpy().tobytes())
    return digest.hexdigest()
