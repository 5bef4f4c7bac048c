"""SPair-71k loader (the official folder layout, read-only).

    data = SPairDataset("SPair-71k")
    pairs = data.pairs("test", category="cat")                  # list of SPairPair, keypoints [P,2] (x, y)
    names = data.split_images("test", "cat")                    # image stems used by the test pairs

Layout (as distributed):
    JPEGImages/<cat>/<stem>.jpg
    ImageAnnotation/<cat>/<stem>.json    {"image_width", "image_height", "bndbox": [x1,y1,x2,y2],
                                          "kps": {"0": [x, y] | null, ..., "29": ...}, ...}
    PairAnnotation/{trn,val,test}/<pair_id>-<src>-<trg>:<cat>.json
                                         {"src_imname", "trg_imname", "src_kps": [[x,y],...], "trg_kps",
                                          "src_bndbox", "trg_bndbox" (x1,y1,x2,y2), "kps_ids", "category", ...}
    Layout/large/{trn,val,test}.txt      one "<pair_id>-<src>-<trg>:<cat>" per line
    Segmentation/<cat>/<stem>.png        object mask (non-zero = object)

SPair keypoints are pixel indices (x = column, y = row). Our pixel convention puts the centre of pixel (row i,
col j) at (j + 0.5, i + 0.5); `to_continuous` / `from_continuous` convert (PCK is unaffected: both points of a
distance move together).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from jaxtyping import Bool, Float64, Shaped
from torch import Tensor

from congeal.common.errors import InputError
from congeal.common.json_files import read_json

SPLITS = {"trn": "trn", "train": "trn", "val": "val", "test": "test"}


# points as callers hold them: an array, a tensor, or nested lists of [x, y]
Points = Union[Shaped[np.ndarray, "*batch 2"], Shaped[Tensor, "*batch 2"], Sequence]


def to_continuous(points: Points) -> Float64[np.ndarray, "*batch 2"]:
    """SPair pixel-index coordinates -> our continuous pixel coordinates (pixel centres at +0.5)."""
    return np.asarray(points, dtype=np.float64) + 0.5


def from_continuous(points: Points) -> Float64[np.ndarray, "*batch 2"]:
    """Our continuous pixel coordinates -> SPair pixel-index coordinates."""
    return np.asarray(points, dtype=np.float64) - 0.5


@dataclass
class SPairPair:
    """One annotated pair. Keypoints are SPair pixel indices; row k of src_kps matches row k of trg_kps."""

    pair_id: str
    category: str
    src_name: str  # image stem
    trg_name: str
    src_kps: Float64[np.ndarray, "P 2"]  # (x, y)
    trg_kps: Float64[np.ndarray, "P 2"]
    src_bbox: Float64[np.ndarray, " 4"]  # x1, y1, x2, y2
    trg_bbox: Float64[np.ndarray, " 4"]
    kps_ids: List[str] = field(default_factory=list)
    extra: Dict = field(default_factory=dict)  # the other annotation fields (viewpoint_variation, ...)


def _read_annotation(path: Path, what: str):
    return read_json(path, "re-extract this file from the SPair-71k archive", missing=f"{what} is missing",
                     missing_fix="check --root points at the extracted SPair-71k folder")


def _points(value, path: Path, key: str) -> Float64[np.ndarray, "P 2"]:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1, 2) if value is not None else None
    except (TypeError, ValueError):
        array = None
    if array is None or not np.isfinite(array).all():
        raise InputError(path, f"'{key}' is not a list of [x, y] numbers", "re-extract this file from the archive")
    return array


def _bbox(value, path: Path, key: str) -> Float64[np.ndarray, " 4"]:
    try:
        box = np.asarray(value, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise InputError(path, f"'{key}' is not [x1, y1, x2, y2]", "re-extract this file from the archive")
    if not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
        raise InputError(path, f"'{key}' = {list(box)} is not a box with x1 <= x2, y1 <= y2",
                         "re-extract this file from the archive")
    return box


class SPairDataset:
    """Read access to an SPair-71k folder.

    Args:
        root: the folder holding JPEGImages/, ImageAnnotation/, PairAnnotation/, Layout/, Segmentation/.
        layout: the Layout sub-folder naming pair lists ("large" is the standard benchmark).
    """

    def __init__(self, root: Union[str, Path], layout: str = "large"):
        self.root = Path(root)
        self.layout = layout
        for sub in ("JPEGImages", "PairAnnotation"):
            if not (self.root / sub).is_dir():
                raise InputError(self.root, f"has no {sub}/ folder: not an SPair-71k root",
                                 "pass the folder that contains JPEGImages/, PairAnnotation/ and Layout/")

    # ------------------------------------------------------------------ paths
    def categories(self) -> List[str]:
        """Category names (the sub-folders of JPEGImages/), sorted."""
        return sorted(p.name for p in (self.root / "JPEGImages").iterdir() if p.is_dir())

    def image_path(self, category: str, name: str) -> Path:
        return self.root / "JPEGImages" / category / f"{name}.jpg"

    def mask_path(self, category: str, name: str) -> Path:
        return self.root / "Segmentation" / category / f"{name}.png"

    def annotation_path(self, category: str, name: str) -> Path:
        return self.root / "ImageAnnotation" / category / f"{name}.json"

    # ------------------------------------------------------------------ annotations
    def pair_ids(self, split: str = "test", category: Optional[str] = None) -> List[str]:
        """Pair ids "<id>-<src>-<trg>:<cat>" of a split from Layout/<layout>/<split>.txt (category-filtered)."""
        split = self._split(split)
        path = self.root / "Layout" / self.layout / f"{split}.txt"
        if not path.is_file():
            raise InputError(path, "pair list is missing", "check --root points at the extracted SPair-71k folder")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        bad = [line for line in ids if ":" not in line]
        if bad:
            raise InputError(path, f"line {bad[0]!r} is not '<id>-<src>-<trg>:<category>'",
                             "re-extract the Layout folder from the archive")
        return [pid for pid in ids if category is None or pid.rsplit(":", 1)[1] == category]

    def pair(self, pair_id: str, split: str = "test") -> SPairPair:
        """Load one pair annotation; malformed files raise InputError naming the file."""
        split = self._split(split)
        path = self.root / "PairAnnotation" / split / f"{pair_id}.json"
        data = _read_annotation(path, "pair annotation")
        if not isinstance(data, dict):
            raise InputError(path, "is not a JSON object", "re-extract this file from the archive")
        for key in ("src_imname", "trg_imname", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox"):
            if key not in data:
                raise InputError(path, f"has no '{key}' field", "re-extract this file from the archive")
        src = _points(data["src_kps"], path, "src_kps")
        trg = _points(data["trg_kps"], path, "trg_kps")
        if src.shape != trg.shape:
            raise InputError(path, f"src_kps has {len(src)} points but trg_kps has {len(trg)}",
                             "re-extract this file from the archive")
        category = data.get("category") or pair_id.rsplit(":", 1)[-1]
        known = {"src_imname", "trg_imname", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox", "kps_ids", "category"}
        return SPairPair(
            pair_id=pair_id, category=category,
            src_name=Path(str(data["src_imname"])).stem, trg_name=Path(str(data["trg_imname"])).stem,
            src_kps=src, trg_kps=trg,
            src_bbox=_bbox(data["src_bndbox"], path, "src_bndbox"),
            trg_bbox=_bbox(data["trg_bndbox"], path, "trg_bndbox"),
            kps_ids=[str(k) for k in data.get("kps_ids", range(len(src)))],
            extra={k: v for k, v in data.items() if k not in known},
        )

    def pairs(self, split: str = "test", category: Optional[str] = None) -> List[SPairPair]:
        """All pairs of a split (optionally one category), in Layout order."""
        return [self.pair(pid, split) for pid in self.pair_ids(split, category)]

    def split_images(self, split: str = "test", category: Optional[str] = None) -> List[str]:
        """Sorted image stems used by the split's pairs (of one category, if given), from the pair annotations."""
        names = set()
        for pair in self.pairs(split, category):
            names.update((pair.src_name, pair.trg_name))
        return sorted(names)

    def image_annotation(self, category: str, name: str) -> Dict:
        """Per-image annotation with `kps` as {id: [x, y] or None} and `bndbox` as [4] (validated)."""
        path = self.annotation_path(category, name)
        data = _read_annotation(path, "image annotation")
        if not isinstance(data, dict) or not isinstance(data.get("kps"), dict):
            raise InputError(path, "has no 'kps' object", "re-extract this file from the archive")
        kps = {}
        for key, value in data["kps"].items():
            kps[str(key)] = None if value is None else _points(value, path, f"kps[{key}]")[0]
        out = dict(data)
        out["kps"] = kps
        if "bndbox" in data:
            out["bndbox"] = _bbox(data["bndbox"], path, "bndbox")
        return out

    def load_mask(self, category: str, name: str) -> Bool[np.ndarray, "H W"]:
        """Object mask from Segmentation/<cat>/<stem>.png (any non-zero value = object)."""
        from PIL import Image

        path = self.mask_path(category, name)
        if not path.is_file():
            raise InputError(path, "segmentation mask is missing", "re-extract Segmentation/ from the archive")
        try:
            with Image.open(path) as image:
                return np.asarray(image).reshape(image.size[1], image.size[0], -1).max(-1) > 0
        except OSError as error:
            raise InputError(path, f"cannot be read as an image ({error})", "re-extract it from the archive")

    def _split(self, split: str) -> str:
        if split not in SPLITS:
            raise InputError(None, f"unknown SPair split {split!r}", "use trn, val or test")
        return SPLITS[split]
