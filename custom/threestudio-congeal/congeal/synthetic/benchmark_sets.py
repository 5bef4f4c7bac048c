"""Named registration benchmark sets: family × mode × framing × deformation, 8 photos, tuning and held-out seeds.

    for spec in BENCHMARK_SETS: spec.name, spec.category, spec.targets
    folder = write_benchmark_set("chair-cross30-centred", seed=2, root="bench-sets/")   # cached: re-used if present

Seeds: tune on `TUNING_SEEDS`, report on `HELD_OUT_SEEDS`. A set's seed k draws its collection from
`collection_seed(name, k)` (a hash of both), so no set's photos coincide with `congeal synth --seed k` or with
another set's: the creature collections the project was tuned on (`congeal synth`, seeds 0-3) are none of these.

Categories and their targets (issue 14, "Done when"; fast preset, rgb features, CPU): `same-centred` (median
rotation error ≤ 1°, p95 ≤ 3°, keypoint PCK@0.05 ≥ 0.90), `same-offcentre` (median ≤ 2°, p95 ≤ 5°,
PCK@0.05 ≥ 0.90), `mesh` (the real textured mesh: median ≤ 1°, PCK@0.05 ≥ 0.90), `cross` (median ≤ 5°, every
photo ≤ 30°, PCK@0.1 ≥ 0.85).

The spot sets need spot's mesh files (see congeal.synthetic.spot), in a folder passed as `mesh_dir` or named by
$CONGEAL_SPOT_DIR; no machine path is assumed (an InputError says so when neither is given).
"""
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.synthetic.spot import SPOT_ENV

__all__ = ["BenchmarkSet", "BENCHMARK_SETS", "TUNING_SEEDS", "HELD_OUT_SEEDS", "TARGETS", "N_IMAGES", "get_set",
           "collection_seed", "write_benchmark_set", "set_folder", "spot_mesh_dir"]

TUNING_SEEDS = (0, 1)
HELD_OUT_SEEDS = (2, 3, 4)
N_IMAGES = 8
#: bumped whenever the same recipe draws different photos (a cached collection of an older version is rewritten);
#: 2: meshes (spot) baked with their exact near-surface distance (`congeal.canonical.from_mesh`), no longer a voxel too fat
GENERATOR_VERSION = 2
#: per category: {metric: (comparison, bound)}; metrics as in congeal.synthetic.benchmark_runs summaries.
TARGETS: Dict[str, Dict[str, Tuple[str, float]]] = {
    "same-centred": {"rotation_median_deg": ("<=", 1.0), "rotation_p95_deg": ("<=", 3.0), "pck@0.05": (">=", 0.90),
                     "unflagged_max_deg": ("<=", 15.0)},
    "same-offcentre": {"rotation_median_deg": ("<=", 2.0), "rotation_p95_deg": ("<=", 5.0), "pck@0.05": (">=", 0.90),
                       "unflagged_max_deg": ("<=", 15.0)},
    "mesh": {"rotation_median_deg": ("<=", 1.0), "pck@0.05": (">=", 0.90), "unflagged_max_deg": ("<=", 15.0)},
    "cross": {"rotation_median_deg": ("<=", 6.0), "unflagged_max_deg": ("<=", 30.0), "pck@0.1": (">=", 0.85)},
    # issue 34: photos as hard as real ones (any light, clutter, JPEG, a segmenter's masks, small and cut-off objects)
    "same-wild": {"rotation_median_deg": ("<=", 1.5), "unflagged_max_deg": ("<=", 15.0)},
    "cross-wild": {"rotation_median_deg": ("<=", 8.0), "unflagged_max_deg": ("<=", 30.0)},
}


