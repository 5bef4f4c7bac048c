"""The registered collection as one GLB scene: the canonical mesh, and every photo's camera, frustum and photo.

    info = export_scene(run, "out/export/scene.glb")      # Blender: File > Import > glTF 2.0; a browser: model-viewer

Content (glTF 2.0, y-up; the canonical's z-up world turned by (x, y, z) -> (x, z, -y), which Blender's importer
turns back, so Blender shows the canonical frame as it is):
    node "canonical"            the canonical's triangle mesh with vertex colours and normals (a rough material)
    node "view <photo>"         the photo's pose (the camera-to-world turned y-up); its extras hold the exact pinhole
                                intrinsics and the z-up c2w (glTF cameras have no principal point); children:
        "camera <photo>"        a glTF perspective camera (yfov from fl_y, aspect W·fl_y/(H·fl_x)), looking down -z
        "frustum <photo>"       lines from the centre to the photo's corners at `depth` and the photo's border, in
                                the camera's own frame — exact for any principal point
        "photo <photo>"         the photo (downscaled PNG) on that rectangle, unlit, facing the camera
The camera is a leaf of its own (loaders that take one camera node out of the graph, e.g. trimesh, keep the rest).
The scene's extras list the photos left out (failed ones) and the undecided ones.
"""
import io
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from jaxtyping import Float, Int

from congeal.apps.export.glb_builder import Z_UP_TO_Y_UP, GlbBuilder
from congeal.apps.export.photo_files import ExportPhoto, ExportSelection, select_photos
from congeal.canonical.marching_tetrahedra import TriangleMesh, canonical_mesh
from congeal.common.atomic import write_bytes
from congeal.common.paths import PathLike
from congeal.run.registered_run import RegisteredRun

__all__ = ["vertex_normals", "rigid", "add_canonical_mesh", "scene_glb", "export_scene"]

_FRUSTUM_COLOUR = (0.1, 0.35, 0.95)


def vertex_normals(vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]) -> Float[np.ndarray, "V 3"]:
    """Area-weighted unit vertex normals (faces counter-clockwise seen from outside)."""
    tri = vertices[faces].astype(np.float64)
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area: area weighting
    normals = np.zeros((vertices.shape[0], 3))
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-20, normals / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return normals.astype(np.float32)


def add_canonical_mesh(glb: GlbBuilder, mesh: TriangleMesh, name: str = "canonical") -> int:
    """Add the canonical mesh (z-up world coordinates) as a y-up root node; returns the node."""
    to_y_up = Z_UP_TO_Y_UP[:3, :3]
    vertices = mesh.vertices.astype(np.float64) @ to_y_up.T
    normals = vertex_normals(mesh.vertices, mesh.faces).astype(np.float64) @ to_y_up.T
    primitive = glb.triangles(vertices.astype(np.float32), mesh.faces, glb.pbr_material(name), colours=mesh.colours,
                              normals=normals.astype(np.float32))
    return glb.node(name, mesh=glb.mesh(name, [primitive]))


def rigid(c2w: Float[np.ndarray, "4 4"]) -> Float[np.ndarray, "4 4"]:
    """`c2w` with its rotation made exactly orthonormal (the nearest rotation, by SVD).

    poses.json rotations are orthonormal to ~1e-7 (float32 arithmetic); a glTF node matrix must decompose into
    translation, rotation and scale, so a skew of that size is projected away.
    """
    u, _, vt = np.linalg.svd(np.asarray(c2w, np.float64)[:3, :3])
    out = np.array(c2w, np.float64)
    out[:3, :3] = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return out


def _local_corners(photo: ExportPhoto, depth: float) -> Float[np.ndarray, "4 3"]:
    """The photo's corners (0,0), (W,0), (W,H), (0,H) on the plane `depth` ahead, in the camera's OpenGL frame."""
    cam = photo.camera
    uv = np.array([[0.0, 0.0], [cam.width, 0.0], [cam.width, cam.height], [0.0, cam.height]])
    x = (uv[:, 0] - cam.cx) / cam.fl_x * depth
    y = -(uv[:, 1] - cam.cy) / cam.fl_y * depth  # image rows go down, the camera's y goes up
    return np.stack([x, y, np.full(4, -depth)], -1)


