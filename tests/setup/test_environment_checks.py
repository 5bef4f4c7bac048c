"""The set-up checks: known-bad version combinations, the GPU memory threshold, a threestudio checkout's rows."""
from congeal.setup import environment_checks as checks


def _rows(rows):
    return {check.name: check for check in rows}


def test_known_bad_version_combinations(monkeypatch):
    def versions(table):
        monkeypatch.setattr(checks, "dist_version", lambda *names: next(
            (table[n] for n in names if n in table), None))
        return _rows(checks.check_versions())

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
    assert checks.check_gpu_memory(20, total_gb=16.0).status == "FAIL"
    assert checks.check_gpu_memory(20, total_gb=23.6).status == "OK"  # a 24 GB card
    assert checks.check_gpu_memory(20, total_gb=19.7).status == "OK"  # a "20 GB" card reports a little less


def test_fake_threestudio_checkout_turns_its_rows_green(tmp_path):
    root = tmp_path / "threestudio"
    (root / "threestudio").mkdir(parents=True)
    (root / "threestudio" / "__init__.py").write_text('__modules__ = {}\n__version__ = "0.2.3"\n')
    guidance = root / "custom" / "threestudio-mvdream" / "guidance"
    guidance.mkdir(parents=True)
    (guidance / "mvdream_guidance.py").write_text("")
    rows = _rows(checks.check_threestudio(root, "--threestudio"))
    assert rows["threestudio"].status == "OK" and "0.2.3" in rows["threestudio"].detail
    assert rows["threestudio-mvdream"].status == "OK"
    assert rows["threestudio-congeal extension"].status == "FAIL" and "ln -s" in rows["threestudio-congeal extension"].fix
    ours = root / "custom" / "threestudio-congeal"
    ours.mkdir()
    (ours / "__init__.py").write_text("")
    assert _rows(checks.check_threestudio(root))["threestudio-congeal extension"].status == "OK"
    (root / "threestudio" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    assert _rows(checks.check_threestudio(root))["threestudio"].status == "FAIL"
