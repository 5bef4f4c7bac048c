"""The two parts of a training batch: the photos textual inversion reads, the cameras the renderer and SDS read.

    cameras = camera_part(batch)          # every key but the photo keys
    images, masks = photo_part(batch)     # an error that names the data module when the photos are missing

The image-collection data module adds the photo keys to the camera batches of stage 1; the renderer and the SDS
guidance must never see them.
"""
from typing import Any, Dict, Optional, Tuple

# batch keys the data module adds for textual inversion
IMAGE_KEYS = ("images", "masks", "image_index", "names")


def camera_part(batch: Dict[str, Any]) -> Dict[str, Any]:
    """Args: batch: a training batch. Returns: the batch without the photo keys (what the renderer takes)."""
    return {k: v for k, v in batch.items() if k not in IMAGE_KEYS}


def photo_part(batch: Dict[str, Any]) -> Tuple[Any, Optional[Any]]:
    """The photos of a stage-1 batch.

    Args:
        batch: a training batch.
    Returns:
        (images, masks or None).
    Raises:
        RuntimeError: the batch has no photos (the run's data module is not the image-collection one).
    """
    if "images" not in batch:
        raise RuntimeError("textual-inversion step without photos: data_type must be "
                           "congeal-image-collection-datamodule (it adds 'images' and 'masks' to the batch)")
    return batch["images"], batch.get("masks")
