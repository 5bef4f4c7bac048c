"""`congeal-image-collection-datamodule`: photos + masks batches from a folder, on the trainer's device."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def write_collection(folder: Path, n: int = 3, size: int = 48) -> Path:
    """RGBA photos: a coloured disc (alpha = disc) on transparent background, different sizes and colours."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = size + 8 * i, size
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.3 * min(h, w)) ** 2
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., i % 3] = 200
        rgba[..., 3] = disc * 255
        Image.fromarray(rgba, "RGBA").save(folder / f"photo_{i}.png")
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    return write_collection(tmp_path / "photos")


def make_dm(threestudio, photos, **extra):
    cfg = {"image_dir": str(photos), "image_size": 32, "batch_size": 5, "seed": 1, **extra}
    dm = threestudio.find("congeal-image-collection-datamodule")(cfg)
    dm.setup("fit")
    return dm


def test_train_batch_has_images_and_masks(extension_via_launch, threestudio, photos):
    dm = make_dm(threestudio, photos)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (5, 3, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["masks"].shape == (5, 1, 32, 32)
    assert set(torch.unique(batch["masks"]).tolist()) <= {0.0, 1.0}
    assert 0.0 <= float(batch["images"].min()) and float(batch["images"].max()) <= 1.0
    index = batch["image_index"]
    assert index.dtype == torch.long and int(index.min()) >= 0 and int(index.max()) < 3
    # the batch is exactly the loader's crops (same photo -> same pixels)
    collection = dm.collection
    assert torch.equal(batch["images"], collection.images[index].float())
    # the object sits in the middle of each crop: mask coverage well between 0 and 1
    coverage = batch["masks"].mean(dim=(1, 2, 3))
    assert bool(((coverage > 0.2) & (coverage < 0.9)).all()), coverage


def test_same_seed_same_batches_other_seed_differs(extension_via_launch, threestudio, photos):
    def draws(seed):
        loader = make_dm(threestudio, photos, seed=seed).train_dataloader()
        return [batch["image_index"] for _, batch in zip(range(4), loader)]

    a, b, c = draws(3), draws(3), draws(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_eval_loaders_visit_every_photo_once(extension_via_launch, threestudio, photos):
    dm = make_dm(threestudio, photos)
    seen = [int(b["index"][0]) for b in dm.val_dataloader()]
    assert seen == [0, 1, 2]


def test_batches_reach_the_trainers_device(extension_via_launch, threestudio, photos):
    """Lightning moves the batch to the module's device; the data module must not pin one (CPU here)."""
    import pytorch_lightning as pl

    seen = {}

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            seen["images"], seen["masks"] = batch["images"].device, batch["masks"].device
            return (self.w * batch["images"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Probe(), datamodule=make_dm(threestudio, photos))
    assert seen["images"] == seen["masks"] == torch.device("cpu")


def test_camera_module_rides_along(extension_via_launch, threestudio, photos, mvdream_available):
    if not mvdream_available:
        pytest.skip("threestudio-mvdream (custom/threestudio-mvdream + the mvdream package) is not available")
    camera = {"batch_size": 4, "n_view": 4, "width": 16, "height": 16, "n_val_views": 2, "n_test_views": 5,
              "eval_height": 16, "eval_width": 16}
    dm = make_dm(threestudio, photos, camera_data_type="mvdream-random-multiview-camera-datamodule", camera=camera)
    batch = next(iter(dm.train_dataloader()))
    assert batch["rays_o"].shape == (4, 16, 16, 3) and batch["c2w"].shape == (4, 4, 4)
    assert batch["images"].shape == (5, 3, 32, 32)
    dm.train_dataset.include_images = False  # the system drops photos once SDS starts
    assert "images" not in dm.train_dataset.collate(None)
    dm.setup("test")
    assert len(dm.test_dataloader()) == 5  # the camera module's turntable


def test_camera_batches_of_three_are_refused(extension_via_launch, threestudio, photos, mvdream_available):
    """threestudio's camera code calls torch.cross without dim: a batch of exactly 3 crosses along the batch axis."""
    from congeal.common.errors import InputError

    if not mvdream_available:  # the camera data module named below is threestudio-mvdream's
        pytest.skip("threestudio-mvdream (custom/threestudio-mvdream + the mvdream package) is not available")

    with pytest.raises(InputError, match="n_test_views.*3"):
        threestudio.find("congeal-image-collection-datamodule")(
            {"image_dir": str(photos), "camera_data_type": "mvdream-random-multiview-camera-datamodule",
             "camera": {"n_test_views": 3}})


def test_unknown_camera_module_is_explained(extension_via_launch, threestudio, photos):
    deps = __import__("sys").modules["threestudio-congeal.dependencies"]
    with pytest.raises(deps.MissingDependencyError, match="mvdream-nope.*threestudio-mvdream"):
        threestudio.find("congeal-image-collection-datamodule")(
            {"image_dir": str(photos), "camera_data_type": "mvdream-nope"})


def test_bad_folder_raises_input_error(extension_via_launch, threestudio, tmp_path):
    from congeal.common.errors import InputError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        make_dm(threestudio, tmp_path / "empty")
    with pytest.raises(InputError, match="image_dir"):
        threestudio.find("congeal-image-collection-datamodule")({}).setup("fit")
