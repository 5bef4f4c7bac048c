"""threestudio data module `congeal-registration-datamodule`: one train item per chunk of photos to register.

    data_type: congeal-registration-datamodule
    data: {image_dir: photos/, chunk_size: 8}

The registration system does the work; this module only tells Lightning how many steps there are (one per chunk)
so that progress bars, checkpoints (`every_n_train_steps: 1`) and DDP sharding (Lightning's distributed sampler
gives each rank its share of the items) work as for any threestudio run. The system registers "the next pending
chunk of this rank" at every step, so a resumed or re-sharded run never repeats or skips work whatever items a
rank is handed. Validation/test/predict have a single item (re-render overlays / re-export outputs).
"""
import math
from dataclasses import dataclass

import pytorch_lightning as pl
from torch.utils.data import DataLoader
from threestudio.utils.config import parse_structured

from ..registry import register


@dataclass
class RegistrationDataModuleConfig:
    image_dir: str = ""  # folder of photos to register (required)
    mask: str = "auto"  # mask source (congeal.io.collection: auto, alpha, file, white-background, sam)
    chunk_size: int = 8  # photos per chunk: the unit of a training step, of resumption and of DDP sharding


def _count_photos(image_dir: str) -> int:
    from congeal.common.errors import InputError
    from congeal.io.listing import list_images

    if not image_dir:
        raise InputError(None, "data.image_dir is not set", "add data.image_dir=<folder of photos> to the command")
    return len(list_images(image_dir).images)


@register("congeal-registration-datamodule")
class RegistrationDataModule(pl.LightningDataModule):
    cfg: RegistrationDataModuleConfig

    def __init__(self, cfg=None) -> None:
        super().__init__()
        self.cfg = parse_structured(RegistrationDataModuleConfig, cfg)

    def setup(self, stage=None) -> None:
        self.num_chunks = max(1, math.ceil(_count_photos(self.cfg.image_dir) / max(1, self.cfg.chunk_size)))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(list(range(self.num_chunks)), batch_size=1, shuffle=False)

    def _single(self) -> DataLoader:
        return DataLoader([0], batch_size=1)

    def val_dataloader(self) -> DataLoader:
        return self._single()

    def test_dataloader(self) -> DataLoader:
        return self._single()

    def predict_dataloader(self) -> DataLoader:
        return self._single()
