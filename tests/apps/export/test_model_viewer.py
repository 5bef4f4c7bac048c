"""A browser draws the GLB: headless Chromium renders scene.glb (and the mesh's GLB) with Google's <model-viewer>.

The web component comes from the npm registry (`@google/model-viewer`, its self-contained UMD build) and is cached
under build/npm-cache/ (git-ignored); the test installs it there once when npm is present. It skips with the reason
when Chromium (`apt-get install -y chromium`) or the npm package cannot be had.
"""
import functools
import http.server
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

MODEL_VIEWER_VERSION = "4.4.0"
CACHE = Path(__file__).resolve().parents[3] / "build" / "npm-cache" / "model-viewer"
SCRIPT = CACHE / "node_modules" / "@google" / "model-viewer" / "dist" / "model-viewer-umd.min.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><script src="model-viewer-umd.min.js"></script></head>
<body style="margin:0;background:#ffffff">
<model-viewer id="mv" src="{glb}" camera-target="0m 0m 0m" camera-orbit="30deg 65deg {distance}"
              min-camera-orbit="auto auto 0m"
              interaction-prompt="none" style="width:900px;height:540px;background-color:#ffffff"></model-viewer>
<script>
  window.state = "loading";
  const mv = document.getElementById("mv");
  mv.addEventListener("load", () => {{ window.state = "loaded"; }});
  mv.addEventListener("error", (e) => {{ window.state = "error: " + (e.detail && e.detail.type); }});
</script></body></html>
"""


@pytest.fixture(scope="session")
def model_viewer_script() -> Path:
    if not SCRIPT.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("the browser test needs @google/model-viewer from the npm registry, and npm is not installed")
        try:
            subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--loglevel=error",
                            f"@google/model-viewer@{MODEL_VIEWER_VERSION}"], check=True, timeout=600,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (subprocess.SubprocessError, OSError) as error:
            pytest.skip(f"could not install @google/model-viewer with npm into {CACHE}: {error}")
        if not SCRIPT.is_file():
            pytest.skip(f"@google/model-viewer@{MODEL_VIEWER_VERSION} has no {SCRIPT.name}")
    return SCRIPT


@pytest.fixture
def serve(tmp_path):
    """`serve(folder) -> base URL`: a local HTTP server for one folder (model-viewer fetches the GLB)."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args, **kwargs: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _wait_for_context(page, timeout: float = 60.0) -> None:
    """Until the page has a JavaScript context (right after the start, Chromium may still be loading it)."""
    end = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate("document.readyState") == "complete":
                return
        except RuntimeError:
            if time.monotonic() > end:
                raise
        if time.monotonic() > end:
            return
        time.sleep(0.5)


def _render(glb: Path, folder: Path, script: Path, serve, chromium, distance: str = "auto") -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(script, folder / script.name)
    shutil.copyfile(glb, folder / glb.name)
    (folder / "index.html").write_text(PAGE.format(glb=glb.name, distance=distance))
    page = chromium(f"{serve(folder)}/index.html")  # (offline mode would block 127.0.0.1 too)
    _wait_for_context(page)
    assert page.wait_until("window.state === 'loaded' || String(window.state).startsWith('error')",
                           timeout=120), "model-viewer never loaded the GLB"
    assert page.evaluate("window.state") == "loaded", (page.evaluate("location.href"),
                                                       page.evaluate("document.body && document.body.innerText"))
    page.wait_until("document.getElementById('mv').modelIsVisible === true", timeout=60)
    time.sleep(2.0)  # a few frames after the model is shown
    return page.screenshot()[:540, :900]


def _object_pixels(shot: np.ndarray) -> np.ndarray:
    """The middle of the picture, and which of its pixels are drawn (not the white page)."""
    centre = shot[135:405, 225:675].reshape(-1, 3).astype(int)
    return centre, np.abs(centre - 255).sum(axis=1) > 60


def test_model_viewer_draws_the_scene(exported, model_viewer_script, serve, chromium, not_blank, tmp_path):
    """The whole scene (auto-framed: shape, frusta, photos), then the same scene seen from 3 units: the shape."""
    shot = _render(exported.out / "scene.glb", tmp_path / "scene", model_viewer_script, serve, chromium)
    assert not_blank(shot) > 0.004, "the screenshot of scene.glb is blank"
    blue = (shot[..., 2].astype(int) - shot[..., 0] > 80) & (shot[..., 2] > 150)  # the frusta's lines
    assert blue.sum() > 200, "no camera frustum shows"
    close = _render(exported.out / "scene.glb", tmp_path / "close", model_viewer_script, serve, chromium, "3m")
    centre, drawn = _object_pixels(close)
    assert drawn.mean() > 0.05, "the canonical does not show in the middle of the scene"


def test_model_viewer_draws_the_mesh_in_its_colours(exported, model_viewer_script, serve, chromium, tmp_path):
    shot = _render(exported.out / "mesh" / "canonical.glb", tmp_path / "mesh", model_viewer_script, serve, chromium)
    centre, drawn = _object_pixels(shot)
    assert drawn.mean() > 0.1, "the canonical does not show in the middle of the picture"
    assert centre[drawn].std(axis=0).max() > 8, "the object is one flat colour: its vertex colours are lost"
