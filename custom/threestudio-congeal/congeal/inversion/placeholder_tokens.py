"""Placeholder tokens in a transformers CLIP tokenizer + text encoder, and the rows that learn them.

    slots = add_placeholder_tokens(tokenizer, text_encoder, "<congeal>", init_word="toy", n_vectors=2)
    rows = TrainableRows(text_encoder, slots)       # nn.Parameter [2, dim]; every other row stays frozen
    prompt = slots.expand("a photo of a <congeal>") # -> "a photo of a <congeal> <congeal>_1"

A token of n vectors is n tokenizer entries `<t>`, `<t>_1`, ..., `<t>_{n-1}` (diffusers' convention), so files we
write load with diffusers' `load_textual_inversion`, and prompts say just `<t>`.
Training never touches the embedding table: a forward hook on the input-embedding layer swaps the trainable rows in
at placeholder positions, so the gradient reaches only `TrainableRows.rows` and every other row stays bit-identical.
"""
import inspect
import re
from dataclasses import dataclass
from typing import List

import torch
from jaxtyping import Float
from torch import Tensor, nn

from congeal.common.errors import InputError
from congeal.inversion.embedding_files import EmbedsArgument, LearnedEmbeds


@dataclass
class PlaceholderTokens:
    """The tokenizer entries of one placeholder.

    Attributes:
        token: the name users write in prompts, e.g. "<congeal>".
        tokens: the n_vectors tokenizer entries [token, token_1, ...].
        ids: their tokenizer ids (consecutive when freshly added).
    """

    token: str
    tokens: List[str]
    ids: List[int]

    @property
    def n_vectors(self) -> int:
        return len(self.ids)

    @property
    def prompt_string(self) -> str:
        return " ".join(self.tokens)

    def expand(self, prompt: str) -> str:
        """Replace each standalone `token` in `prompt` by all its entries ("<t>" -> "<t> <t>_1 ..."); idempotent."""
        if self.n_vectors == 1:
            return prompt
        # skip entries ("<t>_1") and tokens that are already expanded
        pattern = re.escape(self.token) + r"(?!_\d)(?! " + re.escape(self.tokens[1]) + r"(?!\d))"
        return re.sub(pattern, lambda _: self.prompt_string, prompt)


def placeholder_names(token: str, n_vectors: int) -> List[str]:
    """[token, token_1, ..., token_{n-1}] (diffusers' multi-vector naming)."""
    return [token] + [f"{token}_{i}" for i in range(1, n_vectors)]


def _check_token(tokenizer, token: str, n_vectors: int) -> None:
    if not token or any(ch.isspace() for ch in token):
        raise InputError(None, f"placeholder token {token!r} is empty or contains whitespace",
                         "use one word in angle brackets, e.g. <congeal>")
    if int(n_vectors) < 1:
        raise InputError(None, f"n_vectors must be >= 1, got {n_vectors}", "use 1 (default) to 8")
    vocab = tokenizer.get_vocab()
    for name in placeholder_names(token, n_vectors):
        if name in vocab:
            raise InputError(None, f"placeholder token {name!r} already exists in the tokenizer",
                             "pick a new name, e.g. <congeal-2>, or load a fresh tokenizer")
    pieces = tokenizer.tokenize(token)
    if len(pieces) == 1 and pieces[0] in vocab:
        raise InputError(None, f"placeholder token {token!r} is an ordinary word of the vocabulary ({pieces[0]})",
                         "use a string no text contains, e.g. <congeal>")


