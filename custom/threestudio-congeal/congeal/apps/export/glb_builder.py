"""A minimal glTF 2.0 binary (GLB) writer: triangle meshes with vertex colours, line sets, textured quads, cameras.

    glb = GlbBuilder()
    mesh = glb.mesh("shape", [glb.triangles(vertices, faces, colours=rgb, normals=n, material=glb.pbr_material())])
    glb.node("shape", mesh=mesh)
    cam = glb.camera(yfov=0.7, aspect=4 / 3, znear=0.01)
    glb.node("cat_01", matrix=pose, camera=cam, children=[...])
    write_bytes("scene.glb", glb.to_bytes())

Why our own writer: a GLB is one JSON chunk and one binary chunk (the glTF 2.0 specification's container), and the
features a scene needs (accessors, COLOR_0, LINES, an embedded PNG, perspective cameras, KHR_materials_unlit) are
~150 lines; trimesh (the `[viewer]` extra) writes neither cameras nor unlit line materials the way model viewers
draw them. Colours are given in sRGB and stored linear (glTF's COLOR_0 and colour factors are linear); textures stay
sRGB PNGs, as glTF wants. Coordinates are stored as given: the caller turns its world into glTF's y-up one.
"""
import json
import struct
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from jaxtyping import Float, Int

__all__ = ["GlbBuilder", "srgb_to_linear", "Z_UP_TO_Y_UP"]

# glTF is y-up; the canonical world is z-up: (x, y, z) -> (x, z, -y), a rotation (Blender's importer undoes it)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES, _LINES = 4, 1
_UNLIT = "KHR_materials_unlit"


