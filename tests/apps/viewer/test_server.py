"""The 3D viewer: camera geometry, the ambiguity rule, the mesh, the scene the viser server holds, clicks, and the
page in a real browser (headless Chromium) — the live server and the exported file, which opens offline."""
import importlib.util
import json
import math
import os
import shutil
import time

import numpy as np
import pytest
import torch

from congeal.canonical.marching_tetrahedra import canonical_mesh, marching_tetrahedra
from congeal.run.registered_run import RegisteredRun
from congeal.apps.viewer.scene import CameraGeometry, ambiguous_alternatives, build_scene, rotation_to_wxyz
from congeal.geometry.cameras import c2w_from_spherical


def _camera(az=30.0, el=20.0, distance=4.0, cx=70.0, cy=40.0):
    c2w = c2w_from_spherical(torch.tensor([az]), torch.tensor([el]), torch.tensor([distance]))[0].double().numpy()
    return CameraGeometry("cam", c2w, 150.0, 150.0, cx, cy, 128, 96)


def _project(camera: CameraGeometry, point: np.ndarray) -> np.ndarray:
    """Pinhole projection with OpenGL camera axes (threestudio / poses.json convention)."""
    local = camera.c2w[:3, :3].T @ (point - camera.c2w[:3, 3])
    return np.array([camera.fl_x * local[0] / -local[2] + camera.cx, camera.fl_y * -local[1] / -local[2] + camera.cy])


def test_camera_geometry_matches_the_pinhole_model():
    camera = _camera()
    pixels = np.array([[0.0, 0.0], [128.0, 96.0], [70.0, 40.0], [10.5, 80.25]])
    world = camera.pixels_to_world(pixels, depth=1.3)
    for p, w in zip(pixels, world):
        assert np.allclose(_project(camera, w), p, atol=1e-3)
        hit = camera.pixel_at(camera.position, w - camera.position, 1.3)
        assert hit is not None and np.allclose(hit, p, atol=1e-3)
    assert camera.pixel_at(camera.position, camera.position - world[2], 1.3) is None  # looking backwards
    assert np.allclose(_project(camera, np.zeros(3)), [70.0, 40.0], atol=1e-3)  # look-at: the principal point
    centre, wxyz, width, height = camera.image_plane(1.3)
    assert np.allclose(_project(camera, centre), [64.0, 48.0], atol=1e-3)
    assert math.isclose(width, 128 / 150 * 1.3) and math.isclose(height, 96 / 150 * 1.3)
    segments = camera.frustum_segments(1.3)
    assert segments.shape == (9, 2, 3) and np.allclose(segments[:4, 0], camera.position)


def test_quaternions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        w, x, y, z = rotation_to_wxyz(q)
        back = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.allclose(back, q, atol=1e-9)


def _record(score=0.1, alternative_angle=90.0, alternative_score=0.11, **extra):
    c2w = c2w_from_spherical(torch.tensor([0.0, alternative_angle]), torch.tensor([10.0, 10.0]),
                             torch.tensor([4.0, 4.0])).tolist()
    return {"c2w": c2w[0], "score": score, "alternatives": [{"c2w": c2w[1], "score": alternative_score}], **extra}


def test_ambiguity_rule():
    assert len(ambiguous_alternatives(_record())) == 1  # a different pose scoring nearly as well
    assert ambiguous_alternatives(_record(alternative_score=0.5)) == []  # clearly worse
    assert ambiguous_alternatives(_record(alternative_angle=3.0)) == []  # the same pose, refined twice
    assert ambiguous_alternatives(_record(ambiguity=False)) == []
    assert len(ambiguous_alternatives(_record(alternative_score=0.5, ambiguity=True))) == 1
    # congeal-poses-v3: the collection's `undecided` verdict wins over the score rule and over the ambiguity number
    assert len(ambiguous_alternatives(_record(alternative_score=0.5, undecided=True, ambiguity=0.99))) == 1
    assert ambiguous_alternatives(_record(undecided=False, ambiguity=0.99)) == []
    assert ambiguous_alternatives(_record(ambiguity={"ambiguous": False})) == []
    assert ambiguous_alternatives({"c2w": np.eye(4).tolist()}) == []  # no alternatives at all


