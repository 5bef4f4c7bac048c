"""The registration pipeline end to end on synthetic collections (fast preset, rgb features, CPU).

The acceptance numbers of issue 3: same-instance median rotation error ≤ 3°, p95 ≤ 10°; cross-instance median
≤ 10°. Runs come from the session fixtures in conftest.py, so the mapping tests reuse them.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from congeal.geometry.cameras import rotation_angle_deg
from helpers.photo_folders import split_into_folders
from congeal.common.errors import InputError
from congeal.registration.consensus import ConsensusConfig
from congeal.run.outputs import read_poses, read_transforms
from congeal.registration.registration_config import PRESETS, config_from_dict, config_to_dict, make_config
from congeal.run.pipeline import add_images, register_collection


def rotation_errors(collection: Path, run: Path) -> np.ndarray:
    truth = {entry["name"]: entry for entry in json.loads((collection / "ground_truth.json").read_text())["images"]}
    poses = read_poses(run / "poses.json")
    assert set(poses) == set(truth)
    est = torch.tensor([poses[n]["c2w"] for n in truth], dtype=torch.float64)[:, :3, :3]
    gt = torch.tensor([truth[n]["c2w"] for n in truth], dtype=torch.float64)[:, :3, :3]
    return rotation_angle_deg(est, gt).numpy()


@pytest.mark.slow
def test_same_instance_accuracy(synthetic_run):
    collection, run = synthetic_run("same")
    errors = rotation_errors(collection, run)
    print("same-instance rotation errors (deg):", np.round(errors, 2).tolist())
    assert np.median(errors) <= 3.0
    assert np.percentile(errors, 95) <= 10.0


@pytest.mark.slow
def test_cross_instance_accuracy(synthetic_run):
    collection, run = synthetic_run("cross")
    errors = rotation_errors(collection, run)
    print("cross-instance rotation errors (deg):", np.round(errors, 2).tolist())
    assert np.median(errors) <= 10.0


@pytest.mark.slow
def test_run_folder_contents(synthetic_run):
    collection, run = synthetic_run("same")
    doc = json.loads((run / "poses.json").read_text())
    assert doc["format"] == "congeal-poses-v4" and "z-up" in doc["convention"]
    poses = read_poses(run / "poses.json")
    names = sorted(p.stem for p in (collection / "images").glob("*.png"))
    assert sorted(poses) == names
    for record in poses.values():
        assert 0.5 < record["iou"] <= 1.0 and record["feature_distance"] >= 0.0
        assert record["width"] == 192 and record["height"] == 192
        # fovy_deg is the vertical FoV of the ORIGINAL grid: 2·atan(H / (2·fl_y))
        assert record["fovy_deg"] == pytest.approx(np.degrees(2 * np.arctan(192 / (2 * record["fl_y"]))), rel=1e-6)
        # a real pinhole camera: the principal point is the photo's centre; the focal length was estimated (no EXIF)
        assert (record["cx"], record["cy"]) == pytest.approx((96.0, 96.0), abs=1e-3)
        assert record["principal_source"] == "image-centre" and record["focal_source"] == "estimated"
        position = np.array(record["c2w"])[:3, 3]
        assert record["distance"] == pytest.approx(np.linalg.norm(position), rel=1e-6)
        assert len(record["alternatives"]) == PRESETS["fast"]["search"]["top_k"] - 1
        for alternative in record["alternatives"]:
            assert {"c2w", "fovy_deg", "fl_x", "cx", "iou", "score"} <= set(alternative)
            assert alternative["joint_score"] >= record["joint_score"]  # the collection's best hypothesis won
        # same instance, distinct readings: the collection is sure of every photo
        assert 0.0 <= record["ambiguity"] < ConsensusConfig().undecided_ratio and record["undecided"] is False
        assert 0.0 <= record["disagreement"] <= 2.0
    transforms = read_transforms(run / "transforms.json")
    assert len(transforms["frames"]) == len(names)
    frame = transforms["frames"][0]
    assert (run / frame["file_path"]).resolve() == (collection / "images" / f"{frame['name']}.png").resolve()
    assert np.allclose(frame["transform_matrix"], poses[frame["name"]]["c2w"])
    for picture in ("overlay.png", "search-scores.png"):
        assert (run / "pictures" / picture).stat().st_size > 1000
    register = json.loads((run / "register.json").read_text())
    assert config_from_dict(register["config"]).refine.steps == PRESETS["fast"]["refine"]["steps"]
    assert list((run / "cache").glob("candidates-*.safetensors"))
    assert sorted(p.stem for p in (run / "maps").glob("*.npz")) == names


@pytest.mark.slow
def test_add_images_matches_full_run(synthetic_run, tmp_path):
    """--add: existing photos untouched; new photos get what a full run over all photos gives them."""
    from congeal.cli import main

    collection, full = synthetic_run("same")
    images = sorted((collection / "images").glob("*.png"))
    first, later = split_into_folders(images, tmp_path, 5)
    run = tmp_path / "run"
    shutil.copytree(full / "cache", run / "cache")  # same key: the candidate bank is reused, not rebuilt
    register_collection(collection / "canonical.safetensors", first, run, preset="fast", features="rgb",
                        device="cpu", seed=0, progress=False)
    before = read_poses(run / "poses.json")
    maps_before = {p.name: p.read_bytes() for p in (run / "maps").glob("*.npz")}

    assert main(["register", "--run", str(run), "--add", str(later), "--device", "cpu", "--quiet"]) == 0

    after = read_poses(run / "poses.json")
    assert list(after)[:5] == list(before)
    for name, record in before.items():
        assert after[name] == record
    for name, data in maps_before.items():
        assert (run / "maps" / name).read_bytes() == data
    reference = read_poses(full / "poses.json")
    for path in images[5:]:
        new, ref = after[path.stem], reference[path.stem]
        angle = rotation_angle_deg(torch.tensor(new["c2w"])[:3, :3], torch.tensor(ref["c2w"])[:3, :3])
        assert float(angle) < 0.05
        assert new["fovy_deg"] == pytest.approx(ref["fovy_deg"], abs=0.01)
        assert new["iou"] == pytest.approx(ref["iou"], abs=1e-3)
        xyz_new = np.load(run / "maps" / f"{path.stem}.npz")["xyz"]
        xyz_ref = np.load(full / "maps" / f"{path.stem}.npz")["xyz"]
        both = ~np.isnan(xyz_new[..., 0]) & ~np.isnan(xyz_ref[..., 0])
        assert both.mean() > 0.05
        assert np.nanmedian(np.abs(xyz_new[both] - xyz_ref[both])) < 1e-3
    assert len(read_transforms(run / "transforms.json")["frames"]) == len(images)
    with pytest.raises(InputError, match="already registered"):
        add_images(run, later, progress=False)


def test_bad_canonical_is_input_error(tmp_path, synthetic_collection):
    collection = synthetic_collection("same")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="bad.safetensors"):
        register_collection(bad, collection / "images", tmp_path / "run", progress=False)
    from congeal.canonical.grid import load_canonical
    from congeal.common.atomic import write_safetensors

    canonical = load_canonical(collection / "canonical.safetensors")
    density = canonical.density.clone()
    density[0, 0, 0] = float("nan")
    write_safetensors(tmp_path / "nan.safetensors", {"density": density, "rgb": canonical.rgb},
                      {"format": "congeal-canonical-v1", "radius": str(canonical.radius)})
    with pytest.raises(InputError, match="NaN"):
        register_collection(tmp_path / "nan.safetensors", collection / "images", tmp_path / "run", progress=False)


def test_unusable_collections_are_input_errors(tmp_path, synthetic_collection):
    collection = synthetic_collection("same")
    canonical = collection / "canonical.safetensors"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        register_collection(canonical, empty, tmp_path / "run", progress=False)
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(next((collection / "images").glob("*.png")), single)
    with pytest.raises(InputError, match="at least 2"):
        register_collection(canonical, single, tmp_path / "run", progress=False)
    with pytest.raises(InputError):
        register_collection(canonical, tmp_path / "missing", tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="not a registration run"):
        add_images(tmp_path / "empty", single, progress=False)


def test_config_presets_and_overrides():
    paper = make_config("paper")
    assert paper.features.name == "dinov2" and paper.grid.size == 768
    assert paper.refine.steps == 1000 and paper.mapping.steps == 4000
    fast = make_config("fast", overrides=["refine.steps=7", "search.top_k=4"])
    assert fast.features.name == "rgb" and fast.refine.steps == 7 and fast.search.top_k == 4
    assert make_config("fast", overrides={"grid.n_azimuth": 8}).grid.size == 3 * 8 * 16
    assert config_from_dict(config_to_dict(fast)) == fast
    with pytest.raises(InputError, match="preset"):
        make_config("slow")
    with pytest.raises(InputError, match="setting"):
        make_config("fast", overrides=["refine.nope=1"])
    with pytest.raises(InputError):
        make_config("fast", overrides=["refine.steps=many"])
    with pytest.raises(InputError):
        make_config("fast", features="sift")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_input_error(tmp_path, synthetic_collection):
    collection = synthetic_collection("same")
    with pytest.raises(InputError, match="cuda"):
        register_collection(collection / "canonical.safetensors", collection / "images", tmp_path, device="cuda",
                            progress=False)


def test_register_command_argument_errors(capsys):
    from congeal.cli import main

    assert main(["register", "--images", "x"]) == 2
    assert "--canonical" in capsys.readouterr().err
    assert main(["register", "--add", "x"]) == 2
    assert "--run" in capsys.readouterr().err


def test_bench_tiny_smoke(tmp_path, capsys):
    from congeal.cli import main

    assert main(["bench", "--tiny", "--device", "cpu", "--images", "3", "--out", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stages = [line["stage"] for line in lines]
    assert stages[:2] == ["synthesise", "build_model"]
    assert {"candidates", "search", "refine", "mapping", "total"} <= set(stages)
    total = lines[-1]
    assert total["stage"] == "total" and total["search_plus_refine_seconds"] > 0 and total["peak_memory_mb"] > 0
    assert (tmp_path / "run" / "poses.json").is_file()


def test_python_api_defaults_are_the_commands():
    """`register_collection(preset="paper")` means what `congeal register --preset paper` means (DINOv2 features)."""
    import argparse
    import inspect

    from congeal.commands import register as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    parameters = inspect.signature(register_collection).parameters
    for name in ("preset", "features", "device", "seed", "mask"):
        assert parameters[name].default == parser.get_default(name), name
    assert make_config("paper").features.name == "dinov2"


@pytest.mark.slow
def test_known_focal_length_is_kept(synthetic_collection, tmp_path):
    """`--fovy` (or EXIF) fixes every photo's focal length: poses.json reports it exactly and says where it came from."""
    collection = synthetic_collection("same")
    truth = json.loads((collection / "ground_truth.json").read_text())["images"]
    fovy_deg = float(truth[0]["fovy_deg"])
    photos = tmp_path / "photos"
    photos.mkdir()
    for entry in truth[:2]:
        (photos / f"{entry['name']}.png").write_bytes((collection / entry["file"]).read_bytes())
    result = register_collection(collection / "canonical.safetensors", photos, tmp_path / "run", preset="fast",
                                 features="rgb", device="cpu", progress=False,
                                 overrides=[f"intrinsics.fovy_deg={fovy_deg}", "mapping.steps=2", "refine.steps=20"])
    for record in result.records:
        assert record["focal_source"] == "given"
        assert record["fovy_deg"] == pytest.approx(fovy_deg, abs=1e-3)
        assert record["fl_y"] == pytest.approx(96.0 / np.tan(np.radians(fovy_deg) / 2), rel=1e-4)