def init_word_id(tokenizer, init_word: str) -> int:
    """The single tokenizer id of `init_word`.

    Raises:
        InputError: if the word is empty or splits into several tokens.
    """
    ids = tokenizer.encode(init_word or "", add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise InputError(None, f"init word {init_word!r} is {len(ids)} tokens {pieces}, not one",
                         "pick a single-token word close to the photos' category, e.g. 'toy', 'car', 'mug'")
    return int(ids[0])


def _resize(text_encoder, size: int) -> None:
    table = text_encoder.get_input_embeddings().weight
    if size <= table.shape[0]:
        return
    kwargs = {}
    if "mean_resizing" in inspect.signature(text_encoder.resize_token_embeddings).parameters:
        kwargs["mean_resizing"] = False  # rows are set right after; skip the covariance of a 49k x 1024 table
    text_encoder.resize_token_embeddings(size, **kwargs)


def add_placeholder_tokens(tokenizer, text_encoder, token: str, init_word: str,
                           n_vectors: int = 1) -> PlaceholderTokens:
    """Add `n_vectors` entries named after `token`, each initialised to the embedding of `init_word`.

    Args:
        tokenizer: a transformers CLIP tokenizer (modified in place).
        text_encoder: its CLIPTextModel (embedding table grown in place; no other row changes).
        token: placeholder name, e.g. "<congeal>"; must be new to the tokenizer.
        init_word: a word that is exactly one token.
        n_vectors: number of embedding vectors the token stands for.
    Returns:
        The PlaceholderTokens.
    Raises:
        InputError: placeholder already present / a plain word / whitespace; init word not a single token.
    """
    _check_token(tokenizer, token, n_vectors)
    init_id = init_word_id(tokenizer, init_word)
    names = placeholder_names(token, n_vectors)
    added = tokenizer.add_tokens(names)
    if added != n_vectors:
        raise InputError(None, f"the tokenizer accepted {added} of {n_vectors} placeholder entries {names}",
                         "pick another placeholder name")
    ids = tokenizer.convert_tokens_to_ids(names)
    _resize(text_encoder, len(tokenizer))
    with torch.no_grad():
        table = text_encoder.get_input_embeddings().weight
        table[ids] = table[init_id].clone()
    return PlaceholderTokens(token, names, list(ids))


def install_embeds(tokenizer, text_encoder, embeds: EmbedsArgument) -> List[PlaceholderTokens]:
    """Put learned embeddings into a tokenizer + text encoder (what diffusers' `load_textual_inversion` does).

    Entries that already exist with the same count are overwritten (a live embedding being refreshed); new ones
    are added.

    Args:
        embeds: token -> [n_vectors, dim] (see `congeal.inversion.embedding_files`).
    Returns:
        One PlaceholderTokens per token.
    Raises:
        InputError: dim mismatch with the text encoder, or an existing token with another vector count.
    """
    dim = text_encoder.get_input_embeddings().weight.shape[1]
    out = []
    for token, rows in embeds.items():
        rows = rows[None] if rows.dim() == 1 else rows
        if rows.shape[1] != dim:
            raise InputError(None, f"embedding for {token!r} has dim {rows.shape[1]}, the text encoder has {dim}",
                             "use the text encoder the embedding was learned with (SD2.1-base: 1024)")
        names = placeholder_names(token, rows.shape[0])
        vocab = tokenizer.get_vocab()
        present = [name in vocab for name in names]
        if any(present) and not all(present) or f"{token}_{rows.shape[0]}" in vocab:
            raise InputError(None, f"token {token!r} is already in the tokenizer with another number of vectors",
                             "load a fresh tokenizer or pick another placeholder name")
        if not all(present):
            _check_token(tokenizer, token, rows.shape[0])
            tokenizer.add_tokens(names)
        ids = tokenizer.convert_tokens_to_ids(names)
        _resize(text_encoder, len(tokenizer))
        with torch.no_grad():
            table = text_encoder.get_input_embeddings().weight
            table[ids] = rows.to(table.device, table.dtype)
        out.append(PlaceholderTokens(token, names, list(ids)))
    return out


class TrainableRows(nn.Module):
    """The learnable rows of one placeholder, swapped into the text encoder's input embeddings by a hook.

    Args:
        text_encoder: CLIPTextModel holding the placeholder (its parameters are frozen here).
        slots: the placeholder, from `add_placeholder_tokens`.
    Attributes:
        rows: nn.Parameter float32 [n_vectors, dim], initialised from the table.
    """

    def __init__(self, text_encoder, slots: PlaceholderTokens):
        super().__init__()
        self.slots = slots
        embedding = text_encoder.get_input_embeddings()
        table = embedding.weight
        self.rows = nn.Parameter(table[slots.ids].detach().to(torch.float32).clone())
        lut = torch.full((table.shape[0],), -1, dtype=torch.long)
        lut[torch.as_tensor(slots.ids)] = torch.arange(slots.n_vectors)
        self.register_buffer("lut", lut, persistent=False)
        for p in text_encoder.parameters():
            p.requires_grad_(False)
        self._embedding = [embedding]  # a list: not a submodule, so state_dict holds only the rows
        self._handle = embedding.register_forward_hook(self._swap_in)

    def _swap_in(self, module: nn.Module, inputs, output: Float[Tensor, "B L D"]) -> Float[Tensor, "B L D"]:
        # [B,L] ids -> [B,L] slot index (-1 = ordinary token); batched, no host sync
        slot = self.lut.to(inputs[0].device)[inputs[0]]
        learned = self.rows.to(output.dtype)[slot.clamp(min=0)]
        return torch.where((slot >= 0)[..., None], learned, output)

    @torch.no_grad()
    def sync_(self) -> None:
        """Copy the rows into the embedding table, so the encoder is correct without the hook too."""
        table = self._embedding[0].weight
        table[self.slots.ids] = self.rows.detach().to(table.device, table.dtype)

    def learned_embeds(self) -> LearnedEmbeds:
        """{token: float32 [n_vectors, dim]} on the CPU, the diffusers file layout."""
        return {self.slots.token: self.rows.detach().to("cpu", torch.float32).clone()}

    def remove(self) -> None:
        """Detach the hook (after `sync_()` the table alone gives the same embeddings)."""
        self.sync_()
        self._handle.remove()
