"""congeal.io.listing: which files are photos, where their mask files are, the minimum photo count."""
import pytest
from PIL import Image

from congeal.common.errors import InputError
from congeal.io.listing import find_mask_file, list_images, require_photos
from helpers.images import object_array


def test_list_images_keeps_photos_named_like_masks(tmp_path):
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "face_mask.jpg")  # a photo of a mask
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "z.png")
    listing = list_images(tmp_path)
    assert [p.name for p in listing.images] == ["face_mask.jpg", "z.png"]
    assert find_mask_file(tmp_path / "z.png") is None


def test_require_photos_names_the_folder_and_the_minimum(tmp_path):
    with pytest.raises(InputError, match="holds no photos"):
        require_photos(list_images(tmp_path))
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "a.png")
    require_photos(list_images(tmp_path), minimum=1)
    with pytest.raises(InputError, match="is the only photo .* needs at least 2"):
        require_photos(list_images(tmp_path))
    Image.fromarray(object_array(40, 40, (5, 30, 5, 30))).save(tmp_path / "b.png")
    with pytest.raises(InputError, match="holds 2 photos; at least 3 are needed"):
        require_photos(list_images(tmp_path), minimum=3)
