"""Handing y* from stage 1 to stage 2: one `learned_embeds.safetensors` that every process conditions SDS on.

    path, y_star = hand_over(trial_dir, cfg.learned_embeds_path, os.getcwd(), y_star, rank, barrier)
    # in a trial: rank 0 writes <trial>/learned_embeds.safetensors; all wait, then read the same bytes

Entering SDS (fresh or resumed) writes the file and builds the prompt processor from it, so the SDS stage never
depends on the TI guidance's in-memory state, and the trial directory holds the y* that SDS used.
"""
import os
from typing import Callable, Dict, Optional, Tuple

from jaxtyping import Float
from torch import Tensor

from congeal.inversion.embedding_files import load_learned_embeds, save_learned_embeds

FILE_NAME = "learned_embeds.safetensors"


def handoff_path(trial_dir: Optional[str], configured: Optional[str], cwd: str) -> str:
    """Where stage 2 reads y* from.

    Args:
        trial_dir: the run's trial directory, or None outside a launched run.
        configured: `system.learned_embeds_path`, or None.
        cwd: the working directory (the fallback's parent).
    Returns:
        `<trial>/learned_embeds.safetensors` in a trial; outside one, the configured file, else
        `<cwd>/.congeal/learned_embeds.safetensors`.
    """
    if trial_dir is not None or configured is None:
        return os.path.join(trial_dir if trial_dir is not None else os.path.join(cwd, ".congeal"), FILE_NAME)
    return configured


def needs_writing(trial_dir: Optional[str], configured: Optional[str]) -> bool:
    """Args: as `handoff_path`. Returns: False when stage 2 reads the configured file as it is."""
    return trial_dir is not None or configured is None


def publish_y_star(path: str, y_star: Dict[str, Float[Tensor, "_n _dim"]], rank: int,
                   barrier: Callable[[], None]) -> Dict[str, Float[Tensor, "_n _dim"]]:
    """Write y* once and read it back on every process.

    Args:
        path: the hand-off file (`handoff_path`).
        y_star: {token: float32 [n_vectors, dim]}.
        rank: this process's rank; rank 0 alone writes (atomically, `embedding_files`).
        barrier: waits for every process (a no-op in a single process).
    Returns:
        y* as read from the file: every rank conditions SDS on the same bytes.
    """
    if rank == 0:
        save_learned_embeds(path, y_star)
    barrier()
    return load_learned_embeds(path)


def hand_over(trial_dir: Optional[str], configured: Optional[str], cwd: str, y_star: Dict[str, Float[Tensor, "_n _dim"]],
              rank: int, barrier: Callable[[], None]) -> Tuple[str, Dict[str, Float[Tensor, "_n _dim"]]]:
    """Args: as `handoff_path` and `publish_y_star`.
    Returns: (the file stage 2 reads y* from, y* as stage 2 uses it: read back from the file when written, else as
    given)."""
    path = handoff_path(trial_dir, configured, cwd)
    if needs_writing(trial_dir, configured):
        y_star = publish_y_star(path, y_star, rank, barrier)
    return path, y_star
