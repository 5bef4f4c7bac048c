"""MVDream's UNet as the textual-inversion denoiser (single view, no camera); skipped without the mvdream package."""
import torch

from congeal.inversion.noise_schedule import NoiseSchedule
from congeal.inversion.inversion_config import TextualInversionConfig
from congeal.inversion.trainer import TextualInversion

from helpers.mvdream import TINY_OVERRIDES, mvdream_importable_or_skip
from helpers.textual_inversion import collection, fresh_text, one_thread  # noqa: F401


def tiny_mvdream_denoiser():
    from congeal.inversion.mvdream_denoiser import MVDreamDenoiser
    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    model = build_mvdream(overrides=TINY_OVERRIDES)
    # MVDream zero-initialises its output conv and attention projections: with random weights nothing would
    # reach the token, so give every all-zero weight a small random value
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.05)
    return MVDreamDenoiser(model), model


def test_single_view_call_schedule_and_encoder(monkeypatch):
    mvdream_importable_or_skip(monkeypatch)
    denoiser, model = tiny_mvdream_denoiser()
    assert torch.allclose(denoiser.schedule.alphas_cumprod, NoiseSchedule.scaled_linear().alphas_cumprod, atol=1e-6)
    images = collection(2, size=16)
    mean, std = denoiser.encode(images)
    assert mean.shape == (2, 4, 8, 8) and (std > 0).all()
    posterior = model.encode_first_stage(images * 2 - 1)
    assert torch.allclose(mean, posterior.mean * model.scale_factor)
    context = torch.randn(2, 77, 32)
    t = torch.tensor([10, 900])
    expected = model.apply_model(mean, t, {"context": context, "num_frames": 1})
    assert torch.equal(denoiser(mean, t, context), expected)


def test_inversion_against_mvdream_moves_the_token(monkeypatch):
    mvdream_importable_or_skip(monkeypatch)
    denoiser, model = tiny_mvdream_denoiser()
    tokenizer, text_encoder = fresh_text()
    config = TextualInversionConfig(init_word="toy", resolution=16, steps=3, lr=0.05)
    ti = TextualInversion(tokenizer, text_encoder, denoiser, config)
    ti.set_images(collection(3, size=16))
    before = ti.rows.rows.detach().clone()
    unet_before = {k: v.clone() for k, v in model.state_dict().items()}
    ti.train(progress=False)
    assert not torch.equal(ti.rows.rows, before) and all(torch.isfinite(torch.tensor(ti.losses)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, unet_before[key]), key
