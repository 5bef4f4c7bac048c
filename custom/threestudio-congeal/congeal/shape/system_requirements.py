"""What a two-stage congeal config needs before anything is built, checked in order, with a fix for each gap.

    check_requirements(cfg, Checks(registered=require_registered, mvdream_package=require_mvdream_package,
                                   file=require_file))

The checks themselves (is a name registered in threestudio, is the `mvdream` package importable, does a file
exist) belong to the host: they are passed in, and each raises its own error with the fix. This module decides
which ones a config needs: every registered type it names, the TI guidance (or a y* file when stage 1 is skipped),
threestudio-mvdream's parent guidance class, the MVDream package and checkpoint for an MVDream guidance.
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional

from congeal.common.errors import InputError

REGISTERED_FIELDS = ("geometry_type", "material_type", "background_type", "renderer_type", "guidance_type",
                     "prompt_processor_type")
MVDREAM_PARENT = "mvdream-multiview-diffusion-guidance"


@dataclass
class Checks:
    """The host's checks; each raises when its answer is no."""

    registered: Callable[[str, str], None]
    """(registered name, config field) -> None: the name is known to threestudio."""
    mvdream_package: Callable[[], None]
    """() -> None: the `mvdream` package is importable."""
    file: Callable[[Optional[str], str, str], None]
    """(path or None, config field, what it should be) -> None: a named file exists (None passes)."""


def check_requirements(cfg: Any, checks: Checks) -> None:
    """Run the checks a `congeal-system` config needs, in the order a user fixes them.

    Args:
        cfg: the system config (`*_type` fields, `ti_steps`, `ti_guidance_type`, `learned_embeds_path`,
            `guidance.ckpt_path`).
        checks: the host's checks.
    Raises:
        InputError: stage 1 is skipped (ti_steps 0) and no y* file is named; otherwise whatever a check raises.
    """
    for name in REGISTERED_FIELDS:
        checks.registered(getattr(cfg, name), f"system.{name}")
    if cfg.ti_steps > 0:
        checks.registered(cfg.ti_guidance_type, "system.ti_guidance_type")
    elif not cfg.learned_embeds_path:
        raise InputError(None, "system.ti_steps is 0 and system.learned_embeds_path is not set",
                         "train y* (ti_steps > 0) or point learned_embeds_path at a learned_embeds.safetensors")
    if cfg.guidance_type == "congeal-mvdream-guidance":  # a subclass of threestudio-mvdream's guidance
        checks.registered(MVDREAM_PARENT, "system.guidance_type (its parent class)")
    if "mvdream" in cfg.guidance_type:
        checks.mvdream_package()
        checks.file(cfg.guidance.get("ckpt_path"), "system.guidance.ckpt_path", "an MVDream checkpoint (.pt)")
    checks.file(cfg.learned_embeds_path, "system.learned_embeds_path", "a learned_embeds.safetensors")
