"""Shared plumbing of the evaluation harnesses: staging a benchmark collection, registering it, reading runs.

    folder = stage_collection(out / "cat" / "collection", [StagedImage("a", img_path, mask)])
    run = ensure_run(out / "cat", canonical="canonical.safetensors", collection=folder)
    poses = read_poses(run)          # {name: entry of poses.json}

A staged collection is an image folder in the layout `congeal register` reads: `<folder>/<name>.<ext>` with
`<folder>/masks/<name>.png` (white = object). Images are copied unchanged unless they carry an EXIF orientation,
in which case the orientation is applied and the result saved (so pixel coordinates match the annotations).
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from congeal.common.atomic import save_image, write_bytes
from congeal.common.errors import InputError


@dataclass
class StagedImage:
    name: str  # stem the registration run will use
    image_path: Path
    mask: Optional[np.ndarray] = None  # bool [H,W] in the (EXIF-transposed) image's pixel grid


def _has_rotation(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return int(image.getexif().get(0x0112, 1)) not in (0, 1)


def stage_collection(folder: Union[str, Path], images: Sequence[StagedImage]) -> Path:
    """Write (or refresh) an image folder + masks/ for registration; returns the folder."""
    from PIL import Image

    folder = Path(folder)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for item in images:
        source = Path(item.image_path)
        if not source.is_file():
            raise InputError(source, "image is missing", "re-extract the dataset's images")
        rotated = _has_rotation(source)
        target = folder / (f"{item.name}.png" if rotated else f"{item.name}{source.suffix.lower() or '.jpg'}")
        if not target.exists():
            if rotated:  # bake the orientation in: annotations refer to the upright image
                from congeal.evaluation.navi import load_image

                save_image(target, np.asarray(load_image(source)))
            else:
                write_bytes(target, source.read_bytes())
        if item.mask is not None:
            mask_file = folder / "masks" / f"{item.name}.png"
            if not mask_file.exists():
                save_image(mask_file, Image.fromarray(np.where(item.mask, 255, 0).astype(np.uint8)))
    return folder


def ensure_run(run_dir: Union[str, Path], canonical: Optional[Union[str, Path]], collection: Optional[Path],
               preset: str = "fast", features: str = "dinov2", device: str = "cpu", seed: int = 0,
               overrides: Optional[Sequence[str]] = None, dinov2: Optional[str] = None,
               progress: bool = True) -> Path:
    """Return a registration run folder, registering `collection` against `canonical` when it has no poses.json.

    An existing `run_dir/poses.json` is reused as is (delete the folder to redo it).
    """
    run_dir = Path(run_dir)
    if (run_dir / "poses.json").is_file():
        return run_dir
    if canonical is None or collection is None:
        raise InputError(run_dir, "has no poses.json (no registration run here)",
                         "pass --canonical to register the images, or point --run-dir at existing runs")
    from congeal.run.pipeline import register_collection

    register_collection(canonical, collection, run_dir, preset=preset, features=features, device=device,
                        seed=seed, overrides=list(overrides or []) or None, dinov2=dinov2, progress=progress)
    return run_dir


def resolve_canonical(canonical: Union[str, Path], key: str, single: bool) -> Path:
    """`--canonical` is a .safetensors file (one category/object) or a folder with `<key>.safetensors` or
    `<key>/canonical.safetensors`."""
    canonical = Path(canonical)
    if canonical.is_file():
        if not single:
            raise InputError(canonical, "is one canonical but several categories/objects are evaluated",
                             "pass a folder holding <name>.safetensors or <name>/canonical.safetensors, "
                             "or select one category/object")
        return canonical
    for candidate in (canonical / f"{key}.safetensors", canonical / key / "canonical.safetensors"):
        if candidate.is_file():
            return candidate
    raise InputError(canonical, f"holds no canonical for {key!r}",
                     f"add {key}.safetensors or {key}/canonical.safetensors")


def read_poses(run_dir: Union[str, Path]) -> Dict[str, Dict[str, Any]]:
    """poses.json of a registration run -> {name: entry} (validated by congeal.run.outputs; InputError if bad)."""
    from congeal.run.outputs import read_poses as read_poses_file

    return read_poses_file(Path(run_dir) / "poses.json")


def check_names(run_dir: Path, available, needed, what: str) -> None:
    """Raise InputError when the run lacks images the benchmark needs."""
    missing = sorted(set(needed) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(run_dir, f"has no registration for {len(missing)} {what} image(s): {shown}",
                         "register every benchmark image of this set (or pass --canonical to do it here)")


def json_ready(obj: Any) -> Any:
    """Copy of a report with every non-finite float replaced by None (strict JSON: `null` = undefined)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj
