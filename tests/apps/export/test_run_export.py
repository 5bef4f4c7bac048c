"""`export_run`: bad runs and destinations are one clear InputError, an interrupted export is never half written."""
import json
import shutil

import pytest

from congeal.apps.export.run_export import expand_formats, export_run
from congeal.common.errors import InputError, WriteError


@pytest.fixture
def run_copy(flagged_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(flagged_run.run, copy)
    return copy


def test_formats_expand_all_and_refuse_unknown_names():
    assert expand_formats(["all"]) == ["colmap", "glb", "mesh", "nerfstudio"]
    assert expand_formats(["mesh", "colmap", "mesh"]) == ["colmap", "mesh"]
    with pytest.raises(InputError, match="unknown export format 'ply'"):
        expand_formats(["ply"])


def test_export_json_lists_every_format_and_the_commands_that_open_them(exported):
    summary = json.loads((exported.out / "export.json").read_text())
    assert sorted(summary["formats"]) == ["colmap", "glb", "mesh", "nerfstudio"]
    assert summary["photos"] and exported.run.failed not in summary["photos"]
    assert any("ns-train splatfacto" in c for c in summary["open"]["nerfstudio"])
    assert any("simple_trainer.py" in c for c in summary["open"]["colmap"])
    assert any("import_scene.gltf" in c for c in summary["open"]["glb"])
    assert summary["formats"]["colmap"]["points3D"] == summary["formats"]["nerfstudio"]["points"]


def test_missing_run_folder(tmp_path):
    with pytest.raises(InputError, match="no such run folder"):
        export_run(tmp_path / "nope", ["glb"], tmp_path / "out")


def test_run_from_an_older_format(run_copy, tmp_path):
    register = json.loads((run_copy / "register.json").read_text())
    (run_copy / "register.json").write_text(json.dumps(dict(register, format="congeal-register-v0")))
    with pytest.raises(InputError, match="register.json.*re-run `congeal register`"):
        export_run(run_copy, ["glb"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_canonical_and_missing_photo(run_copy, tmp_path):
    canonical = run_copy / "canonical.safetensors"
    saved = canonical.read_bytes()
    canonical.unlink()
    with pytest.raises(InputError, match="canonical.safetensors"):
        export_run(run_copy, ["mesh"], tmp_path / "out")
    canonical.write_bytes(saved)
    register = json.loads((run_copy / "register.json").read_text())
    register["images"][0]["path"] = str(tmp_path / "moved.png")
    (run_copy / "register.json").write_text(json.dumps(register))
    with pytest.raises(InputError, match="moved.png: the registered photo is gone"):
        export_run(run_copy, ["colmap"], tmp_path / "out")
    assert not (tmp_path / "out" / "colmap").exists()


def test_unwritable_destination(flagged_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match="a-file"):
        export_run(flagged_run.run, ["glb"], blocker / "export")


def test_an_interrupted_export_leaves_the_previous_one_whole(flagged_run, tmp_path, monkeypatch):
    from congeal.apps.export import colmap_model

    out = tmp_path / "export"
    export_run(flagged_run.run, ["colmap"], out, n_points=300)
    before = {p.relative_to(out): p.read_bytes() for p in (out / "colmap").rglob("*") if p.is_file()}

    def killed(folder, *args, **kwargs):
        (folder / "cameras.bin").parent.mkdir(parents=True, exist_ok=True)
        (folder / "cameras.bin").write_bytes(b"half")
        raise RuntimeError("killed half way")

    monkeypatch.setattr(colmap_model, "write_colmap_model", killed)
    with pytest.raises(RuntimeError, match="killed"):
        export_run(flagged_run.run, ["colmap"], out, n_points=500)
    after = {p.relative_to(out): p.read_bytes() for p in (out / "colmap").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == ["colmap", "export.json"]  # no staging folder left
