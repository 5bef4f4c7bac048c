"""`congeal eval-navi` end to end on tiny NAVI-format datasets written from synthetic collections, with known
answers."""
import json
import shutil

import numpy as np
import pytest
import torch

from congeal.cli import main
from helpers.benchmark_fixtures import read_synthetic, synthetic_to_navi
from helpers.eval_runs import axis_rotation as _rot
from helpers.eval_runs import make_fake_collection, write_fake_run


@pytest.fixture(scope="module")
def navi_fixture(tmp_path_factory):
    base = tmp_path_factory.mktemp("navi-harness")
    collection = make_fake_collection(base / "synth", n_images=6, seed=1)
    synthetic_to_navi(collection, base / "navi", object_id="toy", rotation=_rot("y", 50.0) @ _rot("z", 20.0),
                      scale=25.0, translation=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    return collection, base / "navi"


def test_eval_navi_recovers_perfect_poses_in_another_frame(navi_fixture, tmp_path):
    collection, root = navi_fixture
    _, entries = read_synthetic(collection)
    write_fake_run(tmp_path / "runs" / "toy", entries)  # the truth, but in the synthetic canonical frame
    assert main(["eval-navi", "--root", str(root), "--run-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    report = json.loads((tmp_path / "runs" / "eval_navi.json").read_text())
    block = report["objects"]["toy"]
    assert block["n_images"] == 6 and block["relative"]["n_pairs"] == 15
    assert block["relative"]["rotation_error_deg"]["median"] < 1e-4
    assert block["relative"]["translation_error_deg"]["median"] < 1e-4
    assert block["relative"]["auc_30"] == 1.0 and block["relative"]["rotation_acc_15"] == 1.0
    assert block["absolute_rotation"]["error_deg"]["mean"] < 1e-4 and block["absolute_rotation"]["n_inliers"] == 6
    assert block["camera_centres"]["error_relative"]["mean"] < 1e-6
    assert block["camera_centres"]["similarity"]["scale"] == pytest.approx(25.0)
    assert block["fovy"]["abs_error_deg"]["mean"] < 1e-6
    assert report["mean"]["absolute_rotation_acc_15"] == 1.0
    assert "Umeyama" in block["camera_centres"]["method"] and "RANSAC" in block["absolute_rotation"]["method"]


def test_eval_navi_robust_fit_isolates_one_bad_camera(navi_fixture, tmp_path):
    collection, root = navi_fixture
    _, entries = read_synthetic(collection)
    c2w = np.array([e["c2w"] for e in entries])
    # turn camera 2 by 90° about its own viewing axis (an in-plane roll): a 90° error, centre unchanged
    c2w[2, :3, :3] = c2w[2, :3, :3] @ _rot("z", 90.0).numpy()
    write_fake_run(tmp_path / "run", entries, c2w=c2w)
    scene_dir = root / "toy" / "wild_set"
    assert main(["eval-navi", "--root", str(scene_dir), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    block = json.loads((tmp_path / "run" / "eval_navi.json").read_text())["objects"]["toy"]
    errors = [im["rotation_error_deg"] for im in block["images"]]
    assert errors[2] == pytest.approx(90.0, abs=1e-4)
    assert max(errors[:2] + errors[3:]) < 1e-4 and block["absolute_rotation"]["n_inliers"] == 5
    assert block["absolute_rotation"]["acc_15"] == pytest.approx(5 / 6)
    # hand: 5 of the 15 pairs involve camera 2 (90° relative error), the other 10 are exact
    assert block["relative"]["rotation_acc_15"] == pytest.approx(10 / 15)
    assert block["relative"]["auc_30"] == pytest.approx(10 / 15)
    assert block["camera_centres"]["error"]["mean"] < 1e-6


def test_eval_navi_malformed_annotation_is_an_input_error(navi_fixture, tmp_path, capsys):
    collection, root = navi_fixture
    bad = tmp_path / "navi" / "toy" / "wild_set"
    shutil.copytree(root / "toy" / "wild_set", bad)
    data = json.loads((bad / "annotations.json").read_text())
    data[1]["camera"]["t"] = [0.0, "oops"]
    (bad / "annotations.json").write_text(json.dumps(data))
    assert main(["eval-navi", "--root", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(bad / "annotations.json") in err and "entry 1 camera.t" in err


def test_eval_navi_missing_run_says_what_to_do(navi_fixture, tmp_path, capsys):
    _, root = navi_fixture
    assert main(["eval-navi", "--root", str(root), "--run-dir", str(tmp_path / "none")]) == 2
    assert "--canonical" in capsys.readouterr().err



@pytest.mark.slow
def test_eval_navi_on_a_registered_synthetic_run(registered, tmp_path):
    collection, out = registered
    synthetic_to_navi(collection, tmp_path / "navi", object_id="synth", rotation=_rot("x", 70.0) @ _rot("z", 30.0),
                      scale=10.0, translation=torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64))
    assert main(["eval-navi", "--root", str(tmp_path / "navi"), "--run-dir", str(out), "--output",
                 str(tmp_path / "navi.json"), "--quiet"]) == 0
    block = json.loads((tmp_path / "navi.json").read_text())["objects"]["synth"]
    # the frame alignment must undo the 70°/30° turn: absolute errors are those of the registration itself
    assert block["absolute_rotation"]["error_deg"]["median"] < 10.0
    assert block["relative"]["rotation_acc_15"] > 0.7
    assert block["absolute_rotation"]["acc_30"] >= block["absolute_rotation"]["acc_15"]