def test_marching_tetrahedra_sphere_is_closed_and_faces_outwards():
    n = 32
    axis = (np.arange(n) + 0.5) / n * 2 - 1
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces = marching_tetrahedra(0.6 - np.sqrt(x ** 2 + y ** 2 + z ** 2), 0.0, axis[0], axis[1] - axis[0])
    assert np.abs(np.linalg.norm(vertices, axis=1) - 0.6).max() < 0.01
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, counts = np.unique(directed, axis=0, return_counts=True)
    assert counts.max() == 1  # every directed edge once: consistently wound
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    assert (counts == 2).all()  # watertight
    tri = vertices[faces].astype(np.float64)
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert abs(volume - 4 / 3 * math.pi * 0.6 ** 3) < 0.02  # positive: normals point outwards
    empty_v, empty_f = marching_tetrahedra(np.zeros((4, 4, 4)), 0.5)
    assert empty_v.shape == (0, 3) and empty_f.shape == (0, 3)


def test_canonical_mesh_is_coloured_and_pooled():
    from congeal.canonical.bake import canonical_from_sdf

    canonical = canonical_from_sdf(lambda p: p.norm(dim=-1) - 0.5, lambda p: (p + 1) / 2, resolution=40)
    mesh = canonical_mesh(canonical, max_resolution=20)
    assert len(mesh.faces) > 100 and mesh.colours.shape == mesh.vertices.shape
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert 0.4 < radius.mean() < 0.62
    assert np.allclose(mesh.colours, np.clip((mesh.vertices + 1) / 2, 0, 1), atol=0.08)


@pytest.fixture(scope="module")
def run_copy(synthetic_run, tmp_path_factory):
    """A copy of the synthetic run whose first photo has a genuinely different, nearly as good alternative."""
    _, run_dir = synthetic_run("same")
    copy = shutil.copytree(run_dir, tmp_path_factory.mktemp("viewer") / "run", ignore=shutil.ignore_patterns("cache"))
    doc = json.loads((copy / "poses.json").read_text())
    first = doc["images"][0]
    c2w = np.array(first["c2w"])
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about world z
    alternative = dict(first["alternatives"][0]) if first.get("alternatives") else {}
    alternative.update({"c2w": np.block([[turn @ c2w[:3, :3], (turn @ c2w[:3, 3])[:, None]],
                                         [np.array([[0, 0, 0, 1.0]])]]).tolist(),
                        "score": first["score"] * 1.05})
    first["alternatives"] = [alternative]
    first.update(ambiguity=0.97, undecided=True)  # congeal-poses-v3: the collection's verdict decides
    (copy / "poses.json").write_text(json.dumps(doc))
    return copy


def test_scene_of_a_run(run_copy):
    run = RegisteredRun(run_copy)
    scene = build_scene(run, max_mesh_resolution=48)
    assert list(scene.cameras) == run.names
    assert list(scene.alternatives) == [run.names[0]] and len(scene.alternatives[run.names[0]]) == 1
    lo, hi = run.bounds()
    assert len(scene.mesh.faces) > 500
    centre = (lo + hi) / 2
    assert np.linalg.norm(scene.mesh.vertices.mean(axis=0) - centre) < 0.3 * np.linalg.norm(hi - lo)
    # each photo's object pixels, through its camera, are rays that pass near their own canonical points
    for name, camera in scene.cameras.items():
        omap = run.object_map(name)
        rows, cols = np.nonzero(omap.valid)
        pick = np.linspace(0, len(rows) - 1, 20).astype(int)
        xyz = omap.xyz[rows[pick], cols[pick]].astype(np.float64)
        projected = np.stack([_project(camera, p) for p in xyz])
        pixels = np.stack([cols[pick] + 0.5, rows[pick] + 0.5], -1)
        assert np.median(np.linalg.norm(projected - pixels, axis=1)) < 0.06 * omap.object_size()


needs_viser = pytest.mark.skipif(importlib.util.find_spec("viser") is None,
                                 reason="the viewer tests need the [viewer] extra (pip install viser)")


def _wait_for(condition, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.25)
    return False


