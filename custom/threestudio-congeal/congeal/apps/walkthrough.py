"""The apps on a run in one call: what `congeal demo` (and `congeal register`'s checker picture) show.

    paths = write_checker_edit("out/run")                       # RUN/edits/texture-checker/ (the checker edit)
    shown = run_walkthrough("out/run", {"snout": (131.2, 79.4), "tail": (40.0, 77.0)}, photo="img_000")
    shown["labels_grid"], shown["decal_grid"], shown["texture_grid"]

`run_walkthrough` labels some points on one photo (RUN/labels/walkthrough.json, the input format users write),
propagates them to every photo (RUN/labels/walkthrough/), places the built-in sticker on the first point
(RUN/edits/decal-sticker/) and paints the checker texture (RUN/edits/texture-checker/).
"""
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from congeal.apps.edits.decals import Decal, composite_decal, place_decal
from congeal.apps.edits.edit_folder import edits_dir, write_edit
from congeal.apps.labels.label_file import LABELS_FORMAT, parse_labels
from congeal.apps.labels.propagation import propagate_labels, write_propagation
from congeal.run.registered_run import RegisteredRun
from congeal.apps.edits.textures import checker_texture, texture_edit
from congeal.common.atomic import write_json
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["sticker", "write_checker_edit", "run_walkthrough"]


def sticker(size: int = 96) -> Decal:
    """The built-in decal: a red disc with a white ring and a white centre dot, transparent around it."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx + 0.5 - size / 2, yy + 0.5 - size / 2) / (size / 2)
    alpha = np.clip((1.0 - r) * size / 2, 0.0, 1.0).astype(np.float32)  # anti-aliased edge
    white = (np.abs(r - 0.62) < 0.1) | (r < 0.18)
    rgb = np.where(white[..., None], np.float32(1.0), np.array([0.85, 0.05, 0.1], np.float32)).astype(np.float32)
    return Decal(rgb, alpha)


def write_checker_edit(run_dir: PathLike) -> List[Path]:
    """The checker texture painted on every photo of a run: RUN/edits/texture-checker/ (grid.png, one per photo)."""
    run = RegisteredRun(run_dir)
    return write_edit(run, "texture-checker", texture_edit(run, checker_texture()),
                      {"kind": "texture", "texture": "checker", "texture_scale": None, "strength": 0.85})


def run_walkthrough(run_dir: PathLike, points: Mapping[str, Sequence[float]], photo: str,
                    decal_scale: float = 0.2) -> Dict[str, Path]:
    """Label `points` on `photo`, propagate them, place the sticker on the first one, paint the checker.

    Args:
        run_dir: a finished run.
        points: label name -> (x, y) original pixels of `photo` (at least one).
        photo: a registered photo.
        decal_scale: sticker size / object size.
    Returns:
        {"labels_file", "labels_json", "coco_json", "labels_grid", "decal_grid", "texture_grid"}.
    """
    run = RegisteredRun(run_dir)
    run.require(photo)
    if not points:
        raise InputError(None, "the walkthrough needs at least one labelled point", "pass {name: (x, y)}")
    labels_file = run.folder.labels_dir / "walkthrough.json"
    doc = {"format": LABELS_FORMAT,
           "photos": {photo: {"points": {k: [float(v[0]), float(v[1])] for k, v in points.items()}}}}
    write_json(labels_file, doc)
    labels = parse_labels(doc, labels_file, run)
    out = run.folder.labels_dir / "walkthrough"
    write_propagation(propagate_labels(run, labels), run, out)
    decal = sticker()
    first = next(iter(doc["photos"][photo]["points"].values()))
    placement = place_decal(run, decal, photo, (first[0], first[1]), scale=decal_scale)
    edited = {name: composite_decal(run, decal, placement, name) for name in run.names}
    write_edit(run, "decal-sticker", edited, {"kind": "decal", "decal": "built-in sticker", "photo": photo,
                                              "at": list(first), "scale": decal_scale})
    write_checker_edit(run.root)
    return {"labels_file": labels_file, "labels_json": out / "labels.json", "coco_json": out / "coco.json",
            "labels_grid": out / "grid.png", "decal_grid": edits_dir(run) / "decal-sticker" / "grid.png",
            "texture_grid": edits_dir(run) / "texture-checker" / "grid.png"}
