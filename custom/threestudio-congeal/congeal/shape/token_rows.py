"""y*'s rows: the trainable tensors of the textual-inversion guidance, copied in from a file or a checkpoint.

    rows = trainable_rows(ti_guidance)                        # [n_vectors, dim] tensors, one optimizer group
    copy_into_rows(rows, list(embeds.values()), "a.safetensors")
    y_star = current_y_star(ti_guidance, snapshot)            # {token: float32 CPU copy}

The rows live in the guidance, outside the system's nn.Module, so that the frozen text encoder and UNet beside them
stay out of checkpoints; y* itself is saved explicitly (`checkpoint_state`).
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.errors import InputError


def trainable_rows(guidance: Optional[Any]) -> List[torch.nn.Parameter]:
    """y*'s trainable tensors in a textual-inversion guidance.

    Args:
        guidance: the TI guidance, or None when stage 1 is skipped.
    Returns:
        its own `trainable_parameters()` when it has them, else its parameters that need a gradient; [] for None.
    """
    if guidance is None:
        return []
    if hasattr(guidance, "trainable_parameters"):
        return list(guidance.trainable_parameters())
    return [p for p in guidance.parameters() if p.requires_grad]


def copy_into_rows(rows: Sequence[Tensor], tensors: Sequence[Tensor], source: Optional[str] = None) -> None:
    """Overwrite the rows with saved values, in order, keeping each row's device and dtype.

    Args:
        rows: the trainable rows (`trainable_rows`).
        tensors: the saved values, one per row, of the same shapes.
        source: where the values come from (a file, "the checkpoint"): named by the error.
    Raises:
        InputError: the shapes differ (another n_vectors or text encoder wrote them); nothing is copied then.
    """
    shapes = [tuple(t.shape) for t in tensors]
    wanted = [tuple(p.shape) for p in rows]
    if shapes != wanted:
        raise InputError(source, f"y* of shape {shapes} does not fit the TI guidance's {wanted}",
                         "use the same ti_guidance.n_vectors / text encoder as the run that wrote it")
    with torch.no_grad():
        for p, t in zip(rows, tensors):
            p.copy_(t.to(p.device, p.dtype))


def snapshot_rows(embeds: Dict[str, Float[Tensor, "_n _dim"]]) -> Dict[str, Float[Tensor, "_n _dim"]]:
    """Args: embeds: {token: [n_vectors, dim]} live rows. Returns: detached float32 CPU copies (never aliases)."""
    return {k: v.detach().float().cpu().clone() for k, v in embeds.items()}


def current_y_star(ti_guidance: Optional[Any],
                   snapshot: Optional[Dict[str, Float[Tensor, "_n _dim"]]]) -> Dict[str, Float[Tensor, "_n _dim"]]:
    """y* now.

    Args:
        ti_guidance: the TI guidance (its `learned_embeds()`: {token: live rows}), or None when stage 1 is skipped.
        snapshot: the last y* read from a file or checkpoint.
    Returns:
        {token: float32 [n_vectors, dim]} on the CPU: a copy of the live rows when there is a TI guidance, else the
        snapshot.
    """
    if ti_guidance is not None:
        return snapshot_rows(ti_guidance.learned_embeds())
    assert snapshot is not None, "no textual-inversion guidance and no y* loaded"
    return snapshot
