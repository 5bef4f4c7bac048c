"""Map pictures: NOCS maps and correspondence lines (the pose-aware edits are congeal.apps, tests/apps)."""
import json

import numpy as np
from PIL import Image

from congeal.run.map_pictures import nocs_colours, write_map_pictures
from helpers.mini_run import make_mini_run


def test_write_map_pictures(tmp_path):
    run = tmp_path / "run"
    make_mini_run(run)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (140, 130), (0, 200, 0)).save(photos / "a.png")  # b has no photo yet
    written = write_map_pictures(run, images=photos)
    names = {p.relative_to(run / "pictures").as_posix() for p in written}
    assert {"nocs/a.png", "nocs/b.png", "nocs.png", "correspondences/a__b.png"} <= names
    assert all(p.is_file() for p in written)
    assert not list((run / "pictures").rglob(".*.tmp*"))  # atomic writes leave no temp files
    nocs = np.asarray(Image.open(run / "pictures" / "nocs" / "a.png"))
    with np.load(run / "maps" / "a.npz") as data:
        valid = data["valid"]
    assert nocs.shape == (*valid.shape, 3)
    # background is the dimmed photo; object pixels carry distinct NOCS colours
    assert np.abs(nocs[~valid].astype(int) - [0, 70, 0]).max() <= 1
    assert len(np.unique(nocs[valid].reshape(-1, 3), axis=0)) > 100
    # without `images`, the photos come from register.json (as the pipeline writes it)
    Image.new("RGB", (100, 110), (200, 0, 0)).save(photos / "b.png")
    (run / "register.json").write_text(json.dumps({"images": [{"name": "b", "path": str(photos / "b.png")}]}))
    write_map_pictures(run)
    nocs_b = np.asarray(Image.open(run / "pictures" / "nocs" / "b.png"))
    with np.load(run / "maps" / "b.npz") as data:
        assert np.abs(nocs_b[~data["valid"]].astype(int) - [70, 0, 0]).max() <= 1


def test_colours_depend_on_canonical_position():
    lo, hi = np.zeros(3), np.ones(3)
    xyz = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(nocs_colours(xyz, lo, hi), xyz)
