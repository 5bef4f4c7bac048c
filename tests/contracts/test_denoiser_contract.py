"""The denoiser seam's contract, run by every implementation (`congeal.inversion.denoiser.Denoiser`).

    implementations (`CASES`): the diffusers denoiser over the tiny random-weight SD parts in memory
    (`inversion.tiny_diffusion.build_sd_parts("tiny")`), the same parts saved as a diffusers folder and loaded back by
    `load_stable_diffusion`, and MVDream's UNet in single-view mode built at a toy size from its packaged config
    (skipped, with the reason, where the `mvdream` package or its requirements are missing)

What each promises: a DDPM schedule of T decreasing cumulative alphas in (0,1) and a known prediction type;
`encode(images [B,3,H,W] in [0,1])` -> (mean, std) of the scaled latent posterior, float32, finite, std > 0, on the
images' device; `denoiser(noisy_latents, t, text_embeddings)` -> a finite prediction shaped like the latents in the
model's dtype (float32 here) on their device, that depends on t and on the text; the same output every call (whatever
the global seed); gradients into the text embedding (what textual inversion trains) and none into the frozen model;
and a batch predicting each row exactly as that row alone (within BATCH_ATOL / BATCH_RTOL).
"""
import copy
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from congeal.inversion.denoiser import Denoiser
from congeal.inversion.noise_schedule import NoiseSchedule

# fp32 convolutions and attention may block differently for 1 and 3 rows: equal up to rounding, not bit-exact
BATCH_ATOL, BATCH_RTOL = 1e-5, 1e-4
TOKENS = 77  # CLIP's context length, what the trainer feeds


@dataclass
class Case:
    denoiser: nn.Module
    context_dim: int  # D of the text embeddings [B,L,D]
    image_size: int  # photo side encode() is checked at


def _diffusers_in_memory() -> Case:
    from helpers.textual_inversion import tiny_denoiser

    denoiser = tiny_denoiser()
    return Case(denoiser, denoiser.context_dim, 16)


def _diffusers_folder() -> Case:
    from congeal.inversion.diffusers_denoiser import load_stable_diffusion
    from helpers.textual_inversion import pipeline_dir

    _, _, denoiser = load_stable_diffusion(pipeline_dir())
    return Case(denoiser, denoiser.context_dim, 16)


def _mvdream(monkeypatch) -> Case:
    from helpers.mvdream import TINY_CONTEXT_DIM, TINY_OVERRIDES, mvdream_importable_or_skip

    mvdream_importable_or_skip(monkeypatch)
    from congeal.inversion.mvdream_denoiser import MVDreamDenoiser
    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    model = build_mvdream(overrides=TINY_OVERRIDES)
    # MVDream zero-initialises its output conv and attention projections: with random weights neither t nor the
    # text would reach the output, so every all-zero weight gets a small random value
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0.0, 0.05)
    return Case(MVDreamDenoiser(model), TINY_CONTEXT_DIM, 16)


CASES = ["diffusers", "diffusers.folder", "mvdream"]


@pytest.fixture(scope="module", params=CASES)
def built(request):
    """One implementation, built once for the module (the frozen models are not changed by any test)."""
    with pytest.MonkeyPatch.context() as monkeypatch:  # mvdream may need a pkg_resources stand-in while it imports
        if request.param == "diffusers":
            yield _diffusers_in_memory()
        elif request.param == "diffusers.folder":
            yield _diffusers_folder()
        else:
            yield _mvdream(monkeypatch)


@pytest.fixture
def case(built, device) -> Case:
    if device.type == "cpu":
        return built
    return Case(copy.deepcopy(built.denoiser).to(device), built.context_dim, built.image_size)


