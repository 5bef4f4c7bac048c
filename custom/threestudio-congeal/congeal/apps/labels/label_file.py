"""The label file users write for `congeal propagate` (format `congeal-labels-v1`), read and validated.

    labels = read_labels("labels.json", run)          # LabelSet; every problem is an InputError naming the file
    labels.sources                                    # photos that carry labels, in file order
    labels.point_names                                # every point label, in first-seen order

File (original pixel coordinates; pixel (row i, col j) has its centre at (j + 0.5, i + 0.5)):

    {
      "format": "congeal-labels-v1",                  (optional)
      "photos": {
        "img_000": {
          "points":   {"snout": [131.2, 79.4], "left_eye": [120.3, 67.6]},
          "polygons": {"saddle": [[100, 90], [130, 92], [128, 110], [98, 108]]},
          "masks":    {"body": "masks/img_000_body.png"}
        },
        "img_004": {"points": {"snout": [60.0, 75.5]}}
      }
    }

Points, polygons and masks are named; one name may be given on several photos (the propagated position then comes
from all of them, and their disagreement lowers its confidence). A point name and a region name (polygon or mask)
must differ. Mask files (white / non-zero = inside; paths relative to the label file) have the photo's size.

Limits (a label file may come from anyone; docs/security.md): the file is at most `MAX_LABEL_FILE_BYTES`, nested
no deeper than `congeal.common.json_files.MAX_JSON_DEPTH`, a polygon has at most `MAX_POLYGON_VERTICES` vertices,
a photo at most `MAX_LABELS_PER_PHOTO` labels, a name at most `MAX_LABEL_NAME_CHARS` characters. Names may hold any
character: the files written for them use `LabelSet.file_names` (safe, distinct stems).
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from jaxtyping import Bool, Float

from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.common.safe_names import unique_file_names

__all__ = ["LABELS_FORMAT", "MAX_LABEL_FILE_BYTES", "MAX_POLYGON_VERTICES", "MAX_LABELS_PER_PHOTO",
           "MAX_LABEL_NAME_CHARS", "PhotoLabels", "LabelSet", "read_labels", "parse_labels", "polygon_mask"]

LABELS_FORMAT = "congeal-labels-v1"
MAX_LABEL_FILE_BYTES = 8 * 1024 * 1024
MAX_POLYGON_VERTICES = 10_000  # a careful hand-drawn outline has hundreds; each vertex costs work on every photo
MAX_LABELS_PER_PHOTO = 1_000
MAX_LABEL_NAME_CHARS = 1_000  # longer names are fine: their files get a shortened, hashed name
_FIX = 'write {"photos": {"<photo>": {"points": {"<name>": [x, y]}}}} (see `congeal propagate --help`)'


@dataclass
class PhotoLabels:
    """The labels given on one photo."""

    points: Dict[str, Float[np.ndarray, "2"]] = field(default_factory=dict)
    """name -> (x, y) original pixels."""
    polygons: Dict[str, Float[np.ndarray, "V 2"]] = field(default_factory=dict)
    """name -> vertices (x, y), at least 3."""
    masks: Dict[str, Bool[np.ndarray, "H W"]] = field(default_factory=dict)
    """name -> region on the photo's grid (polygons are rasterised into here too)."""


@dataclass
class LabelSet:
    """Every label of one label file, by source photo."""

    photos: Dict[str, PhotoLabels]
    path: Path

    @property
    def sources(self) -> List[str]:
        return list(self.photos)

    @property
    def point_names(self) -> List[str]:
        return list(dict.fromkeys(k for p in self.photos.values() for k in p.points))

    @property
    def region_names(self) -> List[str]:
        return list(dict.fromkeys(k for p in self.photos.values() for k in p.masks))

    @property
    def polygon_names(self) -> List[str]:
        return list(dict.fromkeys(k for p in self.photos.values() for k in p.polygons))

    @property
    def file_names(self) -> Dict[str, str]:
        """{label name: file stem} for every point and region: file-name safe and distinct, so "left wing",
        "left_wing" and "left/wing" never share (or overwrite) one file (`congeal.common.safe_names`)."""
        return unique_file_names(self.point_names + self.region_names)


def polygon_mask(vertices: Float[np.ndarray, "V 2"], height: int, width: int) -> Bool[np.ndarray, "{height} {width}"]:
    """Pixels whose centre lies inside the polygon (vertices in continuous original pixel coordinates)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    # PIL fills pixel (j, i) when the integer point (j, i) is inside: shift so pixel centres are tested
    ImageDraw.Draw(canvas).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in vertices], fill=255, outline=255)
    return np.asarray(canvas) > 127


def _xy(value: Any, where: str, path: Path, height: int, width: int) -> np.ndarray:
    """One (x, y) inside a width×height photo, else InputError."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise InputError(path, f"{where} is {value!r}, not an [x, y] pair of numbers", _FIX)
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(path, f"{where} is not finite ({x}, {y})", "use finite pixel coordinates")
    if not (0.0 <= x <= width and 0.0 <= y <= height):
        raise InputError(path, f"{where} ({x:g}, {y:g}) lies outside the photo ({width}x{height} pixels)",
                         "give original-pixel coordinates inside the photo: 0 <= x <= width, 0 <= y <= height")
    return np.array([x, y], dtype=np.float64)


