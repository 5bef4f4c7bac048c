"""`congeal view`: a viser server showing a run in 3D (needs the `[viewer]` extra: viser, trimesh).

    viewer = start_viewer("out/run", host="127.0.0.1", port=8080)   # serves http://127.0.0.1:8080
    viewer.frustum_nodes()                    # {"img_000": "/cameras/img_000/frustum", ...}
    viewer.show_correspondences("img_000", (120.5, 80.5))   # what a click on img_000 at that pixel shows
    viewer.stop()

The scene: the canonical shape (marching tetrahedra on the run's canonical.safetensors, vertex-coloured), every
photo's camera frustum (blue) with the photo on its image rectangle, and the alternative poses of ambiguous photos
(orange frusta; a checkbox shows every photo's alternatives). Clicking a photo's rectangle picks that pixel: its
canonical point is marked on the shape and its correspondences on every other photo (green = visible there, grey =
hidden: occluded or facing away; no mark = no correspondence), with lines from the canonical point. The side panel
does the same from a photo name and pixel coordinates.

Exposure (docs/security.md): the server listens on a loopback address unless `allow_remote=True`
(`congeal view --allow-remote`); it has no password, so anyone who reaches the port sees every photo, the shape and
the cameras. Viser's public share link is switched off (button hidden, requests refused). Photo names are shown as
plain text, never as viser Markdown (which is MDX: `{...}` in a name would run as JavaScript in the browser).
viser >= 1.1.1 is required: 1.0.x served any readable file for `GET /../../...`.
"""
import ipaddress
import socket
import threading
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from congeal.run.registered_run import RegisteredRun
from congeal.apps.viewer.scene import CameraGeometry, ViewerScene, build_scene
from congeal.run.surface import same_surface
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["require_viser", "is_loopback", "exposure_notice", "disable_share_link", "populate_scene",
           "CongealViewer", "start_viewer", "free_port", "photo_thumbnail"]

FRUSTUM_COLOUR = (40, 90, 210)
ALTERNATIVE_COLOUR = (255, 140, 0)
#: frusta of photos the run flags (poses.json `status`): failed red, undecided yellow
STATUS_FRUSTUM_COLOURS = {"failed": (220, 30, 30), "undecided": (235, 190, 0)}
VISIBLE_COLOUR = (20, 200, 60)
HIDDEN_COLOUR = (150, 150, 150)
SOURCE_COLOUR = (230, 20, 200)


def require_viser():
    """The viser module, or InputError saying how to install it."""
    try:
        import viser
    except ImportError:
        raise InputError(None, "the 3D viewer needs the 'viser' package",
                         "pip install 'threestudio-congeal[viewer]'  (or: pip install viser trimesh)") from None
    return viser


def is_loopback(host: str) -> bool:
    """Is `host` an address only this machine can reach (127.0.0.0/8, ::1, localhost)?"""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def exposure_notice(host: str, port: int, run_dir: PathLike, photos: int) -> str:
    """What serving on a non-loopback address exposes, said before the server starts (`--allow-remote`)."""
    return (f"congeal view: serving on {host}:{port} to the network, with no password: anyone who can reach this "
            f"port sees the {photos} photos of {run_dir} (as thumbnails), their names, the canonical shape and every "
            "camera, and can query correspondences. Stop it with Ctrl-C; prefer --host 127.0.0.1 and an SSH tunnel "
            "(ssh -L 8080:127.0.0.1:8080 host).")


def disable_share_link(server) -> None:
    """Switch off viser's public share link: hide its button and refuse the request a client may still send
    (viser would otherwise open a tunnel through share.viser.studio on any connected client's request)."""
    try:
        server.gui.configure_theme(show_share_button=False)
    except TypeError:  # a viser whose theme has no share button
        pass

    def refuse(*_args, **_kwargs) -> None:
        return None

    # viser's ShareUrlRequest handler looks the method up on the server at call time
    server.request_share_url = refuse


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def photo_thumbnail(run: RegisteredRun, name: str, side: int = 256) -> np.ndarray:
    """The photo over white, longer side at most `side` pixels, uint8 [h,w,3] (what the frustum shows)."""
    from PIL import Image

    photo = run.photo(name, required=False).over_white()
    image = Image.fromarray((np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8))
    scale = min(1.0, side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS)
    return np.asarray(image, np.uint8)


