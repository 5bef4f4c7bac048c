"""The renderer never sees the photo keys; a stage-1 batch without photos names the data module to use."""
import pytest

from congeal.shape.batch_parts import camera_part, photo_part


def test_cameras_without_photos_and_photos_with_optional_masks():
    batch = {"rays_o": 1, "rays_d": 2, "images": 3, "masks": 4, "image_index": 5, "names": 6}
    assert camera_part(batch) == {"rays_o": 1, "rays_d": 2}
    assert photo_part(batch) == (3, 4) and photo_part({"images": 3}) == (3, None)
    with pytest.raises(RuntimeError, match="congeal-image-collection-datamodule"):
        photo_part({"rays_o": 1})
