"""congeal.io.collection: the one photo loader (object crops, masks, folder listing)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.io.crop import Crop
from congeal.common.errors import InputError
from congeal.io.collection import ImageCollection, load_collection
from helpers.images import box_mask, object_array, photo_with_mask_file, rgba_photo


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


def test_mask_cover_holds_each_pixels_object_fraction(tmp_path):
    """`mask_cover` keeps what thresholding drops: the object's share of each working pixel (its area is the box's)."""
    folder = _make_collection(tmp_path / "photos")
    collection = load_collection(folder, size=32, margin=0.1)
    cover = collection.mask_cover
    assert cover.shape == collection.masks.shape
    assert torch.equal((cover >= 0.5).float(), collection.masks)
    assert bool(((cover > 0.05) & (cover < 0.95)).any())  # edges that do not fall on working pixel borders
    for i, (r0, r1, c0, c1) in enumerate([(30, 70, 10, 40), (16, 48, 20, 60), (10, 40, 5, 45)]):
        scale = 32 / collection.crops[i].side
        assert float(cover[i].sum()) == pytest.approx((r1 - r0) * (c1 - c0) * scale ** 2, rel=1e-3)
    sub = collection.subset(["c_beside", "a_file"])
    assert torch.equal(sub.mask_cover[1], cover[0])
    built = ImageCollection(names=["x"], paths=[Path("x.png")], images=collection.images[:1],
                            masks=collection.masks[:1], original_sizes=[(90, 70)], crops=collection.crops[:1],
                            mask_sources=["alpha"])
    assert built.mask_cover is built.masks  # collections built without it: the binary masks


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


def test_photos_without_masks_load_when_no_mask_is_required(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(object_array(40, 60, (10, 30, 20, 40))).save(folder / "plain.png")  # no alpha, no mask file
    rgba_photo(folder / "cut.png", 64, 80, box=(16, 48, 20, 60))
    with pytest.raises(InputError, match="has no mask"):
        load_collection(folder, size=32)
    collection = load_collection(folder, size=32, require_mask=False)
    assert collection.mask_sources == ["alpha", "none"]
    plain = collection.index("plain")
    assert collection.crops[plain] == Crop(10.0, 0.0, 40.0, 32)  # the largest centred square of the 60x40 photo
    assert torch.equal(collection.masks[plain], torch.ones(1, 32, 32))
    assert collection.coverages[plain] == 1.0 and not collection.warnings
    cut = collection.index("cut")
    assert collection.crops[cut] == Crop.from_bbox((20.0, 16.0, 60.0, 48.0), size=32, margin=0.1)  # the object crop


def test_minimum_photo_count(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rgba_photo(folder / "only.png")
    with pytest.raises(InputError, match="is the only photo"):
        load_collection(folder, size=32)
    assert load_collection(folder, size=32, min_photos=1).names == ["only"]
    with pytest.raises(InputError, match="is not a folder: it does not exist"):
        load_collection(tmp_path / "absent")
