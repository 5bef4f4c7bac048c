"""congeal.io.crop: square crop windows and the exact original <-> working pixel transforms."""
import numpy as np
import pytest
import torch

from congeal.io.crop import Crop

CROPS = [Crop(37.3, 20.7, 211.9, 64), Crop(100.2, 50.1, 30.7, 64), Crop(-50.5, -20.25, 400.0, 100),
         Crop(10.0, 10.0, 64.0, 64)]


@pytest.mark.parametrize("crop", CROPS)
def test_round_trip_numpy_and_torch(crop):
    rng = np.random.default_rng(0)
    xy = rng.uniform(-100, 600, size=(7, 5, 2))
    back = crop.to_original(crop.to_working(xy))
    assert isinstance(back, np.ndarray) and back.shape == xy.shape
    assert np.abs(back - xy).max() < 1e-10
    uv = rng.uniform(-10, 110, size=(9, 2))
    assert np.abs(crop.to_working(crop.to_original(uv)) - uv).max() < 1e-10
    t64 = torch.from_numpy(xy)
    back_t = crop.to_original(crop.to_working(t64))
    assert back_t.dtype == torch.float64 and (back_t - t64).abs().max() < 1e-10
    t32 = t64.float()
    assert crop.to_working(t32).dtype == torch.float32
    assert (crop.to_original(crop.to_working(t32)) - t32).abs().max() < 1e-3
    # the 2x3 matrices agree with the functions and invert each other
    homogeneous = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], -1)
    assert np.abs(homogeneous @ crop.working_from_original().T - crop.to_working(xy)).max() < 1e-9
    a = np.vstack([crop.working_from_original(), [0, 0, 1]])
    b = np.vstack([crop.original_from_working(), [0, 0, 1]])
    assert np.abs(a @ b - np.eye(3)).max() < 1e-12


def test_pixel_centre_convention():
    crop = Crop(x0=10.0, y0=20.0, side=32.0, size=64)  # 2 working pixels per original pixel
    # the window's corner is working (0, 0); original pixel (row 20, col 10) has its centre at (10.5, 20.5)
    assert np.allclose(crop.to_working([10.0, 20.0]), [0.0, 0.0])
    assert np.allclose(crop.to_working([10.5, 20.5]), [1.0, 1.0])
    assert np.allclose(crop.to_original([64.0, 64.0]), [42.0, 52.0])


@pytest.mark.parametrize("crop", CROPS)
def test_apply_reproduces_coordinate_ramps(crop):
    """Resampling an image whose values are its own pixel-centre coordinates gives the working pixel centres mapped
    back by to_original: the resampler and the transforms agree exactly (away from the clamped border)."""
    height, width = 300, 500
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    out = crop.apply(torch.stack([xs, ys]).double())
    u = torch.arange(crop.size, dtype=torch.float64) + 0.5
    expected = crop.to_original(torch.stack(torch.meshgrid(u, u, indexing="xy"), -1))  # [S,S,2]
    margin = crop.side / crop.size + 1.0
    inside = ((expected[..., 0] > margin) & (expected[..., 0] < width - margin)
              & (expected[..., 1] > margin) & (expected[..., 1] < height - margin))
    assert inside.sum() > 100
    assert (out[0] - expected[..., 0])[inside].abs().max() < 1e-9
    assert (out[1] - expected[..., 1])[inside].abs().max() < 1e-9


def test_apply_antialiases_and_fills():
    checker = ((torch.arange(256)[:, None] + torch.arange(256)[None, :]) % 2).float()[None]  # [1,256,256]
    small = Crop(0.0, 0.0, 256.0, 32).apply(checker)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=1e-3)  # aliasing would give 0s and 1s
    ones = torch.ones(1, 40, 40)
    outside = Crop(-40.0, 0.0, 80.0, 16)  # working cols 0-7 and rows 8-15 lie off the image
    zero_filled = outside.apply(ones, fill=0.0)[0]
    assert torch.allclose(zero_filled[:, :7], torch.zeros(16, 7), atol=1e-12)
    assert torch.allclose(zero_filled[9:, :], torch.zeros(7, 16), atol=1e-12)
    assert torch.allclose(zero_filled[1:7, 9:15], torch.ones(6, 6))  # away from the image border
    assert ((zero_filled >= 0.5) == torch.zeros(16, 16).index_fill_(0, torch.arange(8), 1).index_fill_(
        1, torch.arange(8), 0).bool()).all()  # thresholded, the mask stops exactly at the image border
    assert torch.allclose(outside.apply(ones, fill="edge"), torch.ones(1, 16, 16))


def test_crop_from_bbox_is_square_with_margin():
    crop = Crop.from_bbox((20.0, 10.0, 60.0, 30.0), size=128, margin=0.1)
    assert crop.side == pytest.approx(48.0)  # longer side 40 + 2 * 10%
    assert np.allclose(crop.to_working([40.0, 20.0]), [64.0, 64.0])  # box centre -> crop centre
    assert Crop.from_dict(crop.to_dict()) == crop
