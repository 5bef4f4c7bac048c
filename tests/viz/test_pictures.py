"""Pictures: the grid helper, overlays and search score maps."""
import numpy as np
import torch
from PIL import Image

from congeal.viz.pictures import image_grid, overlay, score_map_image, write_overlay_grid, write_score_maps


def test_image_grid_layout_and_labels():
    tiles = [np.full((10, 12, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    grid = image_grid(tiles, columns=2, pad=2)
    assert grid.shape == (2 * 12 + 2, 2 * 14 + 2, 3) and grid.dtype == np.uint8
    assert (grid[2:12, 2:14] == 0).all() and (grid[2:12, 16:28] == 128).all()
    labelled = image_grid([torch.zeros(3, 10, 40)], columns=1, labels=["a1"])
    assert labelled[3:10, 3:14].max() == 255  # white glyphs drawn in the corner


def test_overlay_outline_and_score_map():
    photo = np.zeros((8, 8, 3), np.float32)
    render = np.ones((8, 8, 3), np.float32)
    opacity = np.zeros((8, 8, 1), np.float32)
    opacity[2:6, 2:6] = 1
    out = overlay(photo, render, opacity)
    assert np.allclose(out[0, 0], 0) and np.allclose(out[3, 3], 0.5)
    assert np.allclose(out[2, 3], (0.1, 1.0, 0.2))  # silhouette edge in green
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    image = score_map_image(scores, best=(0, 1), cell=1)
    assert image.shape == (3, 4, 3)
    assert np.allclose(image[2, 1], (1.0, 0.1, 0.1))  # lowest elevation row is drawn at the bottom
    assert image[2, 0].sum() > image[0, 3].sum()  # low score = bright


def test_writers(tmp_path):
    photos, renders, opacity = torch.rand(3, 3, 16, 16), torch.rand(3, 16, 16, 3), torch.rand(3, 16, 16, 1)
    path = write_overlay_grid(tmp_path / "pictures" / "overlay.png", photos, renders, opacity, ["a", "b", "c"])
    assert Image.open(path).size[0] > 3 * 16
    path = write_score_maps(tmp_path / "scores.png", torch.rand(3, 4, 8), ["a", "b", "c"], [(0, 0)] * 3)
    assert Image.open(path).mode == "RGB"
