"""Every random generator of a process, captured into a checkpoint and put back on resume (exact resume).

    saved = gather_generators(device, world_size)           # {"ranks": [one state per rank]}, a collective
    restore_generators(saved, rank, world_size, device)     # a warning (nothing restored) when the world differs
    with preserved_generators(device): build_something()    # draws nothing from the run's generators

A generator state covers torch's CPU generator, CUDA's on a CUDA device, python's `random` and numpy's global
generator. Tensors only (numpy's key array becomes an int64 tensor), so a checkpoint loads with `weights_only`.
"""
import contextlib
import random
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist


def capture_generators(device: torch.device) -> Dict[str, Any]:
    """Args: device: this process's device (CUDA's generator is captured on a CUDA device).
    Returns: {"torch", "python", "numpy"[, "cuda"]} states of this process's generators."""
    python_version, python_state, python_gauss = random.getstate()
    numpy_name, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    mine: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [python_version, torch.tensor(python_state, dtype=torch.int64), python_gauss],
        "numpy": [numpy_name, torch.from_numpy(numpy_keys.astype(np.int64)), int(numpy_pos),
                  int(numpy_has_gauss), float(numpy_gauss)],
    }
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    return mine


def gather_generators(device: torch.device, world_size: int) -> Dict[str, Any]:
    """Every rank's generator states; a collective when world_size > 1 (every rank must call it).

    Args:
        device: this process's device.
        world_size: the number of processes (torch.distributed must be initialised when > 1).
    Returns:
        {"ranks": [capture_generators of rank 0, 1, ...]}, tensors on the CPU.
    """
    mine = capture_generators(device)
    if world_size == 1:
        return {"ranks": [mine]}
    ranks: List[Any] = [None] * world_size
    dist.all_gather_object(ranks, mine)
    return {"ranks": [{k: v.cpu() if torch.is_tensor(v) else v for k, v in r.items()} for r in ranks]}


def restore_generators(saved: Dict[str, Any], rank: int, world_size: int, device: torch.device) -> Optional[str]:
    """Put this rank's saved generator states back.

    Args:
        saved: what `gather_generators` returned when the checkpoint was written.
        rank: this process's rank.
        world_size: the number of processes now.
        device: this process's device (CUDA's generator is restored only on a CUDA device).
    Returns:
        None when restored; a warning, restoring nothing, when the checkpoint holds another number of processes
        (the resumed run's random draws then differ from the uninterrupted run's).
    """
    ranks = saved.get("ranks", [])
    if len(ranks) != world_size:
        return (f"congeal: the checkpoint holds the random generators of {len(ranks)} processes, this run has "
                f"{world_size}: the resumed run's random draws differ from the uninterrupted run's")
    mine = ranks[rank]
    torch.set_rng_state(mine["torch"])
    python_version, python_state, python_gauss = mine["python"]
    random.setstate((python_version, tuple(int(v) for v in python_state.tolist()), python_gauss))
    name, keys, pos, has_gauss, gauss = mine["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in mine and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], device)
    return None


@contextlib.contextmanager
def preserved_generators(device: torch.device) -> Iterator[None]:
    """Run a block without moving this process's generators (torch CPU and CUDA, python, numpy).

    Args:
        device: this process's device (its CUDA generator is forked too on a CUDA device).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
