"""SPair-71k loader and the PCK harness logic on a hand-written dataset (known answers, malformed files)."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from congeal.common.errors import InputError
from congeal.evaluation.spair_harness import evaluate_pairs, summarise
from congeal.evaluation.spair import SPairDataset, from_continuous, to_continuous


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


def test_loader_reads_pairs_images_and_masks(spair_root):
    data = SPairDataset(spair_root)
    assert data.categories() == ["cat", "dog"]
    pairs = data.pairs("test", category="cat")
    assert [p.pair_id for p in pairs] == ["000001-2008_000001-2008_000002:cat", "000002-2008_000002-2008_000003:cat"]
    first = pairs[0]
    assert (first.src_name, first.trg_name, first.category) == ("2008_000001", "2008_000002", "cat")
    assert first.src_kps.tolist() == [[6, 7], [10, 20]] and first.trg_bbox.tolist() == [0, 0, 100, 50]
    assert data.pairs("test", "dog")[0].src_kps.shape == (0, 2)
    assert data.split_images("test", "cat") == ["2008_000001", "2008_000002", "2008_000003"]
    ann = data.image_annotation("cat", "2008_000001")
    assert ann["kps"]["1"] is None and ann["kps"]["0"].tolist() == [6, 7]
    mask = data.load_mask("cat", "2008_000001")
    assert mask.shape == (30, 40) and mask.sum() == 15 * 20 and mask[10, 10] and not mask[0, 0]
    assert to_continuous([[0, 0]]).tolist() == [[0.5, 0.5]] and from_continuous([[0.5, 0.5]]).tolist() == [[0, 0]]


@pytest.mark.parametrize("content, problem", [
    ("{broken", "not valid JSON"),
    ({"src_imname": "a.jpg"}, "has no 'trg_imname'"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [[1, 2]], "trg_kps": [],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [0, 0, 1, 1]}, "src_kps has 1 points but trg_kps has 0"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [[1, "x"]], "trg_kps": [[1, 2]],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [0, 0, 1, 1]}, "'src_kps' is not a list"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [], "trg_kps": [],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [5, 0, 1, 1]}, "'trg_bndbox'"),
])
def test_malformed_pair_annotation_names_the_file(spair_root, content, problem):
    pid = "000001-2008_000001-2008_000002:cat"
    path = spair_root / "PairAnnotation" / "test" / f"{pid}.json"
    _write(path, content)
    with pytest.raises(InputError) as info:
        SPairDataset(spair_root).pairs("test", "cat")
    assert str(path) in str(info.value) and problem in str(info.value)


def test_missing_layout_and_wrong_root(spair_root, tmp_path):
    (spair_root / "Layout" / "large" / "test.txt").unlink()
    with pytest.raises(InputError, match="test.txt"):
        SPairDataset(spair_root).pairs("test")
    with pytest.raises(InputError, match="not an SPair-71k root"):
        SPairDataset(tmp_path)


def test_harness_pck_known_answers(spair_root):
    pairs = SPairDataset(spair_root).pairs("test")

    def oracle(pair):
        return pair.trg_kps.copy(), np.ones(len(pair.trg_kps), bool)

    s = summarise(evaluate_pairs(pairs, oracle))
    assert s["categories"]["cat"]["pck_per_point"] == 1.0 and s["overall"]["n_points"] == 3
    assert math.isnan(s["categories"]["dog"]["pck_per_point"])  # a category with no keypoints
    assert s["mean"]["pck_per_point"] == 1.0  # empty categories do not enter the mean

    # pair 1 (threshold 0.1 * 100 = 10): offsets 10 (hit, edge) and 10.5 (miss); pair 2 (threshold 4): invalid
    def shifted(pair):
        if pair.pair_id.startswith("000001"):
            return pair.trg_kps + np.array([[6.0, 8.0], [0.0, 10.5]]), np.array([True, True])
        return pair.trg_kps.copy(), np.zeros(len(pair.trg_kps), bool)

    records = evaluate_pairs(pairs, shifted)
    assert [r["correct"] for r in records] == [[True, False], [False], []]
    assert [r["threshold"] for r in records] == pytest.approx([10.0, 4.0, 1.0])
    cat = summarise(records)["categories"]["cat"]
    assert cat["pck_per_point"] == pytest.approx(1 / 3)          # 1 of 3 keypoints
    assert cat["pck_per_image"] == pytest.approx((0.5 + 0.0) / 2)  # mean of the pairs' fractions
    assert cat["n_invalid"] == 1

    # NaN predictions are misses even when marked valid
    def nan(pair):
        return np.full_like(pair.trg_kps, np.nan), np.ones(len(pair.trg_kps), bool)

    assert summarise(evaluate_pairs(pairs, nan))["overall"]["pck_per_point"] == 0.0
