"""The harnesses' shared plumbing: staging benchmark images, finding canonicals, reusing runs, checking names."""
import argparse

import numpy as np
import pytest
from PIL import Image

from congeal.common.errors import InputError
from congeal.evaluation.runs import (RegisterSettings, StagedImage, add_register_arguments, check_names, ensure_run,
                                     registered_poses, report_stamp, resolve_canonical, stage_collection)
from helpers.eval_runs import make_fake_collection, write_fake_run


def test_stage_collection_copies_bakes_exif_and_writes_masks(tmp_path):
    upright = np.zeros((6, 10, 3), np.uint8)
    upright[0, :] = 255  # top row white: survives the round trip through EXIF orientation 6
    plain = tmp_path / "plain.png"
    Image.fromarray(upright).save(plain)
    rotated = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90° counter-clockwise; a viewer turns it back
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif)
    mask = np.zeros((6, 10), bool)
    mask[2:4, 3:7] = True
    folder = stage_collection(tmp_path / "staged", [StagedImage("a", plain, mask), StagedImage("b", rotated)])
    assert (folder / "a.png").read_bytes() == plain.read_bytes()  # copied unchanged
    baked = np.asarray(Image.open(folder / "b.png"))
    assert baked.shape == (6, 10, 3) and (baked[0] == 255).all() and (baked[1:] == 0).all()
    written = np.asarray(Image.open(folder / "masks" / "a.png"))
    assert ((written == 255) == mask).all() and not (folder / "masks" / "b.png").exists()
    with pytest.raises(InputError, match="image is missing"):
        stage_collection(tmp_path / "staged", [StagedImage("c", tmp_path / "nope.jpg")])


def test_resolve_canonical_file_or_folder(tmp_path):
    single = tmp_path / "one.safetensors"
    single.write_bytes(b"x")
    assert resolve_canonical(single, "cat", single=True) == single
    with pytest.raises(InputError, match="several"):
        resolve_canonical(single, "cat", single=False)
    (tmp_path / "cat.safetensors").write_bytes(b"x")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "canonical.safetensors").write_bytes(b"x")
    assert resolve_canonical(tmp_path, "cat", single=False) == tmp_path / "cat.safetensors"
    assert resolve_canonical(tmp_path, "dog", single=False) == tmp_path / "dog" / "canonical.safetensors"
    with pytest.raises(InputError, match="no canonical for 'cow'"):
        resolve_canonical(tmp_path, "cow", single=False)


def test_existing_runs_are_reused_and_checked(tmp_path):
    import json

    collection = make_fake_collection(tmp_path / "synth", n_images=3)
    entries = json.loads((collection / "ground_truth.json").read_text())["images"]
    write_fake_run(tmp_path / "run", entries)

    def never():
        raise AssertionError("an existing run is not registered again")

    settings = RegisterSettings()
    assert ensure_run(tmp_path / "run", None, "synth", True, never, settings).root == tmp_path / "run"
    poses = registered_poses(tmp_path / "run", None, "synth", True, never, ["img00", "img02"], "toy", settings)
    assert list(poses) == ["img00", "img01", "img02"]
    with pytest.raises(InputError, match="no registration for 1 toy image"):
        registered_poses(tmp_path / "run", None, "synth", True, never, ["img00", "img07"], "toy", settings)
    with pytest.raises(InputError, match="--canonical"):
        ensure_run(tmp_path / "empty", None, "synth", True, never, settings)
    check_names(tmp_path / "run", ["a"], [], "toy")  # nothing needed, nothing missing


def test_report_stamp_and_flags():
    stamp = report_stamp(0.0)
    assert set(stamp) == {"seconds", "congeal_version", "created"} and stamp["seconds"] > 0
    parser = argparse.ArgumentParser()
    add_register_arguments(parser, "object", "objects")
    args = parser.parse_args(["--override", "refine.steps=3", "--features", "rgb"])
    assert (args.canonical, args.preset, args.features, args.override) == (None, "fast", "rgb", ["refine.steps=3"])
    assert (args.device, args.seed, args.quiet) == ("cpu", 0, False)
    canonical = next(a for a in parser._actions if a.dest == "canonical")
    assert canonical.help.endswith("<object>/canonical.safetensors: register objects that have no run yet")
