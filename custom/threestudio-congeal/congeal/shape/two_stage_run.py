"""What one congeal run keeps across its two stages and across a resume: y*, the stage switch, the generators.

    run = TwoStageRun(StageSchedule(ti_steps=1000), ti_guidance)    # ti_guidance None when stage 1 is skipped
    run.load_file("learned_embeds.safetensors")                     # optional: initialise y* from a file
    run.write_checkpoint(checkpoint, device, world_size)            # on save (a collective with several processes)
    run.read_checkpoint(checkpoint, warn)                           # on load; the generators wait for
    run.restore_pending_generators(rank, world_size, device, warn)  # ... the first resumed step
    run.average_gradients(global_step, world_size)                  # after each backward
    path = run.hand_over(trial_dir, configured_path, cwd, rank, barrier)  # entering stage 2: y* in one file

The TI guidance is held here, outside the system's nn.Module: its frozen text encoder and UNet must not go into
checkpoints, and DDP must not see them. y* itself travels in every checkpoint (`checkpoint_state`).
"""
from typing import Any, Callable, Dict, List, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.inversion.embedding_files import load_learned_embeds
from congeal.shape import checkpoint_state, generator_state, gradient_sync, token_rows, y_star_handoff
from congeal.shape.stage_schedule import TI, StageSchedule


class TwoStageRun:
    """y* (the TI guidance's live rows, or a snapshot), the stage schedule, and generator states to restore."""

    def __init__(self, schedule: StageSchedule, ti_guidance: Optional[Any] = None):
        """Args: schedule: where stage 1 ends. ti_guidance: the textual-inversion guidance, None without stage 1."""
        self.schedule = schedule
        self.ti_guidance = ti_guidance
        self.y_star: Optional[Dict[str, Float[Tensor, "_n _dim"]]] = None
        """The last y* read from a file or checkpoint, or handed over to stage 2."""
        self.pending_rng: Optional[Dict[str, Any]] = None
        """Generator states to restore at the first resumed step (starting a data loader draws from them)."""

    def rows(self) -> List[torch.nn.Parameter]:
        """Returns: y*'s trainable rows (`token_rows.trainable_rows`); [] without stage 1."""
        return token_rows.trainable_rows(self.ti_guidance)

    def current_y_star(self) -> Dict[str, Float[Tensor, "_n _dim"]]:
        """Returns: {token: float32 [n_vectors, dim]} on the CPU: the live rows during TI, else the snapshot."""
        return token_rows.current_y_star(self.ti_guidance, self.y_star)

    def load_file(self, path: str) -> None:
        """Initialise y* from a `learned_embeds.safetensors` (the rows too, when stage 1 runs).

        Args:
            path: the file. Raises: InputError when its shapes do not fit the rows.
        """
        embeds = load_learned_embeds(path)
        if self.ti_guidance is not None:
            token_rows.copy_into_rows(self.rows(), list(embeds.values()), path)
        self.y_star = embeds

    def write_checkpoint(self, checkpoint: Dict[str, Any], device: torch.device, world_size: int) -> None:
        """Args: checkpoint: Lightning's dict, filled in place. device: this process's device.
        world_size: the number of processes (gathering every rank's generators is a collective)."""
        generator = checkpoint_state.ti_generator(self.ti_guidance)
        checkpoint_state.write_resume_state(checkpoint, self.current_y_star(), self.schedule.ti_steps,
                                            generator_state.gather_generators(device, world_size),
                                            generator.get_state() if generator is not None else None)

    def read_checkpoint(self, checkpoint: Dict[str, Any], warn: Optional[Callable[[str], Any]] = None) -> List[str]:
        """Take y*, the TI generator and (for later) the generator states from a loaded checkpoint.

        Args:
            checkpoint: the loaded dict.
            warn: shows each warning to the user, if given.
        Returns:
            the warnings (the checkpoint's ti_steps differs from the config's).
        Raises:
            InputError: the checkpoint's y* does not fit the rows.
        """
        state = checkpoint_state.read_resume_state(checkpoint)
        if state.rng is not None:
            self.pending_rng = state.rng
        generator = checkpoint_state.ti_generator(self.ti_guidance)
        if generator is not None and state.ti_generator is not None:
            generator.set_state(state.ti_generator)
        if state.y_star is None:
            return []
        self.y_star = state.y_star
        if self.ti_guidance is not None:
            token_rows.copy_into_rows(self.rows(), list(state.y_star.values()), "the checkpoint")
        warning = state.ti_steps_warning(self.schedule.ti_steps)
        if warning and warn is not None:
            warn(warning)
        return [warning] if warning else []

    def restore_pending_generators(self, rank: int, world_size: int, device: torch.device,
                                   warn: Optional[Callable[[str], Any]] = None) -> Optional[str]:
        """Restore the generator states a checkpoint left pending, once.

        Args:
            rank, world_size, device: this process's (see `generator_state.restore_generators`).
            warn: shows the warning to the user, if given.
        Returns:
            a warning when the checkpoint holds another number of processes (nothing restored), else None.
        """
        if self.pending_rng is None:
            return None
        saved, self.pending_rng = self.pending_rng, None
        warning = generator_state.restore_generators(saved, rank, world_size, device)
        if warning and warn is not None:
            warn(warning)
        return warning

    def shard(self, rank: int, world_size: int) -> None:
        """Tell the TI guidance which slice of each photo batch this process trains (when it can shard).

        Args: rank: this process's rank. world_size: the number of processes.
        """
        if self.ti_guidance is not None and hasattr(self.ti_guidance, "set_shard"):
            self.ti_guidance.set_shard(rank, world_size)

    def average_gradients(self, global_step: int, world_size: int) -> None:
        """Average y*'s gradient over the processes during stage 1 (`gradient_sync`); nothing in stage 2.

        Args: global_step: the step just back-propagated. world_size: the number of processes.
        """
        if self.schedule.stage_of(global_step) == TI:
            gradient_sync.average_row_gradients(self.rows(), world_size)

    def hand_over(self, trial_dir: Optional[str], configured: Optional[str], cwd: str, rank: int,
                  barrier: Callable[[], None]) -> str:
        """Freeze y* for stage 2 (`y_star_handoff.hand_over`): the snapshot becomes what stage 2 conditions on.

        Args: as `y_star_handoff.hand_over`. Returns: the file the prompt processor reads y* from.
        """
        path, self.y_star = y_star_handoff.hand_over(trial_dir, configured, cwd, self.current_y_star(), rank, barrier)
        return path