def _named(entry: Dict[str, Any], key: str, where: str, path: Path) -> Dict[str, Any]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise InputError(path, f"{where}.{key} must be an object of name -> value, got {type(value).__name__}", _FIX)
    if len(value) > MAX_LABELS_PER_PHOTO:
        raise InputError(path, f"{where}.{key} has {len(value)} labels, over the limit of {MAX_LABELS_PER_PHOTO}",
                         "split the labels over several files")
    for name in value:
        if not name.strip():
            raise InputError(path, f"{where}.{key} has an empty name", "give every label a name")
        if len(name) > MAX_LABEL_NAME_CHARS:
            raise InputError(path, f"{where}.{key} has a name of {len(name)} characters ({name[:40]!r}...), over "
                                   f"the limit of {MAX_LABEL_NAME_CHARS}", "use a shorter name")
    return value


def parse_labels(doc: Any, path: PathLike, run) -> LabelSet:
    """Validate a parsed label document against a run (`congeal.run.registered_run.RegisteredRun`).

    Raises:
        InputError: not a label document, unknown photo names, coordinates outside the photo, bad mask files.
    """
    from congeal.io.decode import DecodedImage, decode_mask

    path = Path(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("photos"), dict):
        raise InputError(path, "is not a label file (no \"photos\" object)", _FIX)
    if doc.get("format", LABELS_FORMAT) != LABELS_FORMAT:
        raise InputError(path, f"has format {doc.get('format')!r}, expected {LABELS_FORMAT!r}", _FIX)
    if not doc["photos"]:
        raise InputError(path, "labels no photo", _FIX)
    photos: Dict[str, PhotoLabels] = {}
    for photo_name, entry in doc["photos"].items():
        if photo_name not in run.names:
            shown = ", ".join(run.names[:20])
            raise InputError(path, f"labels photo {photo_name!r}, which the run {run.root} did not register",
                             f"use one of: {shown}")
        if not isinstance(entry, dict):
            raise InputError(path, f"photos.{photo_name} must be an object", _FIX)
        unknown = set(entry) - {"points", "polygons", "masks"}
        if unknown:
            raise InputError(path, f"photos.{photo_name} has unknown keys {sorted(unknown)}",
                             "use \"points\", \"polygons\" and \"masks\"")
        omap = run.object_map(photo_name)
        h, w = omap.height, omap.width
        where = f"photos.{photo_name}"
        labels = PhotoLabels()
        for name, value in _named(entry, "points", where, path).items():
            labels.points[name] = _xy(value, f"{where}.points.{name}", path, h, w)
        for name, value in _named(entry, "polygons", where, path).items():
            if not isinstance(value, (list, tuple)) or len(value) < 3:
                raise InputError(path, f"{where}.polygons.{name} needs at least 3 [x, y] vertices", _FIX)
            if len(value) > MAX_POLYGON_VERTICES:
                raise InputError(path, f"{where}.polygons.{name} has {len(value)} vertices, over the limit of "
                                       f"{MAX_POLYGON_VERTICES}", "simplify the outline (e.g. Douglas-Peucker) or "
                                       "give the region as a mask file")
            vertices = np.stack([_xy(v, f"{where}.polygons.{name}[{i}]", path, h, w) for i, v in enumerate(value)])
            labels.polygons[name] = vertices
            labels.masks[name] = polygon_mask(vertices, h, w)
        for name, value in _named(entry, "masks", where, path).items():
            if name in labels.masks:
                raise InputError(path, f"{where} names region {name!r} twice (polygon and mask)", "rename one")
            if not isinstance(value, str) or not value.strip() or "\x00" in value:
                raise InputError(path, f"{where}.masks.{name} must be a file path", _FIX)
            file = Path(value) if Path(value).is_absolute() else path.parent / value
            photo = run.photo(photo_name, required=False)
            stand_in = DecodedImage(photo.rgb, None, (h, w))
            mask, _ = decode_mask(file, stand_in, image_path=photo.path)
            labels.masks[name] = mask.astype(bool)
        clash = set(labels.points) & set(labels.masks)
        if clash:
            raise InputError(path, f"{where} uses {sorted(clash)} both as a point and as a region",
                             "give points and regions different names")
        if not labels.points and not labels.masks:
            raise InputError(path, f"{where} has no points, polygons or masks", _FIX)
        photos[photo_name] = labels
    point_names = {k for p in photos.values() for k in p.points}
    region_names = {k for p in photos.values() for k in p.masks}
    if point_names & region_names:
        raise InputError(path, f"{sorted(point_names & region_names)} are points on one photo and regions on another",
                         "give points and regions different names")
    return LabelSet(photos, path)


def read_labels(path: PathLike, run) -> LabelSet:
    """Read and validate a label file against a run (`RegisteredRun`)."""
    doc = read_json(path, _FIX, missing="label file not found", missing_fix="pass an existing labels.json",
                    max_bytes=MAX_LABEL_FILE_BYTES, expect=dict)
    return parse_labels(doc, path, run)
