"""The canonical alone as OBJ / PLY / GLB: closed, coloured, in the canonical frame, its description written down."""
import json

import numpy as np
import pytest

from congeal.apps.export.mesh_files import is_watertight

trimesh = pytest.importorskip("trimesh", reason="the mesh tests read the files with trimesh")


def test_obj_ply_and_glb_hold_one_closed_coloured_mesh(exported):
    folder = exported.out / "mesh"
    info = json.loads((folder / "canonical.json").read_text())
    assert info["watertight"] is True and "z up" in info["frame"]
    obj = trimesh.load(folder / "canonical.obj", process=False)
    ply = trimesh.load(folder / "canonical.ply", process=False)
    glb = trimesh.load(folder / "canonical.glb", force="mesh", process=False)
    for mesh in (obj, ply, glb):
        assert len(mesh.faces) == info["faces"] and len(mesh.vertices) == info["vertices"]
    assert obj.is_watertight and ply.is_watertight and obj.is_winding_consistent
    assert obj.volume > 0  # wound counter-clockwise seen from outside: a positive volume
    np.testing.assert_allclose(obj.vertices, ply.vertices, atol=1e-5)
    np.testing.assert_allclose(ply.bounds, info["bounds"], atol=1e-5)
    # glTF is y-up: (x, y, z) -> (x, z, -y)
    np.testing.assert_allclose(glb.vertices, ply.vertices[:, [0, 2, 1]] * [1, 1, -1], atol=1e-5)
    colours = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert colours.std(axis=0).max() > 10  # coloured, not one flat colour
    assert np.abs(np.asarray(obj.visual.vertex_colors)[:, :3].astype(int) - colours).max() <= 1


def test_resolution_and_level_change_the_surface(flagged_run, tmp_path):
    from congeal.apps.export.mesh_files import export_mesh
    from congeal.run.registered_run import RegisteredRun

    run = RegisteredRun(flagged_run.run)
    coarse = export_mesh(run, tmp_path / "coarse", resolution=16)
    fine = export_mesh(run, tmp_path / "fine", resolution=64)
    assert coarse["resolution"] <= 16 < fine["resolution"] and coarse["faces"] < fine["faces"]
    low = export_mesh(run, tmp_path / "low", resolution=32, level=0.2)
    high = export_mesh(run, tmp_path / "high", resolution=32, level=0.8)
    size = lambda info: np.subtract(info["bounds"][1], info["bounds"][0]).prod()  # noqa: E731
    assert size(low) > size(high)  # a lower opacity level is a looser surface


def test_bad_options_are_one_clear_error(flagged_run, tmp_path):
    from congeal.apps.export.mesh_files import export_mesh
    from congeal.common.errors import InputError
    from congeal.run.registered_run import RegisteredRun

    run = RegisteredRun(flagged_run.run)
    with pytest.raises(InputError, match="level"):
        export_mesh(run, tmp_path / "m", level=1.5)
    assert not (tmp_path / "m").exists()


def test_watertight_check_catches_a_hole():
    tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert is_watertight(tetra)
    assert not is_watertight(tetra[:3])
    assert not is_watertight(tetra[[0, 1, 2, 2]])  # a doubled face
