"""What a congeal checkpoint holds besides Lightning's own state: y*, the stage switch, and the random generators.

    write_resume_state(checkpoint, y_star, ti_steps, gather_generators(...), ti_generator_state)  # on save
    state = read_resume_state(checkpoint)                    # on load: state.y_star, state.rng, ...

Keys (all tensors or numbers): `congeal_y_star` {token: float32 [n, dim]}, `congeal_ti_steps` int, `congeal_rng`
(`generator_state.gather_generators`), `congeal_ti_generator` (the TI trainer's generator state; the same on every
rank, each draws the whole batch's numbers).
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor


@dataclass
class ResumeState:
    """The congeal part of a loaded checkpoint (None for what the checkpoint does not hold)."""

    y_star: Optional[Dict[str, Tensor]]
    """{token: float32 [n_vectors, dim]} on the CPU."""
    ti_steps: Optional[int]
    """The `ti_steps` the checkpoint was trained with."""
    rng: Optional[Dict[str, Any]]
    """Every rank's generator states, restored at the first resumed step."""
    ti_generator: Optional[Tensor]
    """The textual-inversion trainer's generator state."""

    def ti_steps_warning(self, configured: int) -> Optional[str]:
        """Args: configured: the config's ti_steps. Returns: a warning when the checkpoint's differs, else None."""
        if self.y_star is None or self.ti_steps is None or int(self.ti_steps) == int(configured):
            return None
        return (f"congeal: checkpoint was trained with ti_steps={self.ti_steps}, config says {configured}; "
                "the stage follows the config")


def ti_generator(ti_guidance: Optional[Any]) -> Optional[torch.Generator]:
    """Args: ti_guidance: the textual-inversion guidance or None. Returns: its trainer's generator, if any."""
    return getattr(getattr(ti_guidance, "trainer", None), "generator", None)


def write_resume_state(checkpoint: Dict[str, Any], y_star: Dict[str, Tensor], ti_steps: int, rng: Dict[str, Any],
                       ti_generator_state: Optional[Tensor]) -> None:
    """Args:
        checkpoint: Lightning's checkpoint dict, filled in place.
        y_star: {token: float32 [n_vectors, dim]} on the CPU.
        ti_steps: the config's ti_steps.
        rng: `generator_state.gather_generators`.
        ti_generator_state: the TI trainer's generator state, or None without one.
    """
    checkpoint["congeal_y_star"] = y_star
    checkpoint["congeal_ti_steps"] = int(ti_steps)
    checkpoint["congeal_rng"] = rng
    if ti_generator_state is not None:
        checkpoint["congeal_ti_generator"] = ti_generator_state


def read_resume_state(checkpoint: Dict[str, Any]) -> ResumeState:
    """Args: checkpoint: a loaded checkpoint dict. Returns: its congeal part (y* as float32 CPU tensors)."""
    y_star = checkpoint.get("congeal_y_star")
    saved_steps = checkpoint.get("congeal_ti_steps")
    generator = checkpoint.get("congeal_ti_generator")
    return ResumeState(
        y_star=None if y_star is None else {k: v.float().cpu() for k, v in y_star.items()},
        ti_steps=None if saved_steps is None else int(saved_steps),
        rng=checkpoint.get("congeal_rng"),
        ti_generator=None if generator is None else generator.cpu(),
    )
