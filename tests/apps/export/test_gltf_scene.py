"""The GLB scene read by trimesh (a real client) and by its own JSON: the mesh, every exported camera, y-up."""
import json
import math
import struct

import numpy as np
import pytest

from congeal.apps.export.glb_builder import Z_UP_TO_Y_UP

trimesh = pytest.importorskip("trimesh", reason="the GLB tests read the scene with trimesh")


def _gltf_json(path) -> dict:
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON" and chunk_length % 4 == 0
    binary_length, binary_type = struct.unpack_from("<I4s", data, 20 + chunk_length)
    assert binary_type == b"BIN\0" and 28 + chunk_length + binary_length == len(data)
    return json.loads(data[20:20 + chunk_length])


def _poses(flagged) -> dict:
    return {e["name"]: e for e in json.loads((flagged.run / "poses.json").read_text())["images"]}


def test_trimesh_loads_the_mesh_and_every_exported_photos_frustum_and_photo(exported):
    flagged = exported.run
    scene = trimesh.load(exported.out / "scene.glb", force="scene")
    exported_names = [n for n in _poses(flagged) if n != flagged.failed]
    expected = {"canonical"} | {f"{kind} {n}" for n in exported_names for kind in ("frustum", "photo")}
    assert expected <= set(scene.geometry) and not any(flagged.failed in g for g in scene.geometry)
    canonical = scene.geometry["canonical"]
    assert len(canonical.faces) > 1000
    colours = np.asarray(canonical.visual.vertex_attributes["color"])  # COLOR_0, kept beside the material
    assert colours.shape[0] == len(canonical.vertices) and colours.std(axis=0).max() > 0.01
    for name in exported_names:  # each photo sits in its camera's frame, turned y-up
        transform, _ = scene.graph[f"photo {name}"]
        np.testing.assert_allclose(transform, Z_UP_TO_Y_UP @ np.asarray(_poses(flagged)[name]["c2w"]), atol=1e-6)
        assert scene.geometry[f"photo {name}"].visual.kind == "texture"
    assert scene.camera is not None  # trimesh reads one of the cameras (it keeps only the first)


def test_every_exported_photo_has_a_perspective_camera_with_its_field_of_view(exported):
    flagged = exported.run
    doc = _gltf_json(exported.out / "scene.glb")
    poses = _poses(flagged)
    views = [n for n in doc["nodes"] if n["name"].startswith("view ")]
    assert sorted(n["name"][5:] for n in views) == sorted(n for n in poses if n != flagged.failed)
    assert len(doc["cameras"]) == len(views)
    for view in views:
        record = poses[view["name"][5:]]
        matrix = np.asarray(view["matrix"]).reshape(4, 4).T  # glTF stores column-major
        # equal to poses.json up to its float32 rounding, made exactly rigid (a glTF node must decompose to TRS)
        np.testing.assert_allclose(matrix, Z_UP_TO_Y_UP @ np.asarray(record["c2w"]), atol=1e-6)
        np.testing.assert_allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-9)  # rigid: no scale
        (camera_node,) = [doc["nodes"][c] for c in view["children"] if "camera" in doc["nodes"][c]]
        perspective = doc["cameras"][camera_node["camera"]]["perspective"]
        assert perspective["yfov"] == pytest.approx(2 * math.atan(record["height"] / (2 * record["fl_y"])))
        assert perspective["aspectRatio"] == pytest.approx(
            record["width"] * record["fl_y"] / (record["height"] * record["fl_x"]))
        assert view["extras"]["congeal"]["cx"] == record["cx"]
    extras = doc["scenes"][0]["extras"]["congeal"]
    assert [e["name"] for e in extras["excluded"]] == [flagged.failed]
    assert "KHR_materials_unlit" in doc["extensionsUsed"]


def test_the_canonical_is_y_up(exported):
    """The canonical's z-up world turned into glTF's y-up frame: its up axis (world z) is glTF's +y."""
    from congeal.canonical.marching_tetrahedra import canonical_mesh
    from congeal.run.registered_run import RegisteredRun

    scene = trimesh.load(exported.out / "scene.glb", force="scene")
    glb_vertices = np.asarray(scene.geometry["canonical"].vertices)
    mesh = canonical_mesh(RegisteredRun(exported.run.run).canonical(), max_resolution=128)
    np.testing.assert_allclose(glb_vertices, mesh.vertices @ Z_UP_TO_Y_UP[:3, :3].T, atol=1e-5)


def test_scene_without_photos_is_smaller_and_has_no_textures(flagged_run, tmp_path):
    from congeal.apps.export.gltf_scene import export_scene
    from congeal.run.registered_run import RegisteredRun

    info = export_scene(RegisteredRun(flagged_run.run), tmp_path / "bare.glb", photos=False)
    doc = _gltf_json(tmp_path / "bare.glb")
    assert "images" not in doc and info["bytes"] == (tmp_path / "bare.glb").stat().st_size
