"""A stage's training loss: the weighted sum of its `loss_*` terms, and the scalar values to log.

    loss = weighted_sum(guidance_out, lambda key: cfg.loss[key])           # loss_sds * lambda_sds + ...
    loss = weighted_sum(regularisers, weight, start=loss)
    scalars = scalar_values(ti_out, prefix="train/")                       # {"train/loss_ti": 0.12, ...}

Each term `loss_<name>` is weighted by the config's `lambda_<name>`; other outputs are logged but not summed.
"""
from typing import Any, Callable, Dict, Union

import torch
from torch import Tensor


def weight_key(name: str) -> str:
    """Args: name: a term's name, `loss_<x>`. Returns: its weight's key, `lambda_<x>`."""
    return name.replace("loss_", "lambda_")


def weighted_sum(terms: Dict[str, Any], weight: Callable[[str], float],
                 start: Union[float, Tensor] = 0.0) -> Union[float, Tensor]:
    """Args:
        terms: named outputs; the `loss_*` ones are summed, in order.
        weight: `lambda_<x>` -> its value at this step.
        start: what to add the terms to (the loss so far).
    Returns:
        start + sum(term * weight(lambda_<x>)); `start` itself when there is no `loss_*` term.
    """
    loss = start
    for name, value in terms.items():
        if name.startswith("loss_"):
            loss = loss + value * weight(weight_key(name))
    return loss


def scalar_values(out: Dict[str, Any], prefix: str) -> Dict[str, float]:
    """Args: out: named outputs. prefix: put before each name (e.g. "train/").
    Returns: {prefix + name: float} for each one-element tensor (what a logger can plot)."""
    return {f"{prefix}{name}": float(value.detach()) for name, value in out.items()
            if torch.is_tensor(value) and value.numel() == 1}
