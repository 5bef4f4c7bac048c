"""Pose-aware edits on a synthetic run with ground truth: a decal centred on a keypoint is centred on that keypoint in
the other photos (found from the edited pixels), hidden where the keypoint is, only on the object, at full
resolution; a canonical texture paints every photo; outputs land in RUN/edits/; bad input is refused."""
import json

import numpy as np
import pytest
from PIL import Image

from congeal.apps.edits.decals import composite_decal, load_decal, place_decal
from congeal.apps.edits.edit_folder import write_edit
from congeal.run.registered_run import RegisteredRun
from congeal.apps.edits.textures import canonical_normals, checker_texture, texture_edit, triplanar
from congeal.common.errors import InputError
from congeal.evaluation.synthetic_harness import _object_bbox, load_ground_truth


@pytest.fixture(scope="module")
def truth_run(synthetic_run):
    collection, run_dir = synthetic_run("same")
    folder, truth = load_ground_truth(collection)
    return folder, truth, RegisteredRun(run_dir)


def _decal_centroid(edited: np.ndarray, original: np.ndarray):
    """Centroid (x, y) of the pixels the decal changed (found from the pictures alone), None when none changed."""
    changed = np.linalg.norm(edited.astype(np.float64) - original.astype(np.float64), axis=-1) > 0.1
    if not changed.any():
        return None
    ys, xs = np.nonzero(changed)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def test_decal_on_a_keypoint_lands_on_that_keypoint(truth_run, disc_decal):
    """The decal's centre, found from the edited pixels, lies near the keypoint in every other photo that sees it.

    Errors are fractions of the target's object size (the PCK scale). Measured on this run: median 0.020 (the maps'
    own transfer of the same points: 0.010 — the centroid of a disc's visible part on a curved surface seen at an
    angle, or cut by the silhouette at a tail tip, is off its centre by a few pixels), largest 0.061–0.071. So the
    bounds are counts-free: a typical decal within PCK@0.05, none beyond PCK@0.1. (The earlier form, "hits at
    PCK@0.05 ≥ the maps' hits − 0.1" on 16 pairs, followed a transfer 0.01 px inside its tolerance and failed when
    the registration got better.)"""
    folder, truth, run = truth_run
    decal = load_decal(disc_decal)
    source = run.names[0]
    errors = []
    for name, kp in truth[source]["keypoints"].items():
        if not kp["visible"]:
            continue
        placement = place_decal(run, decal, source, tuple(kp["xy"]), scale=0.08)
        for target in run.names[1:]:
            if not truth[target]["keypoints"][name]["visible"]:
                continue
            edited, _ = composite_decal(run, decal, placement, target)
            centroid = _decal_centroid(edited, run.photo(target).rgb)
            x1, y1, x2, y2 = _object_bbox(folder, truth[target])
            true_xy = truth[target]["keypoints"][name]["xy"]
            miss = np.inf if centroid is None else np.linalg.norm(centroid - true_xy)
            errors.append(miss / max(x2 - x1, y2 - y1))
    errors = np.asarray(errors)
    print(f"decal centroid error / object size over {errors.size} (photo, keypoint) pairs: "
          f"median {np.median(errors):.3f}, largest {errors.max():.3f}")
    assert errors.size >= 10
    assert np.median(errors) <= 0.05
    assert errors.max() <= 0.1


def test_decal_is_hidden_where_its_surface_is_not_seen(truth_run, disc_decal):
    folder, truth, run = truth_run
    decal = load_decal(disc_decal)
    seen, unseen = [], []
    for source in run.names[:3]:
        for name, kp in truth[source]["keypoints"].items():
            if not kp["visible"]:
                continue
            placement = place_decal(run, decal, source, tuple(kp["xy"]), scale=0.08)
            for target in run.names:
                if target == source:
                    continue
                _, coverage = composite_decal(run, decal, placement, target)
                x, y = truth[target]["keypoints"][name]["xy"]
                yy, xx = np.mgrid[0:coverage.shape[0], 0:coverage.shape[1]]
                near = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= 8.0 ** 2
                (seen if truth[target]["keypoints"][name]["visible"] else unseen).append(float((coverage * near).sum()))
    assert len(unseen) >= 5
    typical = float(np.median(seen))
    print(f"decal pixels near the keypoint: visible {typical:.1f} (median), hidden {np.median(unseen):.1f}")
    assert np.median(unseen) < 0.25 * typical
    assert np.mean(np.asarray(unseen) < 0.1 * typical) >= 0.5


