"""End-to-end harness tests: `congeal eval-spair` / `congeal eval-navi` on tiny SPair- and NAVI-format datasets
written from synthetic collections, with known answers."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from helpers.benchmark_fixtures import read_synthetic, synthetic_to_navi, synthetic_to_spair
from congeal.cli import main
from congeal.evaluation.metrics import pck_correct, bbox_threshold
from congeal.evaluation.spair import SPairDataset, from_continuous, to_continuous
from helpers.eval_runs import make_fake_collection, write_fake_run


def _rot(axis, deg):
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- NAVI, known runs
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


# ------------------------------------------------------------------------------------------ SPair, DINOv2 baseline
@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          patch_size=14, image_size=56)
    folder = tmp_path_factory.mktemp("dinov2-tiny")
    Dinov2Model(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def spair_fake(tmp_path_factory):
    base = tmp_path_factory.mktemp("spair-fake")
    collection = make_fake_collection(base / "synth", n_images=4, seed=2, height=96, width=112)
    root = synthetic_to_spair(collection, base / "SPair", category="toy")
    # self-pairs (an image with itself) have a known nearest-neighbour answer: the source cell
    data = SPairDataset(root)
    lines = (root / "Layout" / "large" / "test.txt").read_text()
    for k, pair in enumerate(data.pairs("test")[:3]):
        pid = f"{900 + k:06d}-{pair.src_name}-{pair.src_name}:toy"
        ann = json.loads((root / "PairAnnotation" / "test" / f"{pair.pair_id}.json").read_text())
        ann.update(trg_imname=ann["src_imname"], trg_kps=ann["src_kps"], trg_bndbox=ann["src_bndbox"])
        (root / "PairAnnotation" / "test" / f"{pid}.json").write_text(json.dumps(ann))
        lines += pid + "\n"
    (root / "Layout" / "large" / "test.txt").write_text(lines)
    return root


def test_dinov2_nn_self_match_returns_the_source_cell(tiny_dinov2):
    from congeal.evaluation.dinov2_nn import DinoNNMatcher
    from congeal.features.extractors import build_extractor

    matcher = DinoNNMatcher(build_extractor("dinov2", model=str(tiny_dinov2), input_size=56), input_size=56)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 60, 80, generator=g)
    feats = matcher.features([image, torch.rand(3, 50, 50, generator=g)])
    assert feats[0].shape == (32, 4, 4)
    xy = torch.tensor([[1.0, 1.0], [79.0, 59.0], [41.0, 16.0], [float("nan"), 3.0]])
    out = matcher.transfer(feats[0], feats[0], xy, (60, 80), (60, 80))
    # cells are 20 x 15 px: hand-computed centres of the cells holding each point
    assert out[:3].tolist() == [[10.0, 7.5], [70.0, 52.5], [50.0, 22.5]]
    assert torch.isnan(out[3]).all()
    # into another image: every answer is a cell centre of that image's 4x4 grid
    other = matcher.transfer(feats[0], feats[1], xy[:3], (60, 80), (50, 50))
    assert set(((other[:, 0] - 6.25) / 12.5).tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_eval_spair_dinov2_nn_through_the_cli(spair_fake, tiny_dinov2, tmp_path):
    out = tmp_path / "nn"
    code = main(["eval-spair", "--root", str(spair_fake), "--method", "dinov2-nn", "--dinov2", str(tiny_dinov2),
                 "--dinov2-size", "112", "--run-dir", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "eval_spair-dinov2-nn.json").read_text())
    records = json.loads((out / "eval_spair-dinov2-nn.pairs.json").read_text())
    assert report["method"] == "dinov2-nn" and report["complete"] is True
    assert set(report["categories"]) == {"toy"} and report["categories"]["toy"]["n_pairs_total"] == 12 + 3
    # self pairs: predictions are source-cell centres (8 px cells of a 112x96 image at most 5.7 px away),
    # within the 0.1 * bbox threshold
    selfs = [r for r in records if r["src"] == r["trg"]]
    assert len(selfs) == 3 and all(r["threshold"] > 5.7 for r in selfs)
    assert all(all(r["correct"]) for r in selfs)
    # both averages are consistent with the per-pair records
    n_pts = sum(r["n_points"] for r in records)
    assert report["overall"]["pck_per_point"] == pytest.approx(sum(r["n_correct"] for r in records) / n_pts)
    fr = [r["n_correct"] / r["n_points"] for r in records if r["n_points"]]
    assert report["overall"]["pck_per_image"] == pytest.approx(sum(fr) / len(fr))
    assert "per_point" in report["protocol"] and "per_image" in report["protocol"]


def test_eval_spair_malformed_pair_is_an_input_error(spair_fake, tiny_dinov2, tmp_path, capsys):
    root = tmp_path / "SPair"
    shutil.copytree(spair_fake, root)
    victim = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    victim.write_text('{"src_imname": "x.jpg"')
    assert main(["eval-spair", "--root", str(root), "--method", "dinov2-nn", "--dinov2", str(tiny_dinov2),
                 "--run-dir", str(tmp_path / "o")]) == 2
    assert str(victim) in capsys.readouterr().err


# ------------------------------------------------------------------------------- congeal runs (registration)
@pytest.fixture(scope="module")
def registered(synthetic_run, tmp_path_factory):
    """(collection, runs folder OUT with OUT/synth -> the session's registered synthetic run)."""
    collection, run = synthetic_run("same")
    out = tmp_path_factory.mktemp("runs")
    (out / "synth").symlink_to(run, target_is_directory=True)
    return collection, out


@pytest.mark.slow
def test_eval_spair_congeal_matches_direct_transfer(registered, tmp_path):
    from congeal.run.correspondence import Correspondence

    collection, out = registered
    root = synthetic_to_spair(collection, tmp_path / "SPair", category="synth")
    assert main(["eval-spair", "--root", str(root), "--run-dir", str(out), "--output",
                 str(tmp_path / "report.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    records = json.loads((tmp_path / "report.pairs.json").read_text())
    _, entries = read_synthetic(collection)
    assert report["categories"]["synth"]["n_pairs_total"] == len(entries) * (len(entries) - 1)
    # the harness's verdicts equal a direct computation from the ground truth (continuous pixels)
    corr = Correspondence(out / "synth")
    by_name = {e["name"]: e for e in entries}
    for record in records[:6]:
        src, trg = by_name[record["src"]]["keypoints"], by_name[record["trg"]]["keypoints"]
        common = sorted(k for k in src if src[k]["visible"] and k in trg and trg[k]["visible"])
        pred, valid = corr.transfer(record["src"], record["trg"], np.array([src[k]["xy"] for k in common]))
        ok = pck_correct(torch.as_tensor(np.where(valid[:, None], pred, np.nan)),
                         torch.tensor([trg[k]["xy"] for k in common]), record["threshold"])
        assert record["correct"] == ok.tolist()
    # same-instance synthetic photos: transfer through the canonical space is mostly right
    assert report["categories"]["synth"]["pck_per_point"] > 0.6
    assert report["mean"]["pck_per_image"] == report["categories"]["synth"]["pck_per_image"]


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


@pytest.mark.slow
def test_eval_spair_registers_from_a_canonical(synthetic_collection, tmp_path):
    collection = synthetic_collection("same")
    root = synthetic_to_spair(collection, tmp_path / "SPair", category="synth", max_pairs=2)  # 3 images
    out = tmp_path / "runs"
    code = main(["eval-spair", "--root", str(root), "--run-dir", str(out), "--canonical",
                 str(collection / "canonical.safetensors"), "--features", "rgb", "--quiet",
                 # plumbing test: a small grid and few steps keep the registration short
                 "--override", "grid.n_azimuth=8", "--override", "grid.n_elevation=4",
                 "--override", "refine.steps=10", "--override", "mapping.steps=10"])
    assert code == 0
    staged = sorted(p.name for p in (out / "synth" / "collection" / "masks").iterdir())
    assert len(staged) == 3 and (out / "synth" / "poses.json").is_file()
    report = json.loads((out / "eval_spair.json").read_text())
    assert report["method_settings"]["registered_here"] and report["categories"]["synth"]["n_pairs_total"] == 2
    assert report["method_settings"]["overrides"][0] == "grid.n_azimuth=8"
    register = json.loads((out / "synth" / "register.json").read_text())
    assert register["config"]["grid"]["n_azimuth"] == 8  # the override reached the registration
