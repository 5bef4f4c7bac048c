"""The output folder of one pose-aware edit: `RUN/edits/<edit>/`, every file written atomically.

    paths = write_edit(run, "decal-sticker", edited, info)   # edited: {photo: (rgb [H,W,3], coverage [H,W])}

Layout:
    RUN/edits/<edit>/<photo>.png   every photo edited, at its original resolution (RGBA when the photo has alpha)
    RUN/edits/<edit>/grid.png      all of them in one labelled grid
    RUN/edits/<edit>/edit.json     what was done (`info`) and, per photo, the edited pixel count (coverage > 1%)
                                   and the coverage-weighted centroid (x, y) of the edit (null when nothing shows)
"""
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from congeal.viz.photo_grid import photo_grid
from congeal.run.registered_run import RegisteredRun
from congeal.common.atomic import save_image, write_json
from congeal.common.safe_names import ensure_inside, folder_name, safe_file_name

__all__ = ["EDIT_FORMAT", "edits_dir", "edit_name", "edit_folder", "write_edit"]

EDIT_FORMAT = "congeal-edit-v1"


def edits_dir(run: RegisteredRun) -> Path:
    """RUN/edits/."""
    return run.folder.edits_dir


def edit_name(kind: str, file: str) -> str:
    """A folder name for an edit: '<kind>-<file stem>', file-name safe (`congeal.common.safe_names`)."""
    return f"{kind}-{safe_file_name(Path(file).stem or 'edit')}"


def edit_folder(run: RegisteredRun, name: str) -> Path:
    """RUN/edits/<name>/, checked: `name` is one plain folder name and the folder resolves inside the run.

    Raises:
        InputError: a name such as `../../x` or `/tmp/x`, or an `edits` symlink that leads out of the run.
    """
    folder = edits_dir(run) / folder_name(name, "the edit name (--name)")
    return ensure_inside(run.root, folder, "the edit folder")


def write_edit(run: RegisteredRun, name: str, edited: Mapping[str, Tuple[np.ndarray, np.ndarray]],
               info: Dict[str, Any], tile: int = 200) -> List[Path]:
    """Write one edit's photos, grid and edit.json under RUN/edits/<name>/.

    Args:
        run: the run.
        name: the edit's folder name (one plain name; `../x` or an absolute path is refused).
        edited: photo -> (edited straight rgb [H,W,3] in [0,1], edit coverage [H,W] in [0,1]).
        info: JSON-ready description of the edit (stored in edit.json).
        tile: grid tile side in pixels.
    Returns:
        the written paths (photos, grid.png, edit.json).
    Raises:
        InputError: a name that is not a plain folder name, or a folder that resolves outside the run.
    """
    from PIL import Image

    folder = edit_folder(run, name)
    written: List[Path] = []
    photos: Dict[str, Any] = {}
    shown = []
    for photo_name, (rgb, coverage) in edited.items():
        photo = run.photo(photo_name)
        rgb8 = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if photo.alpha is not None:
            alpha8 = (np.clip(np.maximum(photo.alpha, coverage), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            image = Image.fromarray(np.concatenate([rgb8, alpha8[..., None]], -1), "RGBA")
            a = np.maximum(photo.alpha, coverage)[..., None]
            shown.append(rgb * a + (1.0 - a))
        else:
            image = Image.fromarray(rgb8, "RGB")
            shown.append(rgb)
        # photo names come from the run's files, which may be someone else's: never a path out of the folder
        path = ensure_inside(folder, folder / f"{photo_name}.png", f"the edited photo {photo_name!r}")
        save_image(path, image)
        written.append(path)
        total = float(coverage.sum())
        if total > 0:
            ys, xs = np.mgrid[0:coverage.shape[0], 0:coverage.shape[1]]
            centroid = [float(((xs + 0.5) * coverage).sum() / total), float(((ys + 0.5) * coverage).sum() / total)]
        else:
            centroid = None
        photos[photo_name] = {"file": path.name, "edited_pixels": int((coverage > 0.01).sum()),
                              "centroid": centroid}
    save_image(folder / "grid.png", photo_grid(shown, list(edited), tile=tile))
    write_json(folder / "edit.json", {"format": EDIT_FORMAT, "run": str(run.root), **info, "photos": photos})
    return written + [folder / "grid.png", folder / "edit.json"]