def srgb_to_linear(rgb: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """sRGB-encoded values in [0,1] -> linear values (the sRGB transfer function's inverse)."""
    c = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


class GlbBuilder:
    """Collects buffers, accessors, meshes, materials, textures, cameras and nodes; `to_bytes()` is the GLB."""

    def __init__(self, generator: str = "congeal"):
        self.doc: Dict[str, Any] = {"asset": {"version": "2.0", "generator": generator}, "scene": 0,
                                    "scenes": [{"nodes": []}]}
        self.blob = bytearray()
        self.extensions: List[str] = []

    def _add(self, key: str, item: Dict[str, Any]) -> int:
        self.doc.setdefault(key, []).append(item)
        return len(self.doc[key]) - 1

    def _view(self, data: bytes, target: Optional[int] = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))  # every accessor starts 4-byte aligned
        view: Dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob.extend(data)
        return self._add("bufferViews", view)

    def _floats(self, array: np.ndarray, kind: str, bounds: bool = False) -> int:
        data = np.ascontiguousarray(array, np.float32)
        accessor: Dict[str, Any] = {"bufferView": self._view(data.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
                                    "count": int(data.shape[0]), "type": kind}
        if bounds:  # POSITION accessors must carry min and max
            accessor["min"] = [float(v) for v in data.min(axis=0)]
            accessor["max"] = [float(v) for v in data.max(axis=0)]
        return self._add("accessors", accessor)

    def _indices(self, indices: np.ndarray) -> int:
        data = np.ascontiguousarray(indices, np.uint32).reshape(-1)
        return self._add("accessors", {"bufferView": self._view(data.tobytes(), _ELEMENT_ARRAY_BUFFER),
                                       "componentType": _UINT32, "count": int(data.size), "type": "SCALAR"})

    def _use(self, extension: str) -> None:
        if extension not in self.extensions:
            self.extensions.append(extension)

    def pbr_material(self, name: str = "surface", colour: Sequence[float] = (1.0, 1.0, 1.0),
                     double_sided: bool = False) -> int:
        """A rough, non-metallic material (vertex colours multiply `colour`, given in sRGB)."""
        factor = [float(v) for v in srgb_to_linear(np.asarray(colour))] + [1.0]
        return self._add("materials", {"name": name, "doubleSided": double_sided, "pbrMetallicRoughness": {
            "baseColorFactor": factor, "metallicFactor": 0.0, "roughnessFactor": 1.0}})

    def unlit_material(self, name: str, colour: Sequence[float] = (1.0, 1.0, 1.0), texture: Optional[int] = None
                       ) -> int:
        """A material drawn without lighting (lines, photos): `colour` in sRGB, optionally times a texture."""
        self._use(_UNLIT)
        pbr: Dict[str, Any] = {"baseColorFactor": [float(v) for v in srgb_to_linear(np.asarray(colour))] + [1.0],
                               "metallicFactor": 0.0, "roughnessFactor": 1.0}
        if texture is not None:
            pbr["baseColorTexture"] = {"index": texture}
        return self._add("materials", {"name": name, "doubleSided": True, "pbrMetallicRoughness": pbr,
                                       "extensions": {_UNLIT: {}}})

    def png_texture(self, png: bytes, name: str) -> int:
        """A texture of an embedded PNG (sRGB), linearly filtered, clamped at the edges."""
        image = self._add("images", {"name": name, "bufferView": self._view(png), "mimeType": "image/png"})
        if "samplers" not in self.doc:
            self._add("samplers", {"magFilter": 9729, "minFilter": 9729, "wrapS": 33071, "wrapT": 33071})
        return self._add("textures", {"source": image, "sampler": 0, "name": name})

    def triangles(self, vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"], material: int,
                  colours: Optional[Float[np.ndarray, "V 3"]] = None,
                  normals: Optional[Float[np.ndarray, "V 3"]] = None,
                  uvs: Optional[Float[np.ndarray, "V 2"]] = None) -> Dict[str, Any]:
        """A triangle primitive (faces counter-clockwise seen from the front); colours in sRGB [0,1]."""
        attributes = {"POSITION": self._floats(vertices, "VEC3", bounds=True)}
        if normals is not None:
            attributes["NORMAL"] = self._floats(normals, "VEC3")
        if colours is not None:
            attributes["COLOR_0"] = self._floats(srgb_to_linear(colours), "VEC3")
        if uvs is not None:
            attributes["TEXCOORD_0"] = self._floats(uvs, "VEC2")
        return {"attributes": attributes, "indices": self._indices(faces), "material": material, "mode": _TRIANGLES}

    def lines(self, points: Float[np.ndarray, "V 3"], segments: Int[np.ndarray, "S 2"], material: int
              ) -> Dict[str, Any]:
        """A line primitive: `segments` index pairs into `points`."""
        return {"attributes": {"POSITION": self._floats(points, "VEC3", bounds=True)},
                "indices": self._indices(segments), "material": material, "mode": _LINES}

    def mesh(self, name: str, primitives: List[Dict[str, Any]]) -> int:
        return self._add("meshes", {"name": name, "primitives": primitives})

    def camera(self, yfov: float, aspect: float, znear: float, name: str = "") -> int:
        """A perspective camera (infinite far plane); it looks down its node's -z with +y up."""
        return self._add("cameras", {"name": name, "type": "perspective", "perspective": {
            "yfov": float(yfov), "aspectRatio": float(aspect), "znear": float(znear)}})

    def node(self, name: str, matrix: Optional[np.ndarray] = None, mesh: Optional[int] = None,
             camera: Optional[int] = None, children: Sequence[int] = (), extras: Optional[Dict[str, Any]] = None,
             root: bool = True) -> int:
        """A node; `matrix` is a 4×4 (row-major here, stored column-major as glTF wants); roots join the scene."""
        node: Dict[str, Any] = {"name": name}
        if matrix is not None:
            node["matrix"] = [float(v) for v in np.asarray(matrix, np.float64).reshape(4, 4).T.reshape(-1)]
        if mesh is not None:
            node["mesh"] = mesh
        if camera is not None:
            node["camera"] = camera
        if children:
            node["children"] = [int(c) for c in children]
        if extras:
            node["extras"] = extras
        index = self._add("nodes", node)
        if root:
            self.doc["scenes"][0]["nodes"].append(index)
        return index

    def to_bytes(self, extras: Optional[Dict[str, Any]] = None) -> bytes:
        """The GLB file: a 12-byte header, the JSON chunk (space-padded), the BIN chunk (zero-padded)."""
        doc = dict(self.doc)
        if extras:
            doc["scenes"] = [dict(doc["scenes"][0], extras=extras)]
        if self.extensions:
            doc["extensionsUsed"] = list(self.extensions)
        blob = bytes(self.blob) + b"\0" * (-len(self.blob) % 4)
        if blob:
            doc["buffers"] = [{"byteLength": len(blob)}]
        text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<I4s", len(text), b"JSON") + text
        if blob:
            chunks += struct.pack("<I4s", len(blob), b"BIN\0") + blob
        return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
