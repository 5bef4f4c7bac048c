"""On resume, keep writing the trial's `last.ckpt` instead of starting a `last-v1.ckpt` beside a stale one.

    keep_writing_last_checkpoint(trainer)      # at train start

Lightning writes a step's checkpoint before `last.ckpt`, so the first step checkpoint of a run (e.g.
`epoch=0-step=1.ckpt`) records no last checkpoint; resumed from it, ModelCheckpoint takes the existing `last.ckpt`
for someone else's file and writes `last-v1.ckpt`, leaving the killed run's `last.ckpt` where threestudio's
`resume=` / `--test` / `--export` instructions point. A resume from any later checkpoint already overwrites it; this
makes the first one do the same. Only for a checkpoint in the callback's own folder (the same trial): a fresh run
into an old folder still gets Lightning's versioning. Duck-typed: Lightning is not imported.
"""
import os
from typing import Any


def keep_writing_last_checkpoint(trainer: Any) -> None:
    """Args: trainer: a Lightning trainer (`ckpt_path`, `checkpoint_callbacks`); nothing happens on a fresh run."""
    resumed_from = getattr(trainer, "ckpt_path", None)
    if not resumed_from:
        return
    for callback in getattr(trainer, "checkpoint_callbacks", []):
        name = getattr(callback, "CHECKPOINT_NAME_LAST", None)
        if (not getattr(callback, "save_last", False) or getattr(callback, "last_model_path", "") or
                callback.dirpath is None or not name or "{" in name):
            continue
        if os.path.realpath(os.path.dirname(str(resumed_from))) != os.path.realpath(str(callback.dirpath)):
            continue
        last = callback.format_checkpoint_name({}, name)
        if callback.file_exists(last, trainer):  # rank 0's answer on every rank
            callback.last_model_path = last