def test_decal_stays_on_the_object_at_full_resolution(truth_run, disc_decal, tmp_path):
    folder, truth, run = truth_run
    decal = load_decal(disc_decal)
    source = run.names[0]
    omap = run.object_map(source)
    rows, cols = np.nonzero(omap.valid)
    at = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
    placement = place_decal(run, decal, source, at, scale=0.6)  # bigger than the object's narrow parts
    edited_all = {name: composite_decal(run, decal, placement, name) for name in run.names}
    for name, (edited, coverage) in edited_all.items():
        target = run.object_map(name)
        original = run.photo(name).rgb
        assert edited.shape == original.shape == (target.height, target.width, 3)
        changed = np.abs(edited - original).max(axis=-1) > 1e-6
        assert not (changed & ~target.valid).any() and not ((coverage > 0) & ~target.valid).any()
    assert edited_all[source][1].sum() > 0
    import shutil

    copy = RegisteredRun(shutil.copytree(run.root, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    paths = write_edit(copy, "decal-test", edited_all, {"kind": "decal", "photo": source})
    folder_out = copy.root / "edits" / "decal-test"
    assert set(p.name for p in paths) == {f"{n}.png" for n in run.names} | {"grid.png", "edit.json"}
    doc = json.loads((folder_out / "edit.json").read_text())
    assert doc["format"] == "congeal-edit-v1" and doc["photo"] == source
    assert doc["photos"][source]["centroid"] is not None
    saved = Image.open(folder_out / f"{source}.png")
    assert saved.size == (omap.width, omap.height)
    assert not list(folder_out.glob(".*.tmp*"))  # atomic writes leave no temporaries


def test_texture_paints_every_photo_in_canonical_space(truth_run):
    folder, truth, run = truth_run
    texture = checker_texture(64)
    edited = texture_edit(run, texture, strength=1.0)
    assert set(edited) == set(run.names)
    for name, (image, coverage) in edited.items():
        omap = run.object_map(name)
        original = run.photo(name).rgb
        changed = np.abs(image - original).max(axis=-1) > 1e-6
        assert not (changed & ~omap.valid).any()
        assert (coverage[omap.valid] == 1.0).all() and changed[omap.valid].mean() > 0.5
    # the same canonical point reads the same texel in every photo
    canonical = run.canonical()
    points = np.array([[0.1, 0.2, 0.3], [-0.4, 0.0, 0.2]], np.float32)
    normals = canonical_normals(canonical, points)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    a = triplanar(texture, points, normals, period=0.5)
    b = triplanar(texture, points.copy(), normals.copy(), period=0.5)
    assert np.array_equal(a, b) and a.shape == (2, 3)


def test_normals_point_outwards_on_a_sphere():
    import torch

    from congeal.canonical.bake import canonical_from_sdf

    canonical = canonical_from_sdf(lambda p: p.norm(dim=-1) - 0.5, lambda p: torch.full_like(p, 0.5),
                                   resolution=32)
    points = np.array([[0.5, 0, 0], [0, -0.5, 0], [0, 0, 0.5], [0.3, 0.3, -0.29]], np.float32)
    normals = canonical_normals(canonical, points)
    expected = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert (np.sum(normals * expected, axis=1) > 0.95).all()


def test_bad_decals_and_placements_are_refused(truth_run, disc_decal, tmp_path):
    _, _, run = truth_run
    fake = tmp_path / "sticker.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match="sticker.png"):
        load_decal(fake)
    with pytest.raises(InputError, match="no such decal"):
        load_decal(tmp_path / "missing.png")
    decal = load_decal(disc_decal)
    omap = run.object_map(run.names[0])
    with pytest.raises(InputError, match="outside photo"):
        place_decal(run, decal, run.names[0], (omap.width + 10.0, 5.0))
    with pytest.raises(InputError, match="not on the object"):
        place_decal(run, decal, run.names[0], (0.5, 0.5))
    with pytest.raises(InputError, match="no registered photo named 'nope'"):
        place_decal(run, decal, "nope", (1.0, 1.0))
    rows, cols = np.nonzero(omap.valid)
    with pytest.raises(InputError, match="scale"):
        place_decal(run, decal, run.names[0], (cols[0] + 0.5, rows[0] + 0.5), scale=0.0)