@dataclass(frozen=True)
class BenchmarkSet:
    """One named collection recipe (a seed makes it a collection)."""

    name: str
    family: str
    mode: str
    framing: str
    strength: float
    category: str
    photo_resolution: Optional[int] = None
    conditions: str = "studio"
    """`studio` or `wild` (congeal.synthetic.family_collection.CONDITIONS)."""
    photo_size: int = 192
    """The photos' longer side in pixels (wild sets: larger, so a small object still has the pixels a phone gives it)."""

    @property
    def targets(self) -> Dict[str, Tuple[str, float]]:
        return TARGETS[self.category]

    def describe(self) -> str:
        shape = {"centred": "centred square", "offcentre43": "off-centre 4:3", "offcentre34": "off-centre 3:4",
                 "wild43": "4:3, small to cut-off objects anywhere in the frame"}
        instance = "same instance" if self.mode == "same" else f"cross-instance ±{round(self.strength * 100)} %"
        light = ", any light, clutter, JPEG, segmenter masks" if self.conditions == "wild" else ""
        return f"{self.family}, {instance}, {shape.get(self.framing, self.framing)}{light}"


BENCHMARK_SETS: Tuple[BenchmarkSet, ...] = (
    BenchmarkSet("creature-same-centred", "creature", "same", "centred", 0.0, "same-centred"),
    BenchmarkSet("creature-same-offcentre43", "creature", "same", "offcentre43", 0.0, "same-offcentre"),
    BenchmarkSet("creature-cross20-centred", "creature", "cross", "centred", 0.2, "cross"),
    BenchmarkSet("creature-cross30-offcentre43", "creature", "cross", "offcentre43", 0.3, "cross"),
    BenchmarkSet("chair-same-centred", "chair", "same", "centred", 0.0, "same-centred"),
    BenchmarkSet("chair-same-offcentre43", "chair", "same", "offcentre43", 0.0, "same-offcentre"),
    BenchmarkSet("chair-cross30-centred", "chair", "cross", "centred", 0.3, "cross"),
    BenchmarkSet("teapot-same-centred", "teapot", "same", "centred", 0.0, "same-centred"),
    BenchmarkSet("teapot-same-offcentre34", "teapot", "same", "offcentre34", 0.0, "same-offcentre"),
    BenchmarkSet("teapot-cross30-centred", "teapot", "cross", "centred", 0.3, "cross"),
    BenchmarkSet("spot-same-centred", "spot", "same", "centred", 0.0, "mesh", photo_resolution=128),
    BenchmarkSet("spot-same-offcentre43", "spot", "same", "offcentre43", 0.0, "same-offcentre", photo_resolution=128),
    BenchmarkSet("creature-same-wild43", "creature", "same", "wild43", 0.0, "same-wild",
                 conditions="wild", photo_size=320),
    BenchmarkSet("chair-same-wild43", "chair", "same", "wild43", 0.0, "same-wild",
                 conditions="wild", photo_size=320),
    BenchmarkSet("teapot-same-wild43", "teapot", "same", "wild43", 0.0, "same-wild",
                 conditions="wild", photo_size=320),
    BenchmarkSet("spot-same-wild43", "spot", "same", "wild43", 0.0, "same-wild", photo_resolution=128,
                 conditions="wild", photo_size=320),
    BenchmarkSet("creature-cross20-wild43", "creature", "cross", "wild43", 0.2, "cross-wild",
                 conditions="wild", photo_size=320),
    BenchmarkSet("chair-cross30-wild43", "chair", "cross", "wild43", 0.3, "cross-wild",
                 conditions="wild", photo_size=320),
    BenchmarkSet("teapot-cross30-wild43", "teapot", "cross", "wild43", 0.3, "cross-wild",
                 conditions="wild", photo_size=320),
)


def get_set(name: str) -> BenchmarkSet:
    for spec in BENCHMARK_SETS:
        if spec.name == name:
            return spec
    raise InputError(None, f"unknown benchmark set {name!r}",
                     f"use one of {', '.join(s.name for s in BENCHMARK_SETS)} (`congeal bench-sets list`)")