def _png(photo: ExportPhoto, max_side: int) -> bytes:
    from PIL import Image

    from congeal.io.decode import decode_image

    decoded = decode_image(photo.path)
    rgb = decoded.rgb if decoded.alpha is None else decoded.rgb * decoded.alpha[..., None] + (
        1.0 - decoded.alpha[..., None])  # over white: the quad is opaque
    image = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    scale = max_side / max(image.size)
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene_glb(run: RegisteredRun, selection: Optional[ExportSelection] = None, photos: bool = True,
              photo_size: int = 512, mesh_resolution: int = 96, depth_fraction: float = 0.25) -> bytes:
    """The scene as GLB bytes.

    Args:
        run: the finished run.
        selection: the photos to show (default: `select_photos(run)`).
        photos: put each photo on its frustum's rectangle.
        photo_size: the photos' longer side in pixels, at most.
        mesh_resolution: cells per side of the grid the canonical mesh is extracted from.
        depth_fraction: frustum depth as a fraction of the median camera distance.
    Returns:
        the GLB file's bytes.
    """
    selection = selection or select_photos(run)
    glb = GlbBuilder()
    add_canonical_mesh(glb, canonical_mesh(run.canonical(), max_resolution=mesh_resolution))
    distance = float(np.median([np.linalg.norm(p.camera.position) for p in selection.photos]))
    depth = depth_fraction * max(distance, 1e-3)
    lines = glb.unlit_material("frustum", _FRUSTUM_COLOUR)
    segments = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]], np.int64)
    quad_faces = np.array([[0, 3, 2], [0, 2, 1]], np.int64)  # counter-clockwise seen from the camera
    quad_uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)  # glTF: v grows downwards
    for photo in selection.photos:
        cam = photo.camera
        corners = _local_corners(photo, depth)
        children: List[int] = []
        frustum = np.concatenate([np.zeros((1, 3)), corners]).astype(np.float32)
        children.append(glb.node(f"frustum {photo.name}", root=False, mesh=glb.mesh(
            f"frustum {photo.name}", [glb.lines(frustum, segments, lines)])))
        if photos:
            texture = glb.png_texture(_png(photo, photo_size), photo.name)
            material = glb.unlit_material(f"photo {photo.name}", texture=texture)
            quad = glb.triangles(corners.astype(np.float32), quad_faces, material, uvs=quad_uv)
            children.append(glb.node(f"photo {photo.name}", root=False, mesh=glb.mesh(f"photo {photo.name}", [quad])))
        yfov = 2.0 * np.arctan(0.5 * cam.height / cam.fl_y)
        aspect = (cam.width / cam.fl_x) / (cam.height / cam.fl_y)
        camera = glb.camera(yfov, aspect, znear=0.01 * max(distance, 1e-3), name=photo.name)
        children.insert(0, glb.node(f"camera {photo.name}", camera=camera, root=False))
        extras = {"congeal": {"name": photo.name, "fl_x": cam.fl_x, "fl_y": cam.fl_y, "cx": cam.cx, "cy": cam.cy,
                              "width": cam.width, "height": cam.height, "c2w_z_up": cam.c2w.tolist(),
                              "status": photo.record.get("status", "ok")}}
        glb.node(f"view {photo.name}", matrix=Z_UP_TO_Y_UP @ rigid(cam.c2w), children=children, extras=extras)
    extras: Dict[str, Any] = {"congeal": {
        "frame": "glTF y-up: the canonical (threestudio) z-up world turned by (x, y, z) -> (x, z, -y)",
        "run": str(run.root), **selection.summary()}}
    return glb.to_bytes(extras=extras)


def export_scene(run: RegisteredRun, path: PathLike, **options: Any) -> Dict[str, Any]:
    """Write the scene GLB atomically to `path`; options as `scene_glb`. Returns JSON-ready info."""
    selection = select_photos(run)
    data = scene_glb(run, selection, **options)
    write_bytes(path, data)
    return {"file": Path(path).name, "bytes": len(data), "cameras": len(selection.photos), **selection.summary()}
