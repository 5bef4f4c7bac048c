"""`congeal propagate RUN --labels labels.json`: files, summary line, and clear errors for bad input."""
import json
import shutil
import sys

import pytest



def cli(*argv) -> int:
    """`congeal <argv>` as the command line runs it."""
    from congeal.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def run_and_truth(synthetic_run, tmp_path_factory):
    collection, run_dir = synthetic_run("same")
    copy = shutil.copytree(run_dir, tmp_path_factory.mktemp("propagate") / "run",
                           ignore=shutil.ignore_patterns("cache"))
    return copy, json.loads((collection / "ground_truth.json").read_text())


def test_propagate_writes_labels_coco_and_grid(run_and_truth, tmp_path, capsys):
    run, truth = run_and_truth
    first = truth["images"][0]
    points = {k: kp["xy"] for k, kp in first["keypoints"].items() if kp["visible"]}
    labels = tmp_path / "my-labels.json"
    labels.write_text(json.dumps({"photos": {first["name"]: {"points": points}}}))
    assert cli("propagate", run, "--labels", labels) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = run / "labels" / "my-labels"
    assert summary["out"] == str(out) and summary["photos"] == len(truth["images"])
    assert summary["points_placed"] >= 0.5 * summary["points_propagated"] > 0
    for file in ("labels.json", "coco.json", "grid.png"):
        assert (out / file).is_file()
    assert cli("propagate", run, "--labels", labels, "--out", tmp_path / "elsewhere") == 0
    assert (tmp_path / "elsewhere" / "coco.json").is_file()


def test_propagate_refuses_bad_input(run_and_truth, tmp_path, capsys):
    run, truth = run_and_truth
    name = truth["images"][0]["name"]
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"photos": {name: {"points": {"a": [1e5, 3.0]}}}}))
    assert cli("propagate", run, "--labels", outside) == 2
    assert "lies outside the photo" in capsys.readouterr().err
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"photos": {"not-a-photo": {"points": {"a": [1.0, 3.0]}}}}))
    assert cli("propagate", run, "--labels", unknown) == 2
    err = capsys.readouterr().err
    assert "not-a-photo" in err and name in err  # names the photos it has
    assert cli("propagate", run, "--labels", tmp_path / "missing.json") == 2
    assert "label file not found" in capsys.readouterr().err
    old = shutil.copytree(run, tmp_path / "old-run")
    register = json.loads((old / "register.json").read_text())
    register["format"] = "congeal-register-v0"
    (old / "register.json").write_text(json.dumps(register))
    assert cli("propagate", old, "--labels", outside) == 2
    assert "congeal-register-v1" in capsys.readouterr().err
    assert cli("propagate", tmp_path / "nowhere", "--labels", outside) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_failed_camera_gets_no_labels_unless_asked_and_is_listed(run_and_truth, tmp_path, capsys):
    """A photo whose camera the run calls failed (poses.json status) is left out of propagate's outputs by default and
    named with its reason in the summary; --include-flagged uses it anyway."""
    run, truth = run_and_truth
    copy = shutil.copytree(run, tmp_path / "flagged-run")
    poses = json.loads((copy / "poses.json").read_text())
    failed = poses["images"][-1]["name"]
    poses["images"][-1].update(status="failed", status_reason="confidence 0.05: test")
    (copy / "poses.json").write_text(json.dumps(poses))
    first = truth["images"][0]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"photos": {first["name"]: {"points": {
        k: kp["xy"] for k, kp in first["keypoints"].items() if kp["visible"]}}}}))
    assert cli("propagate", copy, "--labels", labels, "--out", tmp_path / "default") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["left_out"] == {failed: "confidence 0.05: test"}
    written = json.loads((tmp_path / "default" / "labels.json").read_text())
    assert failed not in written["photos"] and written["left_out"] == {failed: "confidence 0.05: test"}
    assert summary["photos"] == len(truth["images"]) - 1
    assert cli("propagate", copy, "--labels", labels, "--out", tmp_path / "all", "--include-flagged") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["left_out"] == {} and failed in json.loads((tmp_path / "all" / "labels.json").read_text())["photos"]
