"""Exact resume of stage 3 through threestudio: SIGKILL at a random point, rerun, the run folder equals an
uninterrupted run's byte for byte (CPU; THREESTUDIO_ROOT set).

The point is drawn at random within the uninterrupted run's duration (seed from CONGEAL_KILL_SEED, printed), so
over many runs the kill lands anywhere: baking, the candidate bank, a chunk's search / refinement / map and picture
writes, a checkpoint, the merge. The rerun resumes from `ckpts/last.ckpt` when the kill left one, else starts over
in the same trial folder (the committed chunks are kept either way). The comparison covers every file under save/
except the per-commit version ids (chunks/*/chunk.json, chunks/merged.json); nothing else may differ: poses.json
numbers, maps, state files, pictures, the canonical, the candidate bank. `tests/fault_injection/registration_faults.py`
sweeps kill points (including inside map and picture writes) on the engine alone.
"""
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_registration_system import _launch, _save, world  # noqa: F401  (the module-scoped synthetic world)

VERSION_FILES = ("chunk.json", "merged.json")


def _files(save: Path):
    return {str(p.relative_to(save)): p.read_bytes() for p in sorted(save.rglob("*"))
            if p.is_file() and p.name not in VERSION_FILES}


def _leftovers(save: Path):
    from congeal.common.atomic import is_temporary

    return sorted(str(p) for p in save.rglob(".*") if is_temporary(p) or p.name.startswith(".chunk-"))


def test_sigkill_at_a_random_point_then_rerun_equals_an_uninterrupted_run(world):  # noqa: F811
    seed = int(os.environ.get("CONGEAL_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    common = ["--train", f"data.image_dir={world['collection'] / 'images'}",
              f"system.canonical_run={world['congealing']}", "data.chunk_size=2"]
    started = time.perf_counter()
    _launch([*common, "tag=resume-reference"], world["root"])
    seconds = time.perf_counter() - started
    reference = _save(world["root"], "resume-reference")

    fraction = rng.uniform(0.15, 0.95)
    for attempt in range(4):  # a run faster than the reference (less load) may finish first: kill earlier
        tag = f"resume-killed-{attempt}"
        proc = _launch([*common, f"tag={tag}"], world["root"], wait=False)
        try:
            proc.wait(timeout=fraction * seconds)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
        if killed:
            break
        fraction *= 0.5
    print(f"CONGEAL_KILL_SEED={seed}: killed after {fraction * seconds:.1f} s of a {seconds:.1f} s run "
          f"(attempt {attempt})")
    assert killed, "every run finished before it could be killed"
    save = _save(world["root"], tag)
    done = sorted(p.name for p in (save / "chunks").glob("chunk-*")) if (save / "chunks").is_dir() else []
    ckpt = save.parent / "ckpts" / "last.ckpt"
    print(f"at the kill: chunks {done}, checkpoint {ckpt.is_file()}, left behind {_leftovers(save) if save.is_dir() else []}")
    _launch([*common, f"tag={tag}", *([f"resume={ckpt}"] if ckpt.is_file() else [])], world["root"])
    assert _leftovers(save) == []
    ours, theirs = _files(save), _files(reference)
    assert sorted(ours) == sorted(theirs)
    different = [name for name in ours if ours[name] != theirs[name]]
    assert not different, different
