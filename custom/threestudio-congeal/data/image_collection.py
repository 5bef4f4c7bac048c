"""threestudio data module `congeal-image-collection-datamodule`: batches of photos + foreground masks.

    data_type: congeal-image-collection-datamodule
    data: {image_dir: photos/, mask: auto, image_size: 256, batch_size: 4}
    # train batch: {"images" [B,3,S,S], "masks" [B,1,S,S], "image_index" [B], ...camera keys when `camera_data_type`}

Built on `congeal.io.collection.load_collection` (alpha / mask files / automatic masks, square crops at the working size).
Train batches are sampled at random with replacement (an endless iterable, like threestudio's camera data modules).
Batch number k is a function of (seed, k) alone: its photos come from a generator seeded with (seed, k), and the
camera module's batch is drawn with the host's random generators (torch CPU, python, numpy) set from (seed, k) and
put back afterwards. So:
* resume is exact: the checkpoint holds the number of batches used (`state_dict`), and Lightning's prefetching of
  the next batch draws nothing from the generators the training step uses;
* several processes (DDP): every rank draws the whole batch of all ranks (data.batch_size and camera batch_size
  are per process, as in threestudio) and keeps its own slice, so the union over ranks is the batch one process
  with `world_size` x those batch sizes trains on. With `camera_data_type` set (e.g. `mvdream-random-multiview-camera-datamodule`,
configured by `camera`), every train batch also carries that module's camera batch and validation/test use its
turntable views: the congealing system needs photos for textual inversion and cameras for SDS from one loader.
Tensors are made on the CPU; Lightning moves the batch to the trainer's device (no device is hard-coded here).
"""
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

import pytorch_lightning as pl
import threestudio
from threestudio.utils.base import Updateable, update_end_if_possible, update_if_possible
from threestudio.utils.config import parse_structured

from congeal.shape.stream_seeds import stream_seed as batch_seed  # one home for random-stream seeds

from ..dependencies import require_registered
from ..registry import register


@dataclass
class ImageCollectionDataModuleConfig:
    image_dir: str = ""
    """Folder of photos (required); masks from alpha, masks/<stem>.png, <stem>_mask.png or auto."""
    mask: str = "auto"
    """`load_collection`'s mask source: "auto", "alpha", "file", "white-background", "sam"."""
    image_size: int = 256
    """Working size S: each photo is cropped square around its mask and resized to S x S."""
    batch_size: int = 4
    """Photos per train batch (sampled with replacement, so it may exceed the photo count)."""
    seed: int = 0
    """Seed of the photo sampler."""
    loader: dict = field(default_factory=dict)
    """Extra keyword arguments for `load_collection`."""
    camera_data_type: Optional[str] = None
    """Registered camera data module whose batches ride along (SDS stage)."""
    camera: dict = field(default_factory=dict)
    """That data module's config."""


