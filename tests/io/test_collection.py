"""congeal.io.collection / congeal.io.crop: the collection loader and the exact original <-> working pixel transforms."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.io.crop import Crop
from congeal.common.errors import InputError
from congeal.io.collection import ImageCollection, find_mask_file, list_images, load_collection
from helpers.images import box_mask, object_array, photo_with_mask_file, rgba_photo


# ---------------------------------------------------------------------------------------------- Crop transforms
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


# ---------------------------------------------------------------------------------------------- the loader
def _make_collection(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rgba_photo(folder / "b_rgba.png", 64, 80, box=(16, 48, 20, 60))
    photo_with_mask_file(folder, "a_file", 90, 70, box=(30, 70, 10, 40), suffix=".jpg")
    photo_with_mask_file(folder, "c_beside", 50, 50, box=(10, 40, 5, 45), mask_style="beside")
    return folder


def test_load_collection_basic(tmp_path):
    folder = _make_collection(tmp_path / "photos")
    collection = load_collection(folder, size=32, margin=0.1)
    assert isinstance(collection, ImageCollection) and len(collection) == 3
    assert collection.names == ["a_file", "b_rgba", "c_beside"]
    assert collection.images.shape == (3, 3, 32, 32) and collection.images.dtype == torch.float32
    assert collection.masks.shape == (3, 1, 32, 32)
    assert set(collection.masks.unique().tolist()) <= {0.0, 1.0}
    assert 0.0 <= float(collection.images.min()) and float(collection.images.max()) <= 1.0
    assert collection.original_sizes == [(90, 70), (64, 80), (50, 50)]
    assert collection.mask_sources[1] == "alpha"
    assert collection.mask_sources[0] == f"file:{folder / 'masks' / 'a_file.png'}"
    assert collection.mask_sources[2] == f"file:{folder / 'c_beside_mask.png'}"
    assert [p.name for p, _ in collection.skipped] == ["c_beside_mask.png", "masks"]
    assert collection.coverages[1] == pytest.approx(32 * 40 / (64 * 80))
    # the object's box with a 10% margin fills the crop: mask box in working pixels is [S/12, 11 S/12]
    for i, (r0, r1, c0, c1) in enumerate([(30, 70, 10, 40), (16, 48, 20, 60), (10, 40, 5, 45)]):
        corners = collection.crops[i].to_working(np.array([[c0, r0], [c1, r1]], float))
        mask = collection.masks[i, 0]
        rows = torch.nonzero(mask.any(1)).flatten()
        cols = torch.nonzero(mask.any(0)).flatten()
        assert abs(cols[0].item() - corners[0, 0]) <= 1.0 and abs(cols[-1].item() + 1 - corners[1, 0]) <= 1.0
        assert abs(rows[0].item() - corners[0, 1]) <= 1.0 and abs(rows[-1].item() + 1 - corners[1, 1]) <= 1.0
        assert max(corners[1] - corners[0]) == pytest.approx(32 / 1.2)


def test_transparent_photo_composited_on_white(tmp_path):
    folder = _make_collection(tmp_path / "photos")
    collection = load_collection(folder, size=32)
    image = collection.images[1]
    # background away from the object's (blended) outline
    mask = torch.nn.functional.max_pool2d(collection.masks[1], 3, stride=1, padding=1)[0]
    background = image[:, mask == 0]
    assert background.numel() > 0 and float(background.min()) > 0.95  # white, not the stored black
    kept = load_collection(folder, size=32, alpha_background=None)
    assert float(kept.images[1][:, mask == 0].max()) < 0.05


def test_marker_lands_where_to_working_says(tmp_path):
    """A small bright blob in a big photo: its centroid in the (strongly shrunk) crop is to_working(its centroid)."""
    height, width = 600, 900
    array = object_array(height, width, (100, 500, 150, 650), colour=(0, 0, 0))
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    centre = np.array([431.7, 233.2])  # (x, y)
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 12.0 ** 2))
    array[..., 1] = np.clip(blob * 255, 0, 255).astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "blob.png")
    Image.fromarray(box_mask(height, width, (100, 500, 150, 650)).astype(np.uint8) * 255).save(
        tmp_path / "blob_mask.png")
    rgba_photo(tmp_path / "other.png")
    collection = load_collection(tmp_path, size=64)
    i = collection.names.index("blob")
    green = collection.images[i, 1].double() - collection.images[i, 1].min().double()
    u = torch.arange(64, dtype=torch.float64) + 0.5
    centroid = torch.stack([(green.sum(0) * u).sum(), (green.sum(1) * u).sum()]) / green.sum()
    expected = collection.crops[i].to_working(centre)
    assert np.abs(centroid.numpy() - expected).max() < 0.05


def test_load_original_and_subset(tmp_path):
    folder = _make_collection(tmp_path / "photos")
    collection = load_collection(folder, size=24)
    image, mask = collection.load_original(2)
    assert image.shape == (3, 50, 50) and mask.shape == (1, 50, 50)
    assert torch.equal(mask[0].bool(), torch.from_numpy(box_mask(50, 50, (10, 40, 5, 45))))
    sub = collection.subset(["c_beside", "a_file"])
    assert sub.names == ["c_beside", "a_file"] and len(sub) == 2
    assert torch.equal(sub.images[0], collection.images[2]) and sub.crops[1] == collection.crops[0]
    assert torch.equal(sub.load_original(0)[1], mask)
    with pytest.raises(InputError, match="no image named"):
        collection.subset(["nope"])


def test_mask_modes_are_explicit(tmp_path):
    folder = _make_collection(tmp_path / "photos")
    with pytest.raises(InputError, match="no alpha channel"):
        load_collection(folder, mask="alpha")
    with pytest.raises(InputError) as error:
        load_collection(folder, mask="file")
    assert "b_rgba.png" in str(error.value) and "no mask" in str(error.value)
    with pytest.raises(InputError, match="unknown mask source"):
        load_collection(folder, mask="magic")


def test_list_images_keeps_photos_named_like_masks(tmp_path):
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "face_mask.jpg")  # a photo of a mask
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "z.png")
    listing = list_images(tmp_path)
    assert [p.name for p in listing.images] == ["face_mask.jpg", "z.png"]
    assert find_mask_file(tmp_path / "z.png") is None
