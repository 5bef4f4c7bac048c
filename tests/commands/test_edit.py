"""`congeal edit RUN --decal ... | --texture ...`: RUN/edits/<edit>/ (photos + grid + edit.json), clear errors."""
import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image



def cli(*argv) -> int:
    """`congeal <argv>` as the command line runs it."""
    from congeal.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def run_and_truth(synthetic_run, tmp_path_factory):
    collection, run_dir = synthetic_run("same")
    copy = shutil.copytree(run_dir, tmp_path_factory.mktemp("edit") / "run", ignore=shutil.ignore_patterns("cache"))
    return copy, json.loads((collection / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def sticker(tmp_path_factory):
    path = tmp_path_factory.mktemp("sticker") / "star.png"
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[5:35, 10:50] = (255, 40, 40, 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_decal_edit(run_and_truth, sticker, capsys):
    run, truth = run_and_truth
    first = truth["images"][0]
    kp = next(kp for kp in first["keypoints"].values() if kp["visible"])
    at = f"{kp['xy'][0]},{kp['xy'][1]}"
    assert cli("edit", run, "--decal", sticker, "--photo", first["name"], "--at", at, "--scale", "0.2") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = run / "edits" / "decal-star"
    assert summary["edit"] == str(folder) and summary["photos"] == len(truth["images"])
    assert summary["photos_with_edit"] >= 2
    doc = json.loads((folder / "edit.json").read_text())
    assert doc["kind"] == "decal" and doc["photo"] == first["name"] and len(doc["photos"]) == len(truth["images"])
    for entry in truth["images"]:
        edited = Image.open(folder / f"{entry['name']}.png")
        assert edited.size == (entry["width"], entry["height"])
    assert (folder / "grid.png").is_file()


def test_texture_edit(run_and_truth, tmp_path, capsys):
    run, truth = run_and_truth
    assert cli("edit", run, "--texture", "checker", "--name", "demo-checker") == 0
    assert (run / "edits" / "demo-checker" / "grid.png").is_file()
    pattern = tmp_path / "stripes.jpg"
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::8] = 255
    Image.fromarray(stripes).save(pattern)
    assert cli("edit", run, "--texture", pattern, "--texture-scale", "0.4", "--strength", "0.5") == 0
    doc = json.loads((run / "edits" / "texture-stripes" / "edit.json").read_text())
    assert doc["kind"] == "texture" and doc["strength"] == 0.5
    assert all(p["edited_pixels"] > 0 for p in doc["photos"].values())


def test_edit_refuses_bad_input(run_and_truth, sticker, tmp_path, capsys):
    run, truth = run_and_truth
    name = truth["images"][0]["name"]
    not_image = tmp_path / "sticker.png"
    not_image.write_bytes(b"%PDF-1.4 definitely not a PNG")
    assert cli("edit", run, "--decal", not_image, "--photo", name, "--at", "50,50") == 2
    assert "sticker.png" in capsys.readouterr().err
    assert cli("edit", run, "--decal", sticker, "--photo", "nope", "--at", "50,50") == 2
    assert "no registered photo named 'nope'" in capsys.readouterr().err
    assert cli("edit", run, "--decal", sticker, "--photo", name, "--at", "fifty") == 2
    assert "not X,Y" in capsys.readouterr().err
    assert cli("edit", run, "--decal", sticker, "--photo", name, "--at", "5000,50") == 2
    assert "outside photo" in capsys.readouterr().err
    assert cli("edit", run, "--decal", sticker) == 2
    assert "--photo and --at" in capsys.readouterr().err
    assert cli("edit", run, "--texture", tmp_path / "none.png") == 2
    assert "no such texture" in capsys.readouterr().err
    old = shutil.copytree(run, tmp_path / "old-run")
    (old / "poses.json").write_text(json.dumps({"format": "congeal-poses-v0", "images": []}))
    assert cli("edit", old, "--texture", "checker") == 2
    assert "congeal-poses-v1" in capsys.readouterr().err