def _line_segments(server, name: str, segments: np.ndarray, colour, width: float):
    """add_line_segments across viser versions (world `thickness` in ≥ 1.1, screen `line_width` before)."""
    import inspect

    points = np.asarray(segments, np.float32)
    params = inspect.signature(server.scene.add_line_segments).parameters
    if "thickness" in params:
        return server.scene.add_line_segments(name, points=points, colors=colour, thickness=width,
                                              thickness_units="screen")
    return server.scene.add_line_segments(name, points=points, colors=colour, line_width=width)


def _mesh_node(server, name: str, scene: ViewerScene):
    """The canonical mesh, vertex-coloured when trimesh is there (as GLB), else one mean colour."""
    mesh = scene.mesh
    try:
        import trimesh
    except ImportError:
        colour = tuple(int(255 * c) for c in (mesh.colours.mean(axis=0) if len(mesh.colours) else (0.7,) * 3))
        return server.scene.add_mesh_simple(name, vertices=mesh.vertices, faces=mesh.faces, color=colour)
    colours = np.concatenate([np.clip(mesh.colours, 0, 1) * 255, np.full((len(mesh.colours), 1), 255.0)], 1)
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, vertex_colors=colours.astype(np.uint8),
                         process=False)
    return server.scene.add_mesh_trimesh(name, tm)


def populate_scene(server, run: RegisteredRun, scene: ViewerScene, image_side: int = 256) -> Dict[str, Any]:
    """Add the run's scene to a viser server; returns {node name: handle}.

    Nodes: /canonical/mesh; /cameras/<photo>/frustum and /cameras/<photo>/image per photo;
    /alternatives/<photo>/<i> for ambiguous photos' alternatives; /alternatives_all/<photo>/<i> (hidden) for all.
    """
    nodes: Dict[str, Any] = {}
    nodes["/canonical/mesh"] = _mesh_node(server, "/canonical/mesh", scene)
    depth = scene.depth
    for name, camera in scene.cameras.items():
        frustum = f"/cameras/{name}/frustum"
        colour = STATUS_FRUSTUM_COLOURS.get(scene.statuses.get(name, "ok"), FRUSTUM_COLOUR)
        nodes[frustum] = _line_segments(server, frustum, camera.frustum_segments(depth), colour, 2.0)
        centre, wxyz, width, height = camera.image_plane(depth)
        image = f"/cameras/{name}/image"
        nodes[image] = server.scene.add_image(image, photo_thumbnail(run, name, image_side), render_width=width,
                                              render_height=height, wxyz=wxyz, position=centre)
    for group, table, visible in (("/alternatives", scene.alternatives, True),
                                  ("/alternatives_all", scene.all_alternatives, False)):
        for name, cams in table.items():
            for i, camera in enumerate(cams):
                node = f"{group}/{name}/{i}"
                nodes[node] = _line_segments(server, node, camera.frustum_segments(depth), ALTERNATIVE_COLOUR, 1.5)
                nodes[node].visible = visible
    if hasattr(server, "initial_camera"):
        server.initial_camera.position = tuple(float(v) for v in scene.view_position())
        server.initial_camera.look_at = (0.0, 0.0, 0.0)
    return nodes


