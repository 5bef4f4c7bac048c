"""y*'s gradient over several processes: DDP averages only the parameters it holds (the NeRF's), not y*'s rows.

    set_ddp_sync(trainer, stage)                       # DDP's own sync off in stage 1 (no-op without DDP)
    average_row_gradients(rows, world_size())          # after each stage-1 backward

During stage 1 only y* trains, and DDP's own sync would wait for NeRF gradients that never come: it is switched off
and y*'s gradient is averaged here, so N processes train what one process with N x the batch would.
"""
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from congeal.shape.stage_schedule import TI


def world_size() -> int:
    """Returns: the number of processes of the initialised default group, 1 without torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def ddp_module(trainer: Optional[Any]) -> Optional[torch.nn.parallel.DistributedDataParallel]:
    """Args: trainer: a Lightning trainer or None. Returns: its strategy's DDP wrapper, None without one."""
    model = getattr(getattr(trainer, "strategy", None), "model", None) if trainer is not None else None
    return model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None


def ddp_syncs(stage: str) -> bool:
    """Args: stage: "ti" or "sds". Returns: whether DDP's own gradient sync runs (not in stage 1)."""
    return stage != TI


def average_row_gradients(rows: Sequence[torch.Tensor], world: int,
                          all_reduce: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
    """Replace each row's gradient by its mean over the processes.

    Args:
        rows: y*'s trainable rows.
        world: the number of processes; 1 leaves the gradients as they are.
        all_reduce: sums a tensor over the processes in place (default: torch.distributed's SUM all-reduce).
    """
    if world == 1:
        return
    reduce = all_reduce if all_reduce is not None else (lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    for p in rows:
        grad = p.grad if p.grad is not None else torch.zeros_like(p)  # every rank joins every all-reduce
        reduce(grad)
        p.grad = grad.div_(world)


def set_ddp_sync(trainer: Optional[Any], stage: str) -> None:
    """Args: trainer: a Lightning trainer or None. stage: "ti" or "sds".
    Switch the trainer's DDP gradient sync off for stage 1, on for stage 2 (nothing without DDP)."""
    ddp = ddp_module(trainer)
    if ddp is not None:
        ddp.require_backward_grad_sync = ddp_syncs(stage)
