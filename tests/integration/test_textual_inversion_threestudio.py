"""`congeal-textual-inversion-guidance` and `congeal-prompt-processor` in a real threestudio, tiny models, CPU.

    THREESTUDIO_ROOT=/path/to/threestudio python -m pytest tests/integration/test_textual_inversion_threestudio.py
"""
import os

import pytest
import torch

from congeal.inversion.embedding_files import load_learned_embeds, save_learned_embeds
from congeal.inversion.placeholder_tokens import install_embeds

from helpers.textual_inversion import collection, one_thread, pipeline_dir  # noqa: F401

pytestmark = pytest.mark.integration
GUIDANCE, PROCESSOR = "congeal-textual-inversion-guidance", "congeal-prompt-processor"


@pytest.fixture
def ts(threestudio, extension_via_launch, monkeypatch, tmp_path):
    import threestudio.utils.base as base

    monkeypatch.setattr(base, "get_device", lambda: torch.device("cpu"))  # threestudio picks cuda when present
    monkeypatch.chdir(tmp_path)  # the prompt processor's cache lives in ./.threestudio_cache
    assert GUIDANCE in threestudio.__modules__ and PROCESSOR in threestudio.__modules__
    return threestudio


def make_guidance(ts, **overrides):
    config = {"pretrained_model_name_or_path": str(pipeline_dir()), "denoiser": "diffusers", "init_word": "toy",
              "resolution": 32, "n_vectors": 2, "half_precision_weights": False, "lr": 0.05}
    config.update(overrides)
    return ts.find(GUIDANCE)(config)


def make_processor(ts, path, **overrides):
    config = {"pretrained_model_name_or_path": str(pipeline_dir()), "prompt": "a photo of a <congeal>",
              "negative_prompt": "blurry", "learned_embeds_path": str(path), "spawn": False}
    config.update(overrides)
    return ts.find(PROCESSOR)(config)