class CongealViewer:
    """A run shown by a viser server, with correspondences on click.

    Args:
        run: the run.
        scene: its scene (`build_scene`).
        server: a `viser.ViserServer`.
        image_side: longest side of the photos sent to the browser.
    """

    def __init__(self, run: RegisteredRun, scene: ViewerScene, server, image_side: int = 256):
        self.run, self.scene, self.server = run, scene, server
        self._lock = threading.Lock()
        self.connections = 0
        self.nodes = populate_scene(server, run, scene, image_side)
        self.last: Optional[Dict[str, Any]] = None
        for name, camera in scene.cameras.items():
            self.nodes[f"/cameras/{name}/image"].on_click(self._click_handler(camera))
        self._add_gui()

        @server.on_client_connect
        def _count(client) -> None:
            self.connections += 1
            if not hasattr(server, "initial_camera"):  # older viser: set each client's camera instead
                client.camera.position = tuple(float(v) for v in scene.view_position())
                client.camera.look_at = (0.0, 0.0, 0.0)

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    def frustum_nodes(self) -> Dict[str, str]:
        """{photo: frustum node name} of every photo's chosen camera."""
        return {n: f"/cameras/{n}/frustum" for n in self.scene.cameras if f"/cameras/{n}/frustum" in self.nodes}

    def _click_handler(self, camera: CameraGeometry):
        def handler(event) -> None:
            hit = camera.pixel_at(event.ray_origin, event.ray_direction, self.scene.depth)
            if hit is not None:
                self.show_correspondences(camera.name, hit)

        return handler

    def _add_gui(self) -> None:
        gui = self.server.gui
        names = list(self.scene.cameras)
        # constant text only: viser Markdown is MDX, and a photo name with {...} in it would run as JavaScript
        gui.add_markdown(
            "**Click a photo** (on its frustum) to see where that point is on the shape and on every other photo.\n\n"
            "Blue frusta: chosen poses · red: cameras the run calls failed · yellow: undecided (look at them) · "
            "orange: alternatives of ambiguous photos · green mark: visible · grey: hidden")
        # what was picked, with the photo's name: a read-only text field shows it as plain text
        self.status = gui.add_text("picked", initial_value="", disabled=True)
        photo = gui.add_dropdown("photo", tuple(names), initial_value=names[0])
        first = self.scene.cameras[names[0]]
        x = gui.add_number("x (pixels)", initial_value=first.width / 2.0)
        y = gui.add_number("y (pixels)", initial_value=first.height / 2.0)
        show = gui.add_button("show correspondences")
        every = gui.add_checkbox("alternatives of every photo", initial_value=False)

        @show.on_click
        def _show(_event) -> None:
            self.show_correspondences(photo.value, (float(x.value), float(y.value)))

        @every.on_update
        def _every(_event) -> None:
            for node, handle in self.nodes.items():
                if node.startswith("/alternatives_all/"):
                    handle.visible = bool(every.value)

    def show_correspondences(self, photo: str, xy: Tuple[float, float]) -> Dict[str, Any]:
        """Mark pixel `xy` of `photo`, its canonical point and its correspondences on every other photo.

        Returns:
            {"photo", "xy", "canonical": [x, y, z] | None, "targets": {name: {"xy": [x, y] | None, "visible"}}}.
        """
        with self._lock:
            return self._show(photo, xy)

    def _show(self, photo: str, xy: Tuple[float, float]) -> Dict[str, Any]:
        run, scene, depth = self.run, self.scene, self.scene.depth
        run.require(photo)
        camera = scene.cameras[photo]
        omap = run.object_map(photo)
        point = np.array([xy], np.float32)
        xyz, found = omap.lift(point, snap_px=0.03 * omap.object_size())
        result: Dict[str, Any] = {"photo": photo, "xy": [float(xy[0]), float(xy[1])],
                                  "canonical": xyz[0].tolist() if found[0] else None, "targets": {}}
        markers, colours, rays = [camera.image_point(xy, depth, lift=0.01)], [SOURCE_COLOUR], []
        tolerance = run.surface_tolerance()
        for name, other in scene.cameras.items():
            if name == photo:
                continue
            out, ok = run.transfer(photo, name, point)
            visible = False
            if ok[0] and found[0]:
                xyz_t, found_t = run.object_map(name).lift(out, snap_px=1.5)
                visible = bool(found_t[0] and same_surface(xyz_t, xyz, tolerance)[0])
                marker = other.image_point((float(out[0, 0]), float(out[0, 1])), depth, lift=0.01)
                markers.append(marker)
                colours.append(VISIBLE_COLOUR if visible else HIDDEN_COLOUR)
                rays.append((xyz[0], marker))
            result["targets"][name] = {"xy": [float(v) for v in out[0]] if ok[0] else None, "visible": visible}
        size = 0.05 * scene.depth * camera.height / camera.fl_y
        self.nodes["/correspondence/markers"] = self.server.scene.add_point_cloud(
            "/correspondence/markers", points=np.asarray(markers, np.float32),
            colors=np.asarray(colours, np.uint8), point_size=size)
        if found[0]:
            lo, hi = run.bounds()
            self.nodes["/correspondence/canonical"] = self.server.scene.add_icosphere(
                "/correspondence/canonical", radius=0.03 * float(np.linalg.norm(hi - lo)), color=SOURCE_COLOUR,
                position=tuple(float(v) for v in xyz[0]))
            if rays:
                self.nodes["/correspondence/rays"] = _line_segments(
                    self.server, "/correspondence/rays", np.asarray(rays, np.float32), SOURCE_COLOUR, 1.5)
        shown = sum(1 for t in result["targets"].values() if t["xy"] is not None)
        seen = sum(1 for t in result["targets"].values() if t["visible"])
        flag = self.scene.statuses.get(photo, "ok")
        label = photo if flag == "ok" else f"{photo} [{flag.upper()}: {self.scene.reasons.get(photo, '')}]"
        self.status.value = (f"{label} at ({xy[0]:.1f}, {xy[1]:.1f}): "
                             + ("on the object" if found[0] else "not on the object")
                             + f" · correspondences on {shown} of {len(result['targets'])} photos, "
                             f"visible on {seen}")
        self.last = result
        return result

    def stop(self) -> None:
        self.server.stop()


