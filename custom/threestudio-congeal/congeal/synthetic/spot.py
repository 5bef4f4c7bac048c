"""The spot family: Keenan Crane's "spot" cow (public domain), a real textured mesh, same-instance only.

    family = spot_family("path/to/spot")        # or None with CONGEAL_SPOT_DIR set
    make_family_collection("sets/spot", "spot", framing="offcentre43", photo_resolution=128)   # congeal.synthetic
    congeal bench-sets write sets/ --set spot-same-centred --seed 2 --mesh-dir path/to/spot

The mesh is not part of the repository: get it from alecjacobson/common-3d-test-models (data/spot.zip) or
Keenan Crane's site, unpack it, and pass the folder holding `spot_triangulated.obj` and `spot_texture.png`.
`spot_dir()` says whether the files are there (tests skip without them).

Canonical frame: the cow faces +x with z up (the file's −z forward, +y up, rotated), centred on its bounding box
and scaled so its farthest vertex is 0.9 from the origin. Canonical: the mesh baked with its texture
(`congeal.canonical.textured_mesh`). Photos: a finer bake of the same mesh (128³ by default in the benchmark sets),
shaded with the mesh's smooth normals.

Keypoints (`SPOT_KEYPOINT_NAMES`): mesh vertices chosen by geometric rules in the canonical frame, not by index:
nose = the front-most vertex, tail_tip = the rear-most, horn_left/right = the highest vertex on each side,
ear_left/right = the vertex farthest out on each side, hoof_fl/fr/bl/br = in each quarter (front/back × left/right),
among the vertices at most 5 % of the reach above that quarter's lowest point, the one farthest out towards the
quarter's corner (x ± y: the hoof's outer front or back edge, which side and front/back views see; a hoof's sole
faces the ground and no photo sees it). Symmetry: the shape is mirror-symmetric left-right (the file's vertices are
mirrored exactly); only the texture's patches differ between the two sides.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from jaxtyping import Float
from torch import Tensor

from congeal.canonical.grid import Canonical
from congeal.canonical.textured_mesh import SurfaceSamples, TexturedMesh, canonical_from_textured_mesh
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.synthetic.families import Family

__all__ = ["SPOT_ENV", "SPOT_KEYPOINT_NAMES", "spot_dir", "load_spot", "spot_keypoints",
           "MeshSubject", "spot_family"]

SPOT_ENV = "CONGEAL_SPOT_DIR"
SPOT_FILES = ("spot_triangulated.obj", "spot_texture.png")
SPOT_KEYPOINT_NAMES = (
    "nose", "horn_left", "horn_right", "ear_left", "ear_right", "tail_tip",
    "hoof_fl", "hoof_fr", "hoof_bl", "hoof_br",
)
REACH = 0.9  # the farthest vertex's distance from the origin in the canonical frame
HOOF_BAND = 0.05  # a hoof: its quarter's vertices within this fraction of REACH above the quarter's lowest point
# File axes (x left-right, y up, z backwards) -> canonical (x forward, y left, z up); det +1.
_FILE_TO_CANONICAL = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def spot_dir(path: Optional[PathLike] = None) -> Optional[Path]:
    """The folder holding spot's files: `path`, else $CONGEAL_SPOT_DIR; None if neither is given or the files are
    not there (no machine path is guessed)."""
    given = path or os.environ.get(SPOT_ENV)
    if not given:
        return None
    folder = Path(given)
    return folder if all((folder / name).is_file() for name in SPOT_FILES) else None


def load_spot(mesh_dir: Optional[PathLike] = None) -> TexturedMesh:
    """Spot in the canonical frame (see the module docstring).

    Raises:
        InputError: the files are missing.
    """
    folder = spot_dir(mesh_dir)
    if folder is None:
        where = mesh_dir or os.environ.get(SPOT_ENV)
        if not where:
            raise InputError(None, "spot's mesh folder is not given",
                             f"pass it (mesh_dir=, --mesh-dir) or set {SPOT_ENV} to the folder holding "
                             f"{' and '.join(SPOT_FILES)} (spot.zip of alecjacobson/common-3d-test-models)")
        raise InputError(Path(where), f"does not hold {' and '.join(SPOT_FILES)}",
                         "unpack spot.zip from alecjacobson/common-3d-test-models there, or set "
                         f"{SPOT_ENV} to its folder")
    mesh = TexturedMesh.load(folder / SPOT_FILES[0], folder / SPOT_FILES[1])
    rotated = mesh.vertices @ _FILE_TO_CANONICAL.T
    centre = 0.5 * (rotated.min(0) + rotated.max(0))
    reach = float(np.linalg.norm(rotated - centre, axis=1).max())
    return mesh.transformed(_FILE_TO_CANONICAL, -centre, REACH / reach)


def spot_keypoints(mesh: TexturedMesh) -> Dict[str, np.ndarray]:
    """Named vertices {name: [3]} of spot in the canonical frame, chosen by the rules in the module docstring."""
    v = mesh.vertices
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    left, right = y > 1e-6, y < -1e-6

    def pick(mask: np.ndarray, score: np.ndarray) -> np.ndarray:
        candidates = np.flatnonzero(mask)
        return v[candidates[np.argmax(score[candidates])]].copy()

    out = {
        "nose": pick(np.ones_like(left), x),
        "horn_left": pick(left, z),
        "horn_right": pick(right, z),
        "ear_left": pick(left, y),
        "ear_right": pick(right, -y),
        "tail_tip": pick(np.ones_like(left), -x),
    }
    for name, (front, side) in {"fl": (True, left), "fr": (True, right), "bl": (False, left),
                                "br": (False, right)}.items():
        quarter = side & ((x > 0) if front else (x < 0))
        lowest = z[quarter].min()
        outward = (x if front else -x) + (y if side is left else -y)
        out[f"hoof_{name}"] = pick(quarter & (z <= lowest + HOOF_BAND * REACH), outward)
    return {name: out[name] for name in SPOT_KEYPOINT_NAMES}


@dataclass
class MeshSubject:
    """A textured mesh as a `Subject` (congeal.synthetic.families)."""

    mesh: TexturedMesh
    _samples: Dict[float, SurfaceSamples] = field(default_factory=dict, repr=False)

    def samples(self, spacing: float = 0.008) -> SurfaceSamples:
        """Surface samples (cached), half a 128³ cell apart by default."""
        if spacing not in self._samples:
            self._samples[spacing] = self.mesh.surface_samples(spacing)
        return self._samples[spacing]

    def bake(self, resolution: int) -> Canonical:
        return canonical_from_textured_mesh(self.mesh, resolution, radius=1.0, samples=self.samples())

    def normals(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        return self.samples().normal_at(points)

    def keypoints(self) -> Dict[str, np.ndarray]:
        return spot_keypoints(self.mesh)


def spot_family(mesh_dir: Optional[PathLike] = None) -> Family:
    """The spot family (same-instance only); raises InputError when its files are missing."""
    subject = MeshSubject(load_spot(mesh_dir))
    return Family(
        name="spot",
        keypoint_names=SPOT_KEYPOINT_NAMES,
        description="Keenan Crane's spot cow (public domain), a real textured mesh",
        symmetry="shape mirror-symmetric left-right; only the texture's patches tell the left side from the right",
        mean=lambda: subject,
        deform=None,
    )
