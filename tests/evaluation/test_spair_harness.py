"""The SPair harness: PCK logic on a hand-written dataset, and `congeal eval-spair` end to end on tiny SPair-format
datasets written from synthetic collections (DINOv2 baseline and congeal runs), with known answers."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from congeal.cli import main
from congeal.evaluation.metrics import pck_correct
from congeal.evaluation.spair import SPairDataset
from congeal.evaluation.spair_harness import evaluate_pairs, summarise
from helpers.benchmark_fixtures import read_synthetic, synthetic_to_spair
from helpers.eval_runs import make_fake_collection


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
