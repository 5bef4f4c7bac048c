"""The canonical shape alone as mesh files: OBJ, PLY and GLB at a chosen resolution and iso-level, frame written down.

    info = export_mesh(run, "out/export/mesh", resolution=128, level=0.5)
    # mesh/canonical.obj  (v x y z r g b: vertex colours, the MeshLab/Blender extension)
    # mesh/canonical.ply  (binary, float xyz + uchar rgb per vertex)
    # mesh/canonical.glb  (y-up as glTF requires, vertex colours, normals)
    # mesh/canonical.json (frame, units, grid, level, counts, watertight, bounds)

The surface is marching tetrahedra on the canonical's one-cell opacity 1 − exp(−σ·cell)
(`congeal.canonical.marching_tetrahedra.canonical_mesh`) at `level`, on the grid pooled down to at most `resolution`
cells per side (a grid is never refined: the canonical's own resolution is the finest). The mesh is closed
(watertight) wherever the shape does not touch the grid's border; `canonical.json` says whether it is.
Coordinates are the canonical's world frame: threestudio's, z up, the units of the registration (the cameras of
poses.json / the COLMAP model live in the same frame and scale); the grid covers [-radius, radius]^3. OBJ and PLY
store it as it is (z up: Blender's OBJ/PLY importers take "Z up"); the GLB stores it y-up.
"""
import struct
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
from jaxtyping import Float, Int

from congeal.apps.export.glb_builder import GlbBuilder
from congeal.apps.export.gltf_scene import add_canonical_mesh
from congeal.canonical.marching_tetrahedra import TriangleMesh, canonical_mesh
from congeal.common.atomic import write_bytes, write_json, write_text
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.registered_run import RegisteredRun

__all__ = ["is_watertight", "obj_text", "ply_bytes", "export_mesh", "MESH_FORMAT"]

MESH_FORMAT = "congeal-mesh-v1"
FRAME = ("canonical world frame (threestudio convention): right-handed, z up; units of the registration's "
         "cameras (poses.json c2w); the canonical grid covers [-radius, radius]^3")


def is_watertight(faces: Int[np.ndarray, "F 3"]) -> bool:
    """Closed and consistently wound: every directed edge appears once and its reverse once."""
    if faces.shape[0] == 0:
        return False
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges, counts = np.unique(directed, axis=0, return_counts=True)
    if (counts != 1).any():
        return False
    reverse = np.unique(directed[:, ::-1], axis=0)
    return edges.shape == reverse.shape and bool((edges == reverse).all())


def _rgb8(colours: Float[np.ndarray, "V 3"]) -> np.ndarray:
    return (np.clip(colours, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def obj_text(mesh: TriangleMesh, comments: Sequence[str] = ()) -> str:
    """Wavefront OBJ with per-vertex colours (`v x y z r g b`, r g b in [0,1]); faces 1-based, counter-clockwise."""
    lines = [f"# {c}" for c in comments]
    for (x, y, z), (r, g, b) in zip(mesh.vertices.tolist(), np.clip(mesh.colours, 0, 1).tolist()):
        lines.append(f"v {x:.7g} {y:.7g} {z:.7g} {r:.4f} {g:.4f} {b:.4f}")
    lines.extend(f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces.tolist())
    return "\n".join(lines) + "\n"


def ply_bytes(vertices: Float[np.ndarray, "V 3"], colours: Float[np.ndarray, "V 3"],
              faces: Optional[Int[np.ndarray, "F 3"]] = None, comments: Sequence[str] = ()) -> bytes:
    """Binary little-endian PLY: vertices (float x y z, uchar red green blue), optional triangles."""
    n_faces = 0 if faces is None else int(faces.shape[0])
    header = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments),
              f"element vertex {vertices.shape[0]}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue"]
    if n_faces:
        header += [f"element face {n_faces}", "property list uchar int vertex_indices"]
    header.append("end_header")
    vertex = np.zeros(vertices.shape[0], dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vertex["xyz"], vertex["rgb"] = vertices, _rgb8(colours)
    body = vertex.tobytes()
    if n_faces:
        face = np.zeros(n_faces, dtype=[("n", "u1"), ("idx", "<i4", 3)])
        face["n"], face["idx"] = 3, faces
        body += face.tobytes()
    return ("\n".join(header) + "\n").encode("ascii") + body


def export_mesh(run: RegisteredRun, out: PathLike, resolution: int = 128, level: float = 0.5, smoothing: int = 1
                ) -> Dict[str, Any]:
    """Write the canonical's mesh as OBJ, PLY, GLB and its description (canonical.json) into `out`.

    Args:
        run: the finished run (its canonical.safetensors).
        out: the folder.
        resolution: cells per side of the grid the surface is extracted from (at most the canonical's).
        level: the iso-level: the one-cell opacity at the surface, in (0, 1).
        smoothing: 3×3×3 box blurs of the opacity before extraction (0: the grid as it is).
    Returns:
        JSON-ready info (what canonical.json holds).
    Raises:
        InputError: bad options, or the canonical has no surface at that level.
    """
    if not 0.0 < level < 1.0:
        raise InputError(None, f"--level {level} is not in (0, 1)", "the level is an opacity; 0.5 is the silhouette")
    if resolution < 8:
        raise InputError(None, f"--resolution {resolution} is too coarse", "use 8 or more cells per side")
    if smoothing < 0:
        raise InputError(None, f"--smoothing {smoothing} is negative", "use 0 (none) or more blurs")
    canonical = run.canonical()
    mesh = canonical_mesh(canonical, max_resolution=resolution, level=level, smoothing=smoothing)
    if mesh.faces.shape[0] == 0:
        raise InputError(run.folder.canonical, f"has no surface at opacity level {level}",
                         "choose a lower --level (the canonical is faint) or check the canonical")
    factor = max(1, int(np.ceil(canonical.resolution / max(2, resolution))))
    used = int(np.ceil(canonical.resolution / factor))
    out = Path(out)
    info: Dict[str, Any] = {
        "format": MESH_FORMAT, "frame": FRAME, "radius": float(canonical.radius),
        "canonical_resolution": canonical.resolution, "resolution": used, "level": float(level),
        "smoothing": int(smoothing), "vertices": int(mesh.vertices.shape[0]), "faces": int(mesh.faces.shape[0]),
        "watertight": is_watertight(mesh.faces),
        "bounds": [[float(v) for v in mesh.vertices.min(0)], [float(v) for v in mesh.vertices.max(0)]],
        "files": {"obj": "canonical.obj", "ply": "canonical.ply", "glb": "canonical.glb"},
        "glb_frame": "y-up: (x, y, z) -> (x, z, -y)",
    }
    comments = [f"congeal canonical mesh ({MESH_FORMAT}): {FRAME}",
                f"radius {canonical.radius:.9g}; grid {used}^3 (canonical {canonical.resolution}^3); "
                f"opacity level {level:.4g}; watertight {info['watertight']}"]
    write_text(out / "canonical.obj", obj_text(mesh, comments))
    write_bytes(out / "canonical.ply", ply_bytes(mesh.vertices, mesh.colours, mesh.faces, comments))
    glb = GlbBuilder()
    add_canonical_mesh(glb, mesh)
    write_bytes(out / "canonical.glb", glb.to_bytes(extras={"congeal": {k: info[k] for k in (
        "format", "frame", "glb_frame", "radius", "resolution", "level", "watertight")}}))
    write_json(out / "canonical.json", info)
    return info
