"""MVDream construction without the OpenCLIP download, and strict checkpoint loading (skips without `mvdream`)."""
import importlib.util

import pytest
import torch

from congeal.common.errors import InputError
from helpers.hub_cache import forbid_network, put_in_hub_cache
from helpers.mvdream import TINY_CONTEXT_DIM, TINY_OVERRIDES, mvdream_importable_or_skip


@pytest.fixture
def mvdream(monkeypatch):
    mvdream_importable_or_skip(monkeypatch)
    forbid_network(monkeypatch)
    from congeal.models import mvdream as mvdream_model

    return mvdream_model


@pytest.fixture
def tiny_checkpoint(mvdream, tmp_path):
    torch.manual_seed(0)
    model = mvdream.build_mvdream(overrides=TINY_OVERRIDES)
    path = tmp_path / "tiny-4view.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_packaged_config_routes_openclip_to_the_no_download_builder(mvdream):
    config = mvdream.model_config("sd-v2.1-base-4view")
    cond = config["params"]["cond_stage_config"]
    assert cond["target"] == "congeal.models.mvdream.openclip_text_encoder"
    assert cond["params"]["layer"] == "penultimate"  # the packaged params are kept
    original = mvdream.model_config("sd-v2.1-base-4view", no_openclip_download=False)
    assert original["params"]["cond_stage_config"]["target"].endswith("FrozenOpenCLIPEmbedder")
    # the real UNet/VAE settings come from MVDream's file untouched
    assert config["params"]["unet_config"]["params"]["model_channels"] == 320
    assert config["params"]["unet_config"]["params"]["camera_dim"] == 16


def test_unknown_model_name_is_an_input_error(mvdream):
    with pytest.raises(InputError, match="sd-v2.1-base-4view"):
        mvdream.model_config("sd-v3-8view")


def test_tiny_model_round_trips_through_a_checkpoint_file(mvdream, tiny_checkpoint):
    model, path = tiny_checkpoint
    torch.manual_seed(1)  # different random init: only the checkpoint can make the weights equal
    loaded = mvdream.build_mvdream(checkpoint=path, overrides=TINY_OVERRIDES)
    reference = model.state_dict()
    assert set(loaded.state_dict()) == set(reference)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert not loaded.training
    counts = mvdream.count_parameters(loaded)
    assert counts["unet"] > 0 and counts["vae"] > 0 and counts["text"] == 0
    assert counts["total"] == counts["unet"] + counts["vae"]


@pytest.mark.parametrize("low_memory", [True, False])
def test_low_memory_and_plain_construction_load_the_same_model(mvdream, tiny_checkpoint, low_memory):
    model, path = tiny_checkpoint
    loaded = mvdream.build_mvdream(checkpoint=str(path), overrides=TINY_OVERRIDES, low_memory=low_memory)
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert tensors and not any(t.is_meta for t in tensors) and all(t.device.type == "cpu" for t in tensors)
    reference = model.state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in loaded.state_dict().items())


def test_loaded_tiny_model_runs_a_multiview_denoising_step(mvdream, tiny_checkpoint):
    _, path = tiny_checkpoint
    model = mvdream.build_mvdream(checkpoint=path, overrides=TINY_OVERRIDES)
    latents = model.get_first_stage_encoding(model.encode_first_stage(torch.rand(4, 3, 16, 16) * 2 - 1))
    assert latents.shape == (4, 4, 8, 8)
    t = torch.full((4,), 500, dtype=torch.long)
    cond = {"context": torch.randn(4, 77, TINY_CONTEXT_DIM), "camera": torch.randn(4, 16), "num_frames": 4}
    eps = model.apply_model(model.q_sample(latents, t), t, cond)
    assert eps.shape == latents.shape and torch.isfinite(eps).all()


def test_missing_unexpected_and_misshaped_keys_are_listed(mvdream, tiny_checkpoint):
    model, _ = tiny_checkpoint
    state = dict(model.state_dict())
    dropped = sorted(state)[3]
    del state[dropped]
    state["model.diffusion_model.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(InputError) as info:
        mvdream.build_mvdream(checkpoint=state, overrides=TINY_OVERRIDES)
    message = str(info.value)
    assert "1 missing keys" in message and dropped in message
    assert "1 unexpected keys" in message and "extra_head" in message
    assert "sd-v2.1-base-4view.pt" in message  # the fix names the matching checkpoint
    state = dict(model.state_dict())
    name = "model.diffusion_model.input_blocks.0.0.weight"
    state[name] = torch.zeros(1, 2, 3)
    with pytest.raises(InputError, match="wrong shape keys: " + name.replace(".", r"\.")):
        mvdream.build_mvdream(checkpoint=state, overrides=TINY_OVERRIDES)


def test_safetensors_checkpoint_and_unreadable_files(mvdream, tiny_checkpoint, tmp_path):
    from safetensors.torch import save_file

    model, _ = tiny_checkpoint
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = mvdream.build_mvdream(checkpoint=path, overrides=TINY_OVERRIDES)
    assert torch.equal(loaded.betas, model.betas)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        mvdream.load_state_dict_file(broken)
    with pytest.raises(InputError, match="does not exist"):
        mvdream.load_state_dict_file(tmp_path / "absent.pt")


def test_checkpoint_is_found_in_the_hub_cache_offline(mvdream, tiny_checkpoint, tmp_path, monkeypatch):
    _, path = tiny_checkpoint
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(InputError, match="not in the Hugging Face cache") as info:
        mvdream.resolve_checkpoint("sd-v2.1-base-4view")
    assert "download MVDream/MVDream sd-v2.1-base-4view.pt" in str(info.value)
    source = tmp_path / "repo"
    source.mkdir()
    (source / "sd-v2.1-base-4view.pt").write_bytes(path.read_bytes())
    snapshot = put_in_hub_cache(cache, "MVDream/MVDream", source)
    found = mvdream.resolve_checkpoint("sd-v2.1-base-4view")
    assert found == snapshot / "sd-v2.1-base-4view.pt"
    model = mvdream.build_mvdream(checkpoint=found, overrides=TINY_OVERRIDES)
    assert mvdream.count_parameters(model)["total"] > 0
    with pytest.raises(InputError, match="MVDream checkpoint not found"):
        mvdream.resolve_checkpoint("sd-v2.1-base-4view", ckpt_path=str(tmp_path / "nope.pt"))


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip is not installed")
def test_openclip_text_encoder_has_the_checkpoint_keys_without_downloading(mvdream):
    try:
        import open_clip  # noqa: F401 - needs torchvision
    except ImportError as error:
        pytest.skip(f"open_clip does not import here ({error})")
    encoder = mvdream.openclip_text_encoder(arch="ViT-B-32", device="cpu", layer="penultimate")
    keys = set(encoder.state_dict())
    assert not any(".visual." in key for key in keys)  # the image tower is gone, as in MVDream's own class
    assert "model.token_embedding.weight" in keys and "model.ln_final.weight" in keys
    tokens = encoder(["a photo of a chair"])
    assert tokens.shape == (1, 77, 512)