def reference_embedding(embeds, prompt):
    """[77, dim]: the prompt encoded by a fresh tokenizer + text encoder with y* installed."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(pipeline_dir()), subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(str(pipeline_dir()), subfolder="text_encoder").eval()
    (slots,) = install_embeds(tokenizer, encoder, embeds)
    ids = tokenizer(slots.expand(prompt), padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0][0]


def test_guidance_gives_loss_ti_with_gradient_into_y_star(ts, tmp_path):
    guidance = make_guidance(ts, background="white")
    (rows,) = guidance.trainable_parameters()
    assert rows.shape == (2, 32) and rows.requires_grad and rows.dtype == torch.float32
    images = collection(2, size=40)
    masks = (images[:, 2:3] > 0.8).float()
    out = guidance(images.permute(0, 2, 3, 1), masks)  # [B,H,W,3] photos, [B,1,H,W] masks, resized inside
    assert set(out) == {"loss_ti"} and out["loss_ti"].dim() == 0 and out["loss_ti"].requires_grad
    out["loss_ti"].backward()
    assert rows.grad is not None and rows.grad.abs().sum() > 0
    before = guidance.learned_embeds()["<congeal>"].clone()
    torch.optim.AdamW([rows], lr=0.05).step()  # what congeal-system's optimizer does with y*
    after = guidance.learned_embeds()["<congeal>"]
    assert not torch.equal(before, after)
    assert guidance(images)["loss_ti"].requires_grad  # [B,3,H,W] and no masks
    assert torch.isfinite(guidance.step(images)["loss_ti"])  # standalone: own AdamW
    path = guidance.save(str(tmp_path / "y"))
    assert torch.equal(load_learned_embeds(path)["<congeal>"], guidance.learned_embeds()["<congeal>"])


def test_prompt_processor_embeds_the_learned_token(ts, tmp_path):
    embeds = {"<congeal>": torch.randn(2, 32, generator=torch.Generator().manual_seed(1))}
    path = save_learned_embeds(tmp_path / "a", embeds)
    processor = make_processor(ts, path)
    out = processor()
    assert out.text_embeddings.shape == (1, 77, 32) and out.uncond_text_embeddings.shape == (1, 77, 32)
    assert out.text_embeddings_vd.shape == (4, 77, 32)
    assert out.prompts_vd[1] == "a photo of a <congeal>, front view"
    assert torch.allclose(out.text_embeddings[0], reference_embedding(embeds, "a photo of a <congeal>"), atol=1e-6)
    assert torch.allclose(out.text_embeddings_vd[2], reference_embedding(embeds, out.prompts_vd[2]), atol=1e-6)
    n = 4
    both = out.get_text_embeddings(torch.zeros(n), torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.ones(n), True)
    assert both.shape == (2 * n, 77, 32)  # (cond, uncond), what MVDream's guidance feeds its UNet
    other = {"<congeal>": torch.zeros(2, 32)}
    assert not torch.allclose(reference_embedding(other, "a photo of a <congeal>"), out.text_embeddings[0])


def test_changed_y_star_never_returns_stale_cached_embeddings(ts, tmp_path, monkeypatch):
    import importlib

    first = {"<congeal>": torch.randn(2, 32, generator=torch.Generator().manual_seed(2))}
    second = {"<congeal>": first["<congeal>"] + 0.5}
    path = tmp_path / "learned_embeds.safetensors"
    save_learned_embeds(path, first)
    a = make_processor(ts, path)().text_embeddings[0]
    save_learned_embeds(path, second)  # same file, same token, same prompt: only y* changed
    b = make_processor(ts, path)().text_embeddings[0]
    assert not torch.allclose(a, b)
    assert torch.allclose(b, reference_embedding(second, "a photo of a <congeal>"), atol=1e-6)
    # unchanged y* is served from the cache: encoding again would fail here
    module = importlib.import_module(type(make_processor(ts, path)).__module__)

    def refuse(*args, **kwargs):
        raise AssertionError("re-encoded although y* and the prompts are cached")

    monkeypatch.setattr(module, "encode_prompts", refuse)
    save_learned_embeds(path, first)
    assert torch.equal(make_processor(ts, path)().text_embeddings[0], a)


def test_live_y_star_from_the_guidance_and_prompt_checks(ts, tmp_path):
    from congeal.common.errors import InputError

    guidance = make_guidance(ts)
    path = save_learned_embeds(tmp_path / "g", guidance.learned_embeds())
    processor = make_processor(ts, path)
    before = processor().text_embeddings.clone()
    guidance.step(collection(2))
    processor.from_guidance(guidance)
    after = processor().text_embeddings
    assert not torch.allclose(before, after)
    assert torch.allclose(after[0], reference_embedding(guidance.learned_embeds(), "a photo of a <congeal>"), atol=1e-6)
    with pytest.raises(InputError, match="does not contain the learned token"):
        make_processor(ts, path, prompt="a photo of a toy")
    with pytest.raises(InputError, match="no learned embedding"):
        make_processor(ts, path, learned_embeds_path=None)


def test_mvdream_guidance_takes_the_embeddings_and_ti_fits_its_unet(ts, tmp_path, monkeypatch, mvdream_available):
    if not mvdream_available:
        pytest.skip("threestudio-mvdream is not registered or the mvdream package is missing")
    from helpers.mvdream import TINY_CONTEXT_DIM, TINY_OVERRIDES, mvdream_importable_or_skip

    mvdream_importable_or_skip(monkeypatch)
    if "congeal-mvdream-guidance" not in ts.__modules__:
        pytest.skip("congeal-mvdream-guidance is not registered")
    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny-4view.pt"
    torch.save(build_mvdream(overrides=TINY_OVERRIDES).state_dict(), ckpt)
    sds = ts.find("congeal-mvdream-guidance")({"ckpt_path": str(ckpt), "model_overrides": TINY_OVERRIDES,
                                                "image_size": 16, "n_view": 4, "guidance_scale": 5.0})
    ti = make_guidance(ts, denoiser="mvdream", resolution=16, n_vectors=1)
    ti.share_mvdream_model(sds.model)  # one MVDream model for inversion (single view) and SDS (4 views)
    assert torch.isfinite(ti(collection(2, size=16))["loss_ti"])
    assert TINY_CONTEXT_DIM == 32
    path = save_learned_embeds(tmp_path / "m", ti.learned_embeds())
    prompt_utils = make_processor(ts, path)()
    n = 4
    azimuth = torch.tensor([0.0, 90.0, 180.0, 270.0])
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3], c2w[:, 1, 3] = 2 * torch.cos(torch.deg2rad(azimuth)), 2 * torch.sin(torch.deg2rad(azimuth))
    rgb = torch.rand(n, 16, 16, 3, requires_grad=True)
    out = sds(rgb, prompt_utils, torch.zeros(n), azimuth, torch.full((n,), 2.0), c2w)
    assert torch.isfinite(out["loss_sds"])
    out["loss_sds"].backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all()
