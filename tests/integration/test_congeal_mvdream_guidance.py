"""`congeal-mvdream-guidance` in a real threestudio: a subclass of threestudio-mvdream's guidance, the same SDS
call, the model built by congeal.models.mvdream from a (tiny) checkpoint, no network."""
import sys

import pytest
import torch

from congeal.common.errors import InputError
from helpers.hub_cache import forbid_network
from helpers.mvdream import TINY_CONTEXT_DIM, TINY_OVERRIDES, mvdream_importable_or_skip

pytestmark = pytest.mark.integration
PARENT = "mvdream-multiview-diffusion-guidance"


@pytest.fixture
def guidance_setup(threestudio, extension_via_launch, mvdream_available, monkeypatch, tmp_path):
    if not mvdream_available:
        pytest.skip("threestudio-mvdream is not registered or the mvdream package is missing")
    mvdream_importable_or_skip(monkeypatch)
    forbid_network(monkeypatch)
    import threestudio.utils.base as base

    monkeypatch.setattr(base, "get_device", lambda: torch.device("cpu"))  # threestudio hard-codes cuda
    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    reference = build_mvdream(overrides=TINY_OVERRIDES)
    path = tmp_path / "tiny-4view.pt"
    torch.save(reference.state_dict(), path)
    config = {"model_name": "sd-v2.1-base-4view", "ckpt_path": str(path), "model_overrides": TINY_OVERRIDES,
              "image_size": 16, "n_view": 4, "guidance_scale": 5.0}
    return threestudio, reference, config


def _cameras(n: int) -> torch.Tensor:
    azimuth = torch.linspace(0, 2 * torch.pi, n + 1)[:n]
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3], c2w[:, 1, 3], c2w[:, 2, 3] = 2 * torch.cos(azimuth), 2 * torch.sin(azimuth), 0.5
    return c2w


def test_registered_subclass_builds_from_the_checkpoint_and_runs_the_parents_sds(guidance_setup):
    threestudio, reference, config = guidance_setup
    parent = threestudio.find(PARENT)
    guidance = threestudio.find("congeal-mvdream-guidance")(config)
    assert isinstance(guidance, parent) and type(guidance) is not parent
    assert type(guidance).__call__ is parent.__call__  # the SDS loop is the parent's, untouched
    for name, tensor in guidance.model.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name
    assert not any(p.requires_grad for p in guidance.model.parameters())
    assert guidance.min_step == 20 and guidance.max_step == 980  # the parent's configure ran
    # the parent module's build_model is restored after construction
    from mvdream.model_zoo import build_model

    assert sys.modules[parent.__module__].build_model is build_model

    torch.manual_seed(0)
    rgb = torch.rand(4, 16, 16, 3, requires_grad=True)
    n = rgb.shape[0]
    out = guidance(rgb, None, torch.zeros(n), torch.linspace(0, 270, n), torch.full((n,), 2.0), _cameras(n),
                   text_embeddings=torch.randn(2 * n, 77, TINY_CONTEXT_DIM))
    assert torch.isfinite(out["loss_sds"]) and out["loss_sds"] > 0
    out["loss_sds"].backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


def test_checkpoint_that_does_not_fill_the_model_fails_clearly(guidance_setup, tmp_path):
    threestudio, reference, config = guidance_setup
    state = dict(reference.state_dict())
    state.pop("model.diffusion_model.out.2.weight")
    path = tmp_path / "short.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match=r"1 missing keys: model\.diffusion_model\.out\.2\.weight"):
        threestudio.find("congeal-mvdream-guidance")(dict(config, ckpt_path=str(path)))
    parent = threestudio.find(PARENT)
    from mvdream.model_zoo import build_model

    assert sys.modules[parent.__module__].build_model is build_model


def test_null_ckpt_path_offline_with_empty_cache_says_how_to_fill_it(guidance_setup, tmp_path, monkeypatch):
    threestudio, _, config = guidance_setup
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(InputError, match="not in the Hugging Face cache"):
        threestudio.find("congeal-mvdream-guidance")(dict(config, ckpt_path=None))
