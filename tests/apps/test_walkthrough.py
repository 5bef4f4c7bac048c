"""The walkthrough the demo runs: labels propagated, the sticker placed, the checker painted, files in place."""
import json
import shutil

from congeal.apps.walkthrough import run_walkthrough, sticker, write_checker_edit
from congeal.common.errors import InputError


def test_sticker_is_an_rgba_badge():
    decal = sticker(48)
    assert decal.rgb.shape == (48, 48, 3) and decal.alpha.shape == (48, 48)
    assert decal.alpha[24, 24] == 1.0 and decal.alpha[0, 0] == 0.0


def test_walkthrough_on_a_run(synthetic_run, tmp_path):
    collection, run_dir = synthetic_run("same")
    run = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    truth = json.loads((collection / "ground_truth.json").read_text())["images"][0]
    points = {k: kp["xy"] for k, kp in truth["keypoints"].items() if kp["visible"]}
    shown = run_walkthrough(run, points, truth["name"])
    assert all(path.is_file() for path in shown.values())
    assert json.loads(shown["labels_file"].read_text())["photos"][truth["name"]]["points"].keys() == points.keys()
    decal = json.loads((shown["decal_grid"].parent / "edit.json").read_text())
    assert sum(p["edited_pixels"] > 0 for p in decal["photos"].values()) >= 2
    assert write_checker_edit(run)[-1].name == "edit.json"
    try:
        run_walkthrough(run, {}, truth["name"])
    except InputError as error:
        assert "at least one" in str(error)
    else:
        raise AssertionError("an empty walkthrough was accepted")