@needs_viser
def test_viewer_in_a_real_browser(run_copy, chromium, not_blank):
    from congeal.apps.viewer.server import FRUSTUM_COLOUR, free_port, start_viewer

    viewer = start_viewer(run_copy, port=free_port(), max_mesh_resolution=48)
    try:
        run = viewer.run
        # the scene the server holds: the shape, one frustum and one photo per photo, the alternative
        frusta = viewer.frustum_nodes()
        assert sorted(frusta) == sorted(run.names)
        for name in ["/canonical/mesh"] + [f"/cameras/{n}/{part}" for n in run.names for part in ("frustum", "image")]:
            assert viewer.server.scene.get_handle_by_name(name) is not None, name
        assert viewer.server.scene.get_handle_by_name(f"/alternatives/{run.names[0]}/0") is not None

        page = chromium(viewer.url)
        assert _wait_for(lambda: viewer.connections >= 1), "the page never connected to the viewer"
        assert page.wait_until("document.querySelector('canvas') !== null")
        time.sleep(5.0)  # the scene streams in and renders (software WebGL)
        full = page.screenshot()
        if os.environ.get("CONGEAL_SCREENSHOTS"):  # keep the pictures (README screenshots)
            from PIL import Image

            Image.fromarray(full).save(os.path.join(os.environ["CONGEAL_SCREENSHOTS"], "viewer.png"))
        print(f"live viewer screenshot: {not_blank(full):.3f} of the pixels drawn")
        assert not_blank(full) > 0.01

        for name in run.names:  # the shape alone
            viewer.nodes[f"/cameras/{name}/frustum"].visible = False
            viewer.nodes[f"/cameras/{name}/image"].visible = False
        viewer.nodes[f"/alternatives/{run.names[0]}/0"].visible = False
        time.sleep(3.0)
        shape = page.screenshot()
        assert not_blank(shape) > 0.002
        viewer.nodes["/canonical/mesh"].visible = False  # the frusta alone: their blue lines
        for name in run.names:
            viewer.nodes[f"/cameras/{name}/frustum"].visible = True
        time.sleep(3.0)
        lines = page.screenshot().astype(np.int32)
        blue = (np.abs(lines - np.array(FRUSTUM_COLOUR)).sum(axis=-1) < 90).mean()
        assert blue > 0.0005 and not np.array_equal(shape, lines)

        # a click on a photo: the event's ray through a pixel of the first photo
        camera = viewer.scene.cameras[run.names[0]]
        omap = run.object_map(run.names[0])
        rows, cols = np.nonzero(omap.valid)
        middle = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)  # the body, seen by most photos
        pixel = (float(cols[middle]) + 0.5, float(rows[middle]) + 0.5)
        target = camera.pixels_to_world(np.array([pixel]), viewer.scene.depth)[0]
        eye = camera.position + np.array([0.05, -0.02, 0.03])
        event = type("Click", (), {"ray_origin": tuple(eye), "ray_direction": tuple(target - eye)})()
        viewer._click_handler(camera)(event)
        shown = viewer.last
        assert shown["photo"] == run.names[0] and np.allclose(shown["xy"], pixel, atol=1e-3)
        assert shown["canonical"] is not None
        expected, valid = run.transfer(run.names[0], run.names[1], np.array([pixel], np.float32))
        got = shown["targets"][run.names[1]]["xy"]
        assert (got is None) == (not valid[0])
        if got is not None:
            assert np.allclose(got, expected[0], atol=1e-3)
        assert viewer.server.scene.get_handle_by_name("/correspondence/markers") is not None
        # every other photo shows exactly what `Correspondence` transfers (a point there, or none where it is hidden)
        for other in run.names[1:]:
            _xy, ok = run.transfer(run.names[0], other, np.array([pixel], np.float32))
            assert (shown["targets"][other]["xy"] is None) == (not ok[0]), other
        assert any(t["xy"] is not None for t in shown["targets"].values())
    finally:
        viewer.stop()


@needs_viser
def test_exported_page_opens_without_a_server_or_network(run_copy, chromium, not_blank, tmp_path):
    from congeal.apps.viewer.html_page import export_html

    path = export_html(run_copy, tmp_path / "run.html", max_mesh_resolution=48)
    html = path.read_text()
    assert "__VISER_EMBED_DATA__" in html and html.count("<script") >= 1
    page = chromium(path.resolve().as_uri(), offline=True)
    assert page.wait_until("document.querySelector('canvas') !== null")
    time.sleep(5.0)
    shot = page.screenshot()
    if os.environ.get("CONGEAL_SCREENSHOTS"):
        from PIL import Image

        Image.fromarray(shot).save(os.path.join(os.environ["CONGEAL_SCREENSHOTS"], "viewer-export.png"))
    print(f"exported page screenshot: {not_blank(shot):.3f} of the pixels drawn")
    assert not_blank(shot) > 0.01