def start_viewer(run_dir: PathLike, host: str = "127.0.0.1", port: int = 8080, device: str = "cpu",
                 max_mesh_resolution: int = 96, image_side: int = 256, allow_remote: bool = False,
                 on_remote: Optional[Callable[[str], None]] = None) -> CongealViewer:
    """Build a run's scene and serve it with viser (returns at once; the server runs in background threads).

    Args:
        run_dir: the run folder.
        host: address to listen on; a non-loopback one needs `allow_remote`.
        port: port (viser takes the next free one when it is taken).
        device: torch device of the correspondence look-ups.
        max_mesh_resolution: cells per side of the grid the mesh is extracted from.
        image_side: longest side of the photos sent to the browser.
        allow_remote: serve on a non-loopback address (the run is then visible to the network, without password).
        on_remote: called with `exposure_notice(...)` before a non-loopback server starts (default: no call).
    Raises:
        InputError: a non-loopback host without `allow_remote`; no viser; a folder that is not a run.
    """
    if not is_loopback(host) and not allow_remote:
        raise InputError(None, f"--host {host} would serve the run's photos to every machine that can reach this "
                               "one, with no password",
                         "add --allow-remote if that is what you want, or keep --host 127.0.0.1 and use an SSH "
                         "tunnel (ssh -L 8080:127.0.0.1:8080 host)")
    viser = require_viser()
    run = RegisteredRun(run_dir, device=device, include_failed=True)  # every photo is shown; flagged ones are marked
    scene = build_scene(run, max_mesh_resolution=max_mesh_resolution)
    if not is_loopback(host) and on_remote is not None:
        on_remote(exposure_notice(host, port, run_dir, len(scene.cameras)))
    server = viser.ViserServer(host=host, port=port, verbose=False)
    disable_share_link(server)
    return CongealViewer(run, scene, server, image_side=image_side)
