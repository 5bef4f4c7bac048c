"""Textual inversion shares SDS's MVDream model only when it would load MVDream itself and in the same dtype."""
from types import SimpleNamespace

import torch

from congeal.shape.model_sharing import mvdream_sharing, share_mvdream_model


def ti(denoiser="mvdream", dtype=None, can_share=True):
    guidance = SimpleNamespace(cfg=SimpleNamespace(denoiser=denoiser),
                               trainer=SimpleNamespace(weight_dtype=dtype) if dtype is not None else None)
    if can_share:
        guidance.share_mvdream_model = lambda model: None
    return guidance


MODEL = torch.nn.Linear(2, 2)


def test_shares_when_wanted_and_possible():
    assert mvdream_sharing(ti(), MODEL, enabled=True) == (True, None)
    assert mvdream_sharing(ti(dtype=torch.float32), MODEL, enabled=True) == (True, None)


def test_does_not_share_when_off_or_pointless():
    assert mvdream_sharing(ti(), MODEL, enabled=False) == (False, None)
    assert mvdream_sharing(ti(denoiser="diffusers"), MODEL, enabled=True) == (False, None)
    assert mvdream_sharing(ti(), None, enabled=True) == (False, None)
    assert mvdream_sharing(ti(can_share=False), MODEL, enabled=True) == (False, None)


def test_a_cast_to_half_precision_is_refused_with_the_fix():
    share, warning = mvdream_sharing(ti(dtype=torch.float16), MODEL, enabled=True)
    assert not share and "torch.float16" in warning and "half_precision_weights: false" in warning
    assert MODEL.weight.dtype == torch.float32


def test_sharing_hands_the_model_over_and_tells_the_user():
    got, said = [], []
    guidance = ti()
    guidance.share_mvdream_model = got.append
    assert share_mvdream_model(guidance, MODEL, True, warn=said.append, info=said.append)
    assert got == [MODEL] and said == ["congeal: textual inversion shares the SDS guidance's MVDream model"]
    got.clear(), said.clear()
    assert not share_mvdream_model(ti(dtype=torch.bfloat16), MODEL, True, warn=said.append, info=said.append)
    assert len(said) == 1 and "bfloat16" in said[0]
    assert not share_mvdream_model(None, MODEL, True, warn=said.append, info=said.append)  # no stage 1: silent
    assert len(said) == 1
