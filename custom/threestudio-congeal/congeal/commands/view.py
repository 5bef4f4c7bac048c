"""`congeal view RUN`: the run in a 3D viewer (viser), or as a self-contained HTML page.

    congeal view out/run                         # serves http://127.0.0.1:8080 until Ctrl-C
    congeal view out/run --host 0.0.0.0 --allow-remote   # to the network: no password, says what it exposes
    congeal view out/run --export run.html       # one file a colleague opens in a browser, no Python needed

Shows the canonical shape (a coloured mesh of canonical.safetensors), every photo's camera frustum with the photo,
and the alternative poses of ambiguous photos in orange. Clicking a photo shows where that point is on the shape
and on every other photo. Needs the `[viewer]` extra (pip install 'threestudio-congeal[viewer]').

The server listens on 127.0.0.1 only; any other --host is refused unless --allow-remote is given, which prints what
is exposed (docs/security.md). Viser's public share link is switched off.
"""
import argparse
import json
import sys
import time

NAME = "view"
HELP = "3D viewer of a run (viser): shape, cameras with photos, click-to-correspond; --export writes an HTML page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="output folder of `congeal register`")
    parser.add_argument("--export", metavar="FILE.html", default=None,
                        help="write a self-contained HTML page of the scene instead of serving it")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1, this machine only; any other needs "
                             "--allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --host other than a loopback address: the run's photos, shape and cameras are "
                             "then served to the network with no password")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; the next free one if taken)")
    parser.add_argument("--mesh-resolution", type=int, default=96,
                        help="cells per side of the grid the mesh is extracted from (default 96)")
    parser.add_argument("--stop-after", type=float, default=0.0, metavar="SECONDS",
                        help="stop the server after this many seconds (default 0: run until Ctrl-C)")
    parser.add_argument("--device", default="cpu", help="torch device for the correspondence look-ups")


def run(args: argparse.Namespace) -> int:
    if args.export:
        from congeal.apps.viewer.html_page import export_html

        path = export_html(args.run, args.export, max_mesh_resolution=args.mesh_resolution)
        print(json.dumps({"export": str(path), "bytes": path.stat().st_size}))
        return 0
    from congeal.apps.viewer.server import start_viewer

    viewer = start_viewer(args.run, host=args.host, port=args.port, device=args.device,
                          max_mesh_resolution=args.mesh_resolution, allow_remote=args.allow_remote,
                          on_remote=lambda notice: print(notice, file=sys.stderr, flush=True))
    print(json.dumps({"url": viewer.url, "photos": len(viewer.scene.cameras),
                      "ambiguous": sorted(viewer.scene.alternatives)}), flush=True)
    print(f"congeal view: open {viewer.url} in a browser (Ctrl-C stops the server)", flush=True)
    try:
        started = time.monotonic()
        while args.stop_after <= 0 or time.monotonic() - started < args.stop_after:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    return 0
