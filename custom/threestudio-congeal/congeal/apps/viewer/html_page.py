"""`congeal view RUN --export FILE`: the viewer's scene as one self-contained HTML page.

    path = export_html("out/run", "run.html")      # open it in any browser: no Python, no server, no network

The page is viser's own static client with the recorded scene inlined (base64 in the page; viser ≥ 1.0's
`scene.as_html`): the shape, every frustum with its photo and the alternatives, orbit/zoom/pan — everything but the
click-to-correspond, which needs the Python server (`congeal view RUN`). Nothing is fetched at view time.
"""
import contextlib
import io
from pathlib import Path

from congeal.run.registered_run import RegisteredRun
from congeal.apps.viewer.scene import build_scene
from congeal.apps.viewer.server import free_port, populate_scene, require_viser
from congeal.common.atomic import write_text
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["export_html"]


def export_html(run_dir: PathLike, out_file: PathLike, max_mesh_resolution: int = 96, image_side: int = 192) -> Path:
    """Write the run's 3D scene as a self-contained HTML page (atomically).

    Args:
        run_dir: the run.
        out_file: the page to write (.html).
        max_mesh_resolution: see `congeal.apps.viewer.scene.build_scene`.
        image_side: longest side of the photos embedded in the page.
    Returns:
        the written path.
    """
    viser = require_viser()
    out = Path(out_file)
    if out.exists() and out.is_dir():
        raise InputError(out, "is a folder", "pass a file name such as run.html")
    run = RegisteredRun(run_dir, include_failed=True)  # every photo is shown; flagged ones are marked
    scene = build_scene(run, max_mesh_resolution=max_mesh_resolution)
    # a private server on a free loopback port records the scene; nobody connects to it (its banner is not shown)
    with contextlib.redirect_stdout(io.StringIO()):
        server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        populate_scene(server, run, scene, image_side=image_side)
        if not hasattr(server.scene, "as_html"):
            raise InputError(None, f"viser {getattr(viser, '__version__', '?')} cannot write a static page",
                             "pip install -U 'viser>=1.0'")
        html = server.scene.as_html()
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.stop()
    write_text(out, html)
    return out