def _inputs(case: Case, device, n: int = 3):
    """n rows of (photos, t, text embeddings), every row different."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, case.image_size, case.image_size, generator=generator).to(device)
    t = torch.tensor([10, 500, 990][:n], device=device)
    text = torch.randn(n, TOKENS, case.context_dim, generator=generator).to(device)
    return images, t, text


def _latents(case: Case, images):
    mean, std = case.denoiser.encode(images)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(2)).to(mean.device)
    return mean + std * noise


def test_is_a_denoiser_with_a_ddpm_schedule(case):
    assert isinstance(case.denoiser, Denoiser)
    assert case.denoiser.prediction_type in ("epsilon", "v_prediction")
    schedule = case.denoiser.schedule
    assert isinstance(schedule, NoiseSchedule) and schedule.num_train_timesteps == 1000
    alphas = schedule.alphas_cumprod
    assert float(alphas.min()) > 0 and float(alphas.max()) < 1 and bool((alphas[1:] < alphas[:-1]).all())


def test_the_frozen_model_is_frozen(case):
    assert not any(p.requires_grad for p in case.denoiser.parameters())
    # the wrapped networks run in eval mode (no dropout: the same prediction every call); the wrapper itself holds
    # no layer whose mode matters
    training = [name for name, module in case.denoiser.named_modules() if name and module.training]
    assert not training, f"in training mode: {training[:5]}"


def test_encode_gives_a_scaled_latent_posterior(case, device):
    images, _, _ = _inputs(case, device)
    mean, std = case.denoiser.encode(images)
    assert mean.shape == std.shape and mean.shape[:2] == (3, 4)
    factor = case.image_size // mean.shape[-1]
    assert mean.shape[-2:] == (case.image_size // factor, case.image_size // factor) and factor >= 1
    for value in (mean, std):
        assert value.dtype == torch.float32 and value.device.type == device.type
        assert torch.isfinite(value).all()
    assert bool((std > 0).all())
    again_mean, again_std = case.denoiser.encode(images)
    assert torch.equal(again_mean, mean) and torch.equal(again_std, std)
    one_mean, one_std = case.denoiser.encode(images[1:2])
    assert torch.allclose(one_mean, mean[1:2], atol=BATCH_ATOL, rtol=BATCH_RTOL)
    assert torch.allclose(one_std, std[1:2], atol=BATCH_ATOL, rtol=BATCH_RTOL)


def test_prediction_has_the_promised_shape_dtype_and_device(case, device):
    images, t, text = _inputs(case, device)
    latents = _latents(case, images)
    with torch.no_grad():
        eps = case.denoiser(latents, t, text)
    assert eps.shape == latents.shape
    assert eps.dtype == next(case.denoiser.parameters()).dtype == torch.float32
    assert eps.device.type == device.type
    assert torch.isfinite(eps).all()


def test_prediction_depends_on_t_and_on_the_text(case, device):
    images, t, text = _inputs(case, device)
    latents = _latents(case, images)
    with torch.no_grad():
        eps = case.denoiser(latents, t, text)
        other_t = case.denoiser(latents, t.flip(0), text)
        other_text = case.denoiser(latents, t, text + 1.0)
    assert not torch.allclose(other_t, eps, atol=1e-6), "t is ignored"
    assert not torch.allclose(other_text, eps, atol=1e-6), "the text embeddings are ignored"


def test_prediction_is_deterministic_under_any_seed(case, device):
    images, t, text = _inputs(case, device)
    latents = _latents(case, images)
    with torch.no_grad():
        torch.manual_seed(0)
        first = case.denoiser(latents, t, text)
        torch.manual_seed(1)
        second = case.denoiser(latents, t, text)
    assert torch.equal(first, second)


def test_gradients_reach_the_text_embeddings_and_not_the_model(case, device):
    images, t, text = _inputs(case, device)
    latents = _latents(case, images)
    text.requires_grad_(True)
    eps = case.denoiser(latents, t, text)
    weights = torch.randn(eps.shape, generator=torch.Generator().manual_seed(3)).to(device)
    (eps * weights).sum().backward()
    assert text.grad is not None and torch.isfinite(text.grad).all()
    for row in range(len(text)):  # every row's loss reaches its own embedding
        assert float(text.grad[row].abs().sum()) > 0, row
    assert all(p.grad is None for p in case.denoiser.parameters())


def test_a_batch_predicts_each_row_as_it_would_alone(case, device):
    images, t, text = _inputs(case, device)
    latents = _latents(case, images)
    with torch.no_grad():
        batch = case.denoiser(latents, t, text)
        for i in range(len(latents)):
            alone = case.denoiser(latents[i:i + 1], t[i:i + 1], text[i:i + 1])
            assert torch.allclose(alone, batch[i:i + 1], atol=BATCH_ATOL, rtol=BATCH_RTOL), i