def test_undecided_photos_are_said_in_poses_summary_and_overlay(tmp_path):
    """The plumbing of the collection's verdict: undecided_ratio 0 makes every photo undecided."""
    from PIL import Image

    from congeal.synthetic.family_collection import make_family_collection
    from congeal.viz.pictures import UNDECIDED_COLOUR

    collection = make_family_collection(tmp_path / "c", "creature", mode="same", framing="centred", n_images=3,
                                        image_size=64, resolution=24, seed=1)
    small = ["grid.n_azimuth=4", "grid.n_elevation=2", "refine.steps=3", "mapping.steps=3"]
    result = register_collection(collection / "canonical.safetensors", collection / "images", tmp_path / "run",
                                 preset="fast", features="rgb", device="cpu", progress=False,
                                 overrides=small + ["consensus.undecided_ratio=0.0", "trust.verdict_flags=true",
                                                    "trust.failed_below=0.0"])
    assert result.summary["undecided"] == 3 and sorted(result.summary["undecided_images"]) == sorted(result.names)
    poses = read_poses(tmp_path / "run" / "poses.json")
    assert all(record["undecided"] is True for record in poses.values())
    overlay = np.asarray(Image.open(tmp_path / "run" / "pictures" / "overlay.png").convert("RGB")).reshape(-1, 3)
    orange = np.round(np.array(UNDECIDED_COLOUR) * 255)
    assert (np.abs(overlay - orange).max(axis=1) <= 2).mean() > 0.01  # the frames are there

    decided = register_collection(collection / "canonical.safetensors", collection / "images", tmp_path / "run2",
                                  preset="fast", features="rgb", device="cpu", progress=False,
                                  overrides=small + ["consensus.undecided_ratio=1.01", "trust.ok_below=0.0",
                                                     "trust.failed_below=0.0"])
    assert decided.summary["undecided"] == 0 and "undecided_images" not in decided.summary
    overlay = np.asarray(Image.open(tmp_path / "run2" / "pictures" / "overlay.png").convert("RGB")).reshape(-1, 3)
    assert (np.abs(overlay - orange).max(axis=1) <= 2).mean() < 0.001


