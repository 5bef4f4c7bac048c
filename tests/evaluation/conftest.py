"""Fixtures shared by the evaluation tests: a tiny random DINOv2, a registered synthetic run laid out as a runs
folder, and a hand-written SPair-71k dataset."""
import json

import pytest
from PIL import Image

from helpers.tiny_dinov2 import save_tiny_dinov2


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("dinov2-tiny"))


@pytest.fixture(scope="session")
def registered(synthetic_run, tmp_path_factory):
    """(collection, runs folder OUT with OUT/synth -> the session's registered synthetic run)."""
    collection, run = synthetic_run("same")
    out = tmp_path_factory.mktemp("runs")
    (out / "synth").symlink_to(run, target_is_directory=True)
    return collection, out


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


@pytest.fixture()
def spair_root(tmp_path):
    """Two categories; cat has 2 pairs (one with a null keypoint in the image annotation), dog 1 pair."""
    root = tmp_path / "SPair-71k"
    images = {"cat": ["2008_000001", "2008_000002", "2008_000003"], "dog": ["2009_000010", "2009_000011"]}
    for cat, names in images.items():
        for name in names:
            (root / "JPEGImages" / cat).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (200, 10, 10)).save(root / "JPEGImages" / cat / f"{name}.jpg")
            (root / "Segmentation" / cat).mkdir(parents=True, exist_ok=True)
            mask = Image.new("P", (40, 30), 0)
            mask.paste(15, (5, 5, 20, 25))  # palette index 15 = this class
            mask.save(root / "Segmentation" / cat / f"{name}.png")
            _write(root / "ImageAnnotation" / cat / f"{name}.json",
                   {"filename": f"{name}.jpg", "bndbox": [5, 5, 19, 24],
                    "kps": {"0": [6, 7], "1": None, "2": [10, 20]}})
    pairs = {
        "000001-2008_000001-2008_000002:cat": dict(src_kps=[[6, 7], [10, 20]], trg_kps=[[8, 9], [12, 22]],
                                                   src_bndbox=[5, 5, 19, 24], trg_bndbox=[0, 0, 100, 50]),
        "000002-2008_000002-2008_000003:cat": dict(src_kps=[[1, 1]], trg_kps=[[2, 2]],
                                                   src_bndbox=[0, 0, 10, 10], trg_bndbox=[0, 0, 20, 40]),
        "000003-2009_000010-2009_000011:dog": dict(src_kps=[], trg_kps=[],
                                                   src_bndbox=[0, 0, 10, 10], trg_bndbox=[0, 0, 10, 10]),
    }
    for pid, ann in pairs.items():
        _, src, trg = pid.split(":")[0].split("-")
        _write(root / "PairAnnotation" / "test" / f"{pid}.json",
               dict(ann, src_imname=f"{src}.jpg", trg_imname=f"{trg}.jpg", category=pid.split(":")[1],
                    kps_ids=[str(i) for i in range(len(ann["src_kps"]))]))
    _write(root / "Layout" / "large" / "test.txt", "\n".join(pairs) + "\n")
    return root