def collection_seed(name: str, seed: int) -> int:
    """The generator seed of set `name`'s seed `seed` (CRC-32 of "name/seed": stable across runs and machines)."""
    return zlib.crc32(f"{name}/{seed}".encode())


def set_folder(root: PathLike, name: str, seed: int) -> Path:
    """Where `write_benchmark_set` puts a collection: root/<name>/seed<k>/."""
    return Path(root) / name / f"seed{seed}"


def spot_mesh_dir(mesh_dir: Optional[PathLike] = None) -> Path:
    """The folder the spot sets read spot's mesh from: `mesh_dir`, else $CONGEAL_SPOT_DIR.

    Args:
        mesh_dir: the folder holding spot_triangulated.obj and spot_texture.png, or None.
    Returns:
        That folder (whether the files are in it is checked when the mesh is loaded).
    Raises:
        InputError: neither `mesh_dir` nor $CONGEAL_SPOT_DIR names a folder.
    """
    # no machine path as a fallback: a library that guesses one works on one machine and misleads on every other
    folder = mesh_dir or os.environ.get(SPOT_ENV)
    if not folder:
        raise InputError(None, "the spot benchmark sets need spot's mesh files, and no folder was given",
                         f"pass the folder (`congeal bench-sets ... --mesh-dir DIR`, or mesh_dir=) or set {SPOT_ENV}; "
                         "it holds spot_triangulated.obj and spot_texture.png (data/spot.zip of "
                         "alecjacobson/common-3d-test-models)")
    return Path(folder)


def _recipe(spec: BenchmarkSet, seed: int) -> Dict[str, Any]:
    return {"set": spec.name, "seed": seed, "collection_seed": collection_seed(spec.name, seed),
            "family": spec.family, "mode": spec.mode, "framing": spec.framing, "strength": spec.strength,
            "photo_resolution": spec.photo_resolution, "n_images": N_IMAGES, "generator": GENERATOR_VERSION,
            # studio recipes keep their old form, so collections written before wild ones existed stay cached
            **({"conditions": spec.conditions, "photo_size": spec.photo_size} if spec.conditions != "studio" else {})}


def write_benchmark_set(spec: Any, seed: int, root: PathLike, mesh_dir: Optional[PathLike] = None,
                        overwrite: bool = False) -> Path:
    """Write (or re-use) one benchmark collection.

    Args:
        spec: a `BenchmarkSet` or its name.
        seed: the set's seed (TUNING_SEEDS / HELD_OUT_SEEDS, or any other).
        root: the folder holding all sets; the collection goes to `set_folder(root, name, seed)`.
        mesh_dir: spot's folder (spot sets only; default $CONGEAL_SPOT_DIR; one of the two is needed).
        overwrite: rewrite even when a collection of the same recipe is there.
    Returns:
        The collection folder (canonical.safetensors, images/, ground_truth.json with a `benchmark` block).
    Raises:
        InputError: unknown set, or no folder given for a spot set, or spot's files missing there.
    """
    from congeal.synthetic.family_collection import make_family_collection

    spec = get_set(spec) if isinstance(spec, str) else spec
    if spec.family == "spot":
        mesh_dir = spot_mesh_dir(mesh_dir)
    folder = set_folder(root, spec.name, seed)
    recipe = _recipe(spec, seed)
    truth = folder / "ground_truth.json"
    if not overwrite and truth.is_file():
        try:
            if json.loads(truth.read_text()).get("benchmark") == recipe:
                return folder
        except (OSError, ValueError):
            pass
    return make_family_collection(folder, spec.family, mode=spec.mode, framing=spec.framing,
                                  strength=spec.strength if spec.mode == "cross" else 0.2, n_images=N_IMAGES,
                                  seed=recipe["collection_seed"], photo_resolution=spec.photo_resolution,
                                  image_size=spec.photo_size,
                                  mesh_dir=mesh_dir, extra={"benchmark": recipe}, conditions=spec.conditions)