@contextlib.contextmanager
def seeded_host_generators(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator, python's `random` and numpy's global generator seeded from `seed`,
    and put all three back afterwards (CUDA generators are not touched: camera batches are made on the CPU)."""
    torch_state, python_state, numpy_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class ImageBatchSampler:
    """Draws random photo batches from an `ImageCollection` held in memory.

    Args:
        collection: `ImageCollection` with `names`, `images` [N,3,S,S], `masks` [N,1,S,S].
        batch_size: photos per batch (per process).
        seed: seed of the batch stream.
    """

    def __init__(self, collection: Any, batch_size: int, seed: int = 0) -> None:
        self.collection = collection
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def sample_at(self, index: int, rank: int = 0, world_size: int = 1) -> Dict[str, Any]:
        """Batch number `index` (rank `rank`'s slice of the whole batch of `world_size` ranks).

        Returns {"images" [B,3,S,S] float in [0,1], "masks" [B,1,S,S] float {0,1}, "image_index" [B] long}.
        """
        n = self.collection.images.shape[0]
        generator = torch.Generator().manual_seed(batch_seed(self.seed, index, "photos"))
        index_all = torch.randint(0, n, (self.batch_size * world_size,), generator=generator)
        return self.take(index_all[rank * self.batch_size:(rank + 1) * self.batch_size])

    def take(self, index: Int[Tensor, " B"]) -> Dict[str, Any]:
        """The batch of photos `index`."""
        return {
            "images": self.collection.images[index].float(),
            "masks": self.collection.masks[index].float(),
            "image_index": index,
        }


class CongealTrainDataset(IterableDataset, Updateable):
    """Endless train stream: a photo batch, plus the camera dataset's batch when there is one.

    `include_images` lets the system drop the photos once textual inversion is over (they are not used by SDS).
    Step updates are forwarded to the camera dataset (the system passes its SDS-local step, so camera resolution
    milestones count SDS steps). `next_batch` is the number of the batch the next `collate` makes; with
    `world_size` > 1 the camera dataset draws the whole batch of all ranks and this rank keeps its slice.
    """

    def __init__(self, sampler: ImageBatchSampler, camera_dataset: Optional[Any] = None, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        self.sampler = sampler
        self.camera_dataset = camera_dataset
        self.include_images = True
        self.next_batch = 0
        self.rank, self.world_size = int(rank), int(world_size)
        # set by congeal-system (its ti_steps): batch k then draws cameras at SDS step max(0, k - first_sds_step)
        # and carries photos only while k < first_sds_step, whenever Lightning happens to fetch it
        self.first_sds_step: Optional[int] = None
        self._epoch = 0

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield {}

    # explicit instead of Updateable's scan over every attribute: this runs before and after each step
    def do_update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        self._epoch = epoch
        update_if_possible(self.camera_dataset, epoch, global_step)

    def do_update_step_end(self, epoch: int, global_step: int) -> None:
        update_end_if_possible(self.camera_dataset, epoch, global_step)

    def collate(self, _batch: Any) -> Dict[str, Any]:
        index, self.next_batch = self.next_batch, self.next_batch + 1
        out: Dict[str, Any] = {}
        if self.first_sds_step is not None:
            self.include_images = index < self.first_sds_step
            update_if_possible(self.camera_dataset, self._epoch, max(0, index - self.first_sds_step))
        if self.camera_dataset is not None:
            with seeded_host_generators(batch_seed(self.sampler.seed, index, "cameras")):
                cameras = self.camera_dataset.collate(_batch)
            out.update(self._own_slice(cameras))
        if self.include_images or self.camera_dataset is None:
            out.update(self.sampler.sample_at(index, self.rank, self.world_size))
        return out

    def _own_slice(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """This rank's rows of every tensor whose leading dim is the whole batch (ints like height stay)."""
        if self.world_size == 1:
            return batch
        whole = int(self.camera_dataset.batch_size)
        if whole % self.world_size:
            raise RuntimeError(f"camera batch of {whole} does not split over {self.world_size} processes")
        n = whole // self.world_size
        return {k: v[self.rank * n:(self.rank + 1) * n] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == whole
                else v for k, v in batch.items()}


class ImageEvalDataset(Dataset):
    """Every photo once, in collection order (validation/test without a camera module)."""

    def __init__(self, sampler: ImageBatchSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return int(self.sampler.collection.images.shape[0])

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Any) -> Dict[str, Any]:
        batch = self.sampler.take(torch.as_tensor(indices, dtype=torch.long))
        batch["index"] = batch["image_index"]
        return batch


@register("congeal-image-collection-datamodule")
class ImageCollectionDataModule(pl.LightningDataModule):
    """Lightning data module over a folder of photos (see the module docstring for the batch layout)."""

    cfg: ImageCollectionDataModuleConfig

    def __init__(self, cfg: Optional[Any] = None) -> None:
        super().__init__()
        self.cfg = parse_structured(ImageCollectionDataModuleConfig, cfg or {})
        self.collection = None
        self.camera_module: Optional[pl.LightningDataModule] = None
        if self.cfg.camera_data_type:
            require_registered(self.cfg.camera_data_type, "data.camera_data_type")
            _refuse_batches_of_three(self.cfg.camera)
            self.camera_module = threestudio.find(self.cfg.camera_data_type)(self.cfg.camera)

    def load(self) -> Any:
        """Load the collection once (raises congeal.common.errors.InputError for unusable folders)."""
        if self.collection is None:
            from congeal.common.errors import InputError
            from congeal.io.collection import load_collection

            if not self.cfg.image_dir:
                raise InputError(None, "data.image_dir is empty", "set data.image_dir=<folder of photos>")
            self.collection = load_collection(
                self.cfg.image_dir, size=self.cfg.image_size, mask=self.cfg.mask, **dict(self.cfg.loader)
            )
            threestudio.info(
                f"congeal: {len(self.collection.names)} photos from {self.cfg.image_dir} at {self.cfg.image_size}px"
            )
        return self.collection

    def _rank_and_world(self) -> tuple:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def setup(self, stage: Optional[str] = None) -> None:
        sampler = ImageBatchSampler(self.load(), self.cfg.batch_size, self.cfg.seed)
        rank, world = self._rank_and_world()
        if self.camera_module is not None:
            # every rank draws the cameras of all ranks (and keeps its slice): the per-process batch size x world
            per_process = self.cfg.camera.get("batch_size", getattr(self.camera_module.cfg, "batch_size", 1))
            self.camera_module.cfg.batch_size = ([int(b) * world for b in per_process]
                                                 if isinstance(per_process, (list, tuple)) or
                                                 hasattr(per_process, "__len__") else int(per_process) * world)
            self.camera_module.setup(stage)
        if stage in (None, "fit"):
            camera_train = getattr(self.camera_module, "train_dataset", None)
            self.train_dataset = CongealTrainDataset(sampler, camera_train, rank, world)
        self.eval_dataset = ImageEvalDataset(sampler)

    # ---- exact resume: the number of train batches used so far ---------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None or not hasattr(self, "train_dataset"):
            return {}
        # batches used = optimizer steps x accumulation (the dataset's own counter runs ahead: Lightning prefetches)
        return {"congeal_batches_used": int(trainer.global_step) * int(trainer.accumulate_grad_batches)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "congeal_batches_used" in state and hasattr(self, "train_dataset"):
            self.train_dataset.next_batch = int(state["congeal_batches_used"])

    def prepare_data(self) -> None:
        pass

    def _loader(self, dataset: Any, batch_size: Optional[int]) -> DataLoader:
        # num_workers=0: update_step changes dataset attributes at run time, as in threestudio's data modules
        return DataLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=dataset.collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, None)

    def val_dataloader(self) -> DataLoader:
        if self.camera_module is not None:
            return self.camera_module.val_dataloader()
        return self._loader(self.eval_dataset, 1)

    def test_dataloader(self) -> DataLoader:
        if self.camera_module is not None:
            return self.camera_module.test_dataloader()
        return self._loader(self.eval_dataset, 1)

    def predict_dataloader(self) -> DataLoader:
        if self.camera_module is not None:
            return self.camera_module.predict_dataloader()
        return self._loader(self.eval_dataset, 1)



def _refuse_batches_of_three(camera: Any) -> None:
    """threestudio's camera code calls `torch.cross(a, b)` without `dim`: with exactly 3 cameras in a batch it
    crosses along the batch axis and silently builds wrong cameras. Refuse those counts up front."""
    from congeal.common.errors import InputError

    for key in ("batch_size", "n_val_views", "n_test_views", "eval_batch_size"):
        value = camera.get(key)
        values = value if isinstance(value, (list, tuple)) or hasattr(value, "__len__") else [value]
        if any(v == 3 for v in values if v is not None):
            raise InputError(None, f"data.camera.{key} = {value}: threestudio's camera code builds wrong cameras "
                             "for a batch of exactly 3 (torch.cross without dim)", "use any other count, e.g. 4")
