"""What the benchmark harnesses share: staging a benchmark's images, registering them, checking the run has them.

    settings = RegisterSettings(preset="fast", features="rgb")
    poses = registered_poses(out / "cat", canonical="canonicals/", key="cat", single=True,
                             images=lambda: [StagedImage("a", img_path, mask)], needed=["a"], what="SPair cat",
                             settings=settings)          # {name: poses.json record}; registers when out/cat has no run
    report.update(report_stamp(start))                   # seconds, congeal_version, created

A run's own files (poses.json, state/, ...) are known only by `congeal.run.folder.RunFolder`; this module adds
what only evaluation does. A staged collection is an image folder in the layout `congeal register` reads,
`<run>/collection/<name>.<ext>` with `masks/<name>.png` (white = object). Images are copied unchanged unless they
carry an EXIF orientation, in which case the orientation is applied and the result saved as PNG (so pixel
coordinates match the annotations, which refer to the upright image).
"""
import argparse
import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import numpy as np
from jaxtyping import Bool

from congeal.common.atomic import save_image, write_bytes
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.folder import RunFolder

# the folder inside a harness's run where the benchmark images it registered are staged
STAGED_COLLECTION = "collection"


@dataclass
class StagedImage:
    """One benchmark image to register."""

    name: str
    """Stem the registration run will use (the benchmark's image name)."""
    image_path: Path
    """The benchmark's image file."""
    mask: Optional[Bool[np.ndarray, "H W"]] = None
    """Object mask in the (EXIF-upright) image's pixel grid, or None (registration finds one)."""


@dataclass
class RegisterSettings:
    """How a harness registers a benchmark collection that has no run yet (`congeal.run.pipeline`)."""

    preset: str = "fast"
    """Registration preset ("fast" or "paper")."""
    features: str = "dinov2"
    """Feature extractor ("dinov2" or "rgb")."""
    device: str = "cpu"
    """Torch device name."""
    seed: int = 0
    """Random seed of the registration."""
    overrides: Optional[Sequence[str]] = None
    """"key=value" config overrides (see congeal.run.pipeline)."""
    dinov2: Optional[str] = None
    """DINOv2 model id or local folder (None = the preset's default)."""
    progress: bool = True
    """Show progress bars."""


def _has_rotation(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return int(image.getexif().get(0x0112, 1)) not in (0, 1)


def stage_collection(folder: PathLike, images: Sequence[StagedImage]) -> Path:
    """Write (or refresh) an image folder + masks/ for registration; returns the folder."""
    from PIL import Image

    from congeal.io.decode import decode_image

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
                save_image(target, decode_image(source).rgb)
            else:
                write_bytes(target, source.read_bytes())
        if item.mask is not None:
            mask_file = folder / "masks" / f"{item.name}.png"
            if not mask_file.exists():
                save_image(mask_file, Image.fromarray(np.where(item.mask, 255, 0).astype(np.uint8)))
    return folder


def resolve_canonical(canonical: PathLike, key: str, single: bool) -> Path:
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


def ensure_run(run_dir: PathLike, canonical: Optional[PathLike], key: str, single: bool,
               images: Callable[[], Sequence[StagedImage]], settings: RegisterSettings) -> RunFolder:
    """The run folder `run_dir`; when it has no poses.json, `images()` are staged in it and registered first.

    An existing poses.json is reused as is (delete the folder to redo it).

    Args:
        run_dir: the category's / object's run folder.
        canonical: see `resolve_canonical`; None = the run must exist already.
        key: category or object name (picks the canonical in a folder of them).
        single: whether this is the only category/object evaluated (a single .safetensors is allowed then).
        images: the benchmark images to stage, called only when registering.
        settings: registration settings.
    """
    run = RunFolder(run_dir)
    if run.poses.is_file():
        return run
    if canonical is None:
        raise InputError(run.root, "has no poses.json (no registration run here)",
                         "pass --canonical to register the images, or point --run-dir at existing runs")
    canonical_file = resolve_canonical(canonical, key, single)
    collection = stage_collection(run.root / STAGED_COLLECTION, images())
    from congeal.run.pipeline import register_collection

    register_collection(canonical_file, collection, run.root, preset=settings.preset, features=settings.features,
                        device=settings.device, seed=settings.seed, overrides=list(settings.overrides or []) or None,
                        dinov2=settings.dinov2, progress=settings.progress)
    return run


def check_names(run_dir: PathLike, available: Iterable[str], needed: Iterable[str], what: str) -> None:
    """Raise InputError when the run lacks images the benchmark needs."""
    missing = sorted(set(needed) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(Path(run_dir), f"has no registration for {len(missing)} {what} image(s): {shown}",
                         "register every benchmark image of this set (or pass --canonical to do it here)")


def registered_poses(run_dir: PathLike, canonical: Optional[PathLike], key: str, single: bool,
                     images: Callable[[], Sequence[StagedImage]], needed: Iterable[str], what: str,
                     settings: RegisterSettings) -> Dict[str, Dict[str, Any]]:
    """`ensure_run`, then the run's poses ({name: poses.json record}), checked to hold every `needed` image."""
    run = ensure_run(run_dir, canonical, key, single, images, settings)
    poses = run.read_poses()
    check_names(run.root, poses, needed, what)
    return poses


def report_stamp(start: float) -> Dict[str, Any]:
    """The closing fields of every harness report: seconds since `start` (time.time()), version, creation time."""
    from congeal import __version__

    return {"seconds": round(time.time() - start, 2), "congeal_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def add_register_arguments(parser: argparse.ArgumentParser, unit: str, units: str) -> None:
    """The `congeal eval-*` flags that say how benchmark images without a run are registered.

    Args:
        parser: the command's parser.
        unit, units: what one run holds ("category", "categories"), for the help texts.
    """
    parser.add_argument("--canonical", default=None,
                        help=f"canonical .safetensors (one {unit}) or folder with <{unit}>.safetensors or "
                             f"<{unit}>/canonical.safetensors: register {units} that have no run yet")
    parser.add_argument("--preset", default="fast", help="registration preset used with --canonical (default: fast)")
    parser.add_argument("--features", default="dinov2", choices=["dinov2", "rgb"],
                        help="registration features used with --canonical (default: dinov2)")
    parser.add_argument("--override", action="append", default=None, metavar="KEY=VALUE",
                        help="registration config override used with --canonical (repeatable), e.g. refine.steps=300")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

