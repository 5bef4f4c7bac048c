"""`congeal eval-synthetic`: pose/FoV errors, keypoint PCK through the canonical, and the done-when numbers."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.geometry.cameras import so3_exp
from congeal.cli import main
from congeal.run.correspondence import Correspondence
from congeal.common.errors import InputError
from congeal.evaluation.synthetic_harness import evaluate_synthetic
from congeal.run.folder import RunFolder
from helpers.mini_run import make_mini_run

CAMERA = {"fl_x": 1.0, "fl_y": 1.0, "cx": 0.0, "cy": 0.0, "azimuth_deg": 0.0, "elevation_deg": 0.0, "distance": 3.0,
          "iou": 1.0, "feature_distance": 0.0, "alternatives": []}


def _fake_collection(tmp_path):
    """A mini run plus a ground truth whose numbers are known: a is 10° off, b exact; b's keypoints are the mapped
    transfers of a's plus offsets of 0.01, 0.03, 0.07 and 0.3 of b's bbox side."""
    run, coll = tmp_path / "run", tmp_path / "coll"
    info = make_mini_run(run)
    (coll / "images").mkdir(parents=True)
    masks = {}
    for name in info:
        with np.load(run / "maps" / f"{name}.npz") as data:
            masks[name] = data["valid"]
        alpha = (masks[name] * 255).astype(np.uint8)
        Image.fromarray(np.dstack([np.zeros_like(alpha)] * 3 + [alpha])).save(coll / "images" / f"{name}.png")
    ys, xs = np.nonzero(masks["b"])
    side_b = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    ys, xs = np.nonzero(masks["a"])
    cand = np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float32)[:: max(1, len(xs) // 400)]
    moved, ok = Correspondence(run).transfer("a", "b", cand)
    src, dst = cand[ok][:4], moved[ok][:4]
    offsets = np.array([0.01, 0.03, 0.07, 0.3])[:, None] * side_b * np.array([[0.6, 0.8]])
    kp = {"a": {}, "b": {}}
    for i in range(4):
        kp["a"][f"k{i}"] = {"xyz": [0, 0, 0], "xy": src[i].tolist(), "visible": True}
        kp["b"][f"k{i}"] = {"xyz": [0, 0, 0], "xy": (dst[i] + offsets[i]).tolist(), "visible": True}
    kp["a"]["hidden"] = {"xyz": [0, 0, 0], "xy": src[0].tolist(), "visible": True}
    kp["b"]["hidden"] = {"xyz": [0, 0, 0], "xy": [0.0, 0.0], "visible": False}  # not visible in both: skipped
    truth, poses = [], []
    for name, item in info.items():
        w, h = item["size"]
        c2w = torch.tensor(json.loads(json.dumps(_camera(run, name)["c2w"])), dtype=torch.float64)
        truth.append({"name": name, "file": f"images/{name}.png", "width": w, "height": h, "c2w": c2w.tolist(),
                      "fovy_deg": 40.0, "keypoints": kp[name]})
        est = c2w.clone()
        if name == "a":
            est[:3, :3] = so3_exp(torch.tensor([0.0, 0.0, math.radians(10.0)], dtype=torch.float64)) @ est[:3, :3]
        poses.append({"name": name, "c2w": est.tolist(), "fovy_deg": 42.0, "width": w, "height": h, **CAMERA})
    (coll / "ground_truth.json").write_text(json.dumps({"format": "congeal-synthetic-v2", "images": truth}))
    (run / "poses.json").write_text(json.dumps({"format": "congeal-poses-v1", "convention": "threestudio",
                                                "images": poses}))
    return run, coll


def _camera(run, name):
    from congeal.registration.state import load_image_state

    return load_image_state(RunFolder(run).state_path(name)).camera


def test_scores_are_the_known_numbers(tmp_path):
    run, coll = _fake_collection(tmp_path)
    report = evaluate_synthetic(run, coll)
    rot = report["rotation_error_deg"]
    assert rot["median"] == pytest.approx(5.0, abs=1e-6)
    assert rot["acc@5"] == 0.5 and rot["acc@15"] == 1.0
    assert report["fovy_error_deg"]["median"] == pytest.approx(2.0)
    rows = {r["name"]: r for r in report["per_image"]}
    assert rows["a"]["rotation_error_deg"] == pytest.approx(10.0, abs=1e-6)
    mapped = report["keypoints"]["mapped"]
    # target b only receives a's four keypoints: 2 within 0.05, 3 within 0.1
    assert rows["b"]["pck@0.05"] == pytest.approx(0.5)
    assert rows["b"]["pck@0.1"] == pytest.approx(0.75)
    assert mapped["n_pairs"] == 2 and mapped["n_points"] == 8
    assert "identity" in report["keypoints"] and "gain_pck@0.1" in report["keypoints"]


def test_eval_synthetic_command(tmp_path, capsys):
    run, coll = _fake_collection(tmp_path)
    out = tmp_path / "report.json"
    assert main(["eval-synthetic", "--run", str(run), "--truth", str(coll / "ground_truth.json"),
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rotation_error_deg"]["median"] == pytest.approx(5.0, abs=1e-6)
    assert len(json.loads(out.read_text())["per_image"]) == 2
    assert main(["eval-synthetic", "--run", str(run), "--truth", str(tmp_path)]) == 2
    assert "ground_truth.json" in capsys.readouterr().err
    with pytest.raises(InputError):
        evaluate_synthetic(run, coll, align="bogus")



def test_v1_ground_truth_is_still_read_and_other_files_are_refused(tmp_path):
    """v1 files (keypoints inside the surface) have the same fields: they still score; anything else is refused."""
    run, coll = _fake_collection(tmp_path)
    path = coll / "ground_truth.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format": "congeal-synthetic-v1"}))
    assert evaluate_synthetic(run, coll)["rotation_error_deg"]["median"] == pytest.approx(5.0, abs=1e-6)
    path.write_text(json.dumps({**doc, "format": "congeal-poses-v1"}))
    with pytest.raises(InputError, match="congeal-synthetic-v2"):
        evaluate_synthetic(run, coll)

@pytest.fixture(scope="module")
def same_report(synthetic_run):
    pytest.importorskip("congeal.run.pipeline")
    collection, run = synthetic_run("same")
    report = evaluate_synthetic(run, collection)
    print(json.dumps({k: report[k] for k in ("rotation_error_deg", "keypoints")}, indent=1))
    return report


@pytest.mark.slow
def test_same_instance_keypoints(same_report):
    """Same instance, fast preset, seed 0: measured PCK@0.05 0.926 / PCK@0.1 0.967 (identity warp 0.893 / 0.959).

    The issue's target is PCK@0.05 ≥ 0.9. Seeds 1-3 of the collection measured 0.951, 1.0, 0.912 (docs/evaluation.md).
    With the true cameras and exact warps the same transfer scores 1.0 on these surface keypoints, so what is left
    is pose error. (v1 ground truth put keypoints half a part-radius inside the surface, where no pixel can show
    them: even true cameras scored 0.885 there.)
    """
    mapped, identity = same_report["keypoints"]["mapped"], same_report["keypoints"]["identity"]
    assert mapped["valid_rate"] >= 0.95
    assert mapped["pck@0.05"]["per_point"] >= 0.9
    assert mapped["pck@0.1"]["per_point"] >= 0.95
    assert mapped["pck@0.1"]["per_point"] >= identity["pck@0.1"]["per_point"]


@pytest.mark.slow
def test_cross_instance_keypoints_beat_the_identity_warp(synthetic_run):
    """Cross instance, fast preset, seed 0: measured PCK@0.1 0.918 with the maps, 0.892 with the identity warp."""
    pytest.importorskip("congeal.run.pipeline")
    collection, run = synthetic_run("cross")
    report = evaluate_synthetic(run, collection)
    print(json.dumps({k: report[k] for k in ("rotation_error_deg", "keypoints")}, indent=1))
    mapped = report["keypoints"]["mapped"]["pck@0.1"]["per_point"]
    identity = report["keypoints"]["identity"]["pck@0.1"]["per_point"]
    assert mapped >= 0.75
    assert mapped > identity