def _tiny_collection(tmp_path):
    from congeal.synthetic.family_collection import make_family_collection

    return make_family_collection(tmp_path / "c", "creature", mode="same", framing="centred", n_images=3,
                                  image_size=64, resolution=24, seed=1)


TINY = ["grid.n_azimuth=4", "grid.n_elevation=2", "refine.steps=3", "mapping.steps=3"]


def test_failed_cameras_are_said_framed_red_and_left_out_of_transforms(tmp_path):
    """The plumbing of the run's own verdict: failed_below above every confidence fails every photo; each record says
    why, the summary lists them, overlay.png frames them red and transforms.json has no frame of them but lists
    them in excluded_frames (nerfstudio never trains on a camera the run does not believe)."""
    from PIL import Image

    from congeal.viz.pictures import FAILED_COLOUR

    collection = _tiny_collection(tmp_path)
    result = register_collection(collection / "canonical.safetensors", collection / "images", tmp_path / "run",
                                 preset="fast", features="rgb", device="cpu", progress=False,
                                 overrides=TINY + ["trust.failed_below=1.01"])
    poses = read_poses(tmp_path / "run" / "poses.json")
    assert {r["status"] for r in poses.values()} == {"failed"}
    assert all(0.0 < r["confidence"] < 1.0 and r["status_reason"].startswith("confidence") for r in poses.values())
    assert result.summary["failed"] == 3 and set(result.summary["flagged"]) == set(result.names)
    transforms = read_transforms(tmp_path / "run" / "transforms.json")
    assert transforms["frames"] == []
    assert sorted(e["name"] for e in transforms["excluded_frames"]) == sorted(result.names)
    assert all(e["reason"] == poses[e["name"]]["status_reason"] for e in transforms["excluded_frames"])
    overlay = np.asarray(Image.open(tmp_path / "run" / "pictures" / "overlay.png").convert("RGB")).reshape(-1, 3)
    red = np.round(np.array(FAILED_COLOUR) * 255)
    assert (np.abs(overlay - red).max(axis=1) <= 2).mean() > 0.01

    trusted = register_collection(collection / "canonical.safetensors", collection / "images", tmp_path / "run2",
                                  preset="fast", features="rgb", device="cpu", progress=False,
                                  overrides=TINY + ["trust.failed_below=0.0", "trust.ok_below=0.0",
                                                    "consensus.undecided_ratio=1.01"])
    assert trusted.summary["failed"] == 0 and "flagged" not in trusted.summary
    assert len(read_transforms(tmp_path / "run2" / "transforms.json")["frames"]) == 3


def test_masks_only_refinement_runs_with_the_polish_colour_term(tmp_path):
    """`refine.feature_weight=0` ("masks only") used to end in KeyError 'rgb': the polish kept its own colour term
    but got no colour renderer."""
    collection = _tiny_collection(tmp_path)
    result = register_collection(collection / "canonical.safetensors", collection / "images", tmp_path / "run",
                                 preset="fast", features="rgb", device="cpu", progress=False,
                                 overrides=TINY + ["refine.feature_weight=0", "refine.polish_feature_weight=0.5"])
    assert len(read_poses(tmp_path / "run" / "poses.json")) == 3 == len(result.names)
