"""Whether textual inversion may use the MVDream model the SDS guidance already loaded (single-view mode).

    share, why_not = mvdream_sharing(ti_guidance, sds_guidance.model, enabled=cfg.share_mvdream_model)
    share_mvdream_model(ti_guidance, sds_guidance.model, cfg.share_mvdream_model, warn=log.warning, info=log.info)

Sharing keeps one copy of the weights in memory and fits y* to exactly the UNet that SDS conditions on. It applies
only when the TI guidance would load MVDream itself (`ti_guidance.denoiser: mvdream`).
"""
from typing import Any, Callable, Optional, Tuple


def mvdream_sharing(ti_guidance: Any, model: Optional[Any], enabled: bool) -> Tuple[bool, Optional[str]]:
    """Decide whether to share.

    Args:
        ti_guidance: the textual-inversion guidance (its `cfg.denoiser`, `share_mvdream_model`, `trainer.weight_dtype`).
        model: the SDS guidance's loaded MVDream model, or None.
        enabled: `system.share_mvdream_model`.
    Returns:
        (share, warning): warning is set when sharing was wanted but would cast SDS's model to the TI trainer's
        weight dtype (bf16/fp16): MVDream is then loaded twice.
    """
    wants_mvdream = getattr(getattr(ti_guidance, "cfg", None), "denoiser", None) == "mvdream"
    if not (enabled and wants_mvdream and model is not None and hasattr(ti_guidance, "share_mvdream_model")):
        return False, None
    # the TI trainer casts its denoiser to its weight dtype: sharing must not turn SDS's model into bf16/fp16
    ti_dtype = getattr(getattr(ti_guidance, "trainer", None), "weight_dtype", None)
    model_dtype = next(model.parameters()).dtype
    if ti_dtype is not None and ti_dtype != model_dtype:
        return False, (f"congeal: not sharing the MVDream model with textual inversion (it would cast it to "
                       f"{ti_dtype}); MVDream is loaded twice. Set system.ti_guidance.half_precision_weights: "
                       "false to share it")
    return True, None


def share_mvdream_model(ti_guidance: Any, model: Optional[Any], enabled: bool, warn: Callable[[str], Any],
                        info: Callable[[str], Any]) -> bool:
    """Share when `mvdream_sharing` says so, and tell the user.

    Args:
        ti_guidance, model, enabled: as `mvdream_sharing`.
        warn: shows a warning (why a wanted share was refused). info: shows that the model is shared.
    Returns:
        whether the TI guidance now uses `model`.
    """
    share, warning = mvdream_sharing(ti_guidance, model, enabled)
    if warning:
        warn(warning)
    if share:
        ti_guidance.share_mvdream_model(model)
        info("congeal: textual inversion shares the SDS guidance's MVDream model")
    return share
