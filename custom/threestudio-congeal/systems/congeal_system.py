"""threestudio system `congeal-system`: textual inversion (y*) then MVDream SDS of the canonical NeRF, one run.

    python launch.py --config configs/congeal.yaml --train data.image_dir=photos/
    # steps [0, ti_steps): loss_ti on photo batches; [ti_steps, max_steps): loss_sds on multiview camera batches
    # trial dir: learned_embeds.safetensors, ckpts/, configs/parsed.yaml, save/canonical.safetensors, save/*.mp4

A thin adapter: stage 2's logic (stage switch, y*, DDP sync, exact resume, SDS view groups, regularisers, pictures)
is the core package `congeal.shape` (its docstring gives the design); this class translates configs, batches, hooks.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

import threestudio
from threestudio.systems.base import BaseLift3DSystem
from threestudio.utils.base import Updateable, update_end_if_possible, update_if_possible
from threestudio.utils.misc import C as schedule_value, barrier

from congeal.canonical.grid import save_canonical
from congeal.inversion.embedding_files import save_learned_embeds
from congeal.shape import (batch_parts, generator_state, gradient_sync, last_checkpoint, model_sharing, regularisers,
                           stage_losses, stage_schedule, system_requirements, two_stage_run, updateable_children,
                           view_groups)
from congeal.shape.validation_grid import has_frames, image_grid, renders

from congeal.shape.field_baking import bake_canonical
from ..dependencies import require_file, require_mvdream_package, require_registered
from ..registry import register


@register("congeal-system")
class CongealSystem(BaseLift3DSystem):
    @dataclass
    class Config(BaseLift3DSystem.Config):
        # stage 1: textual inversion
        ti_steps: int = 1000  # global steps [0, ti_steps) train y*; 0 = skip (then learned_embeds_path is required)
        ti_guidance_type: str = "congeal-textual-inversion-guidance"
        ti_guidance: dict = field(default_factory=dict)
        ti_optimizer: dict = field(default_factory=lambda: {"lr": 2.0e-3, "weight_decay": 1.0e-2})  # y*'s group
        learned_embeds_path: Optional[str] = None  # use this y* file instead of / to initialise stage 1
        share_mvdream_model: bool = True  # TI with `denoiser: mvdream` reuses the SDS guidance's loaded model
        # stage 3 hand-off: the baked canonical written by the test step
        canonical_resolution: int = 128  # R of canonical.safetensors (R^3 geometry queries, chunked)
        canonical_chunk: int = 65536  # points per geometry query
        sdf_beta: float = 0.01  # sdf geometries: density = max_density * LaplaceCDF(-sdf / beta)
        sdf_max_density: float = 100.0
        visualize_samples: bool = False
        # stage 2 noise: False = each process's own generator (N processes = one process only statistically); True =
        # one timestep per step, one noise draw per view group from (seed, step, group) (congeal.shape.view_groups)
        sds_noise_by_group: bool = False
        seed: int = 0  # seed of the by-group SDS noise

    cfg: Config

    def configure(self) -> None:
        system_requirements.check_requirements(self.cfg, system_requirements.Checks(
            require_registered, require_mvdream_package, require_file))  # explained before anything is built
        super().configure()  # geometry, material, background, renderer
        self.guidance = threestudio.find(self.cfg.guidance_type)(self.cfg.guidance)
        self.schedule = stage_schedule.StageSchedule(int(self.cfg.ti_steps))
        ti = threestudio.find(self.cfg.ti_guidance_type)(self.cfg.ti_guidance) if self.cfg.ti_steps > 0 else None
        self._run = two_stage_run.TwoStageRun(self.schedule, ti)  # no nn.Module: TI's models stay out of ckpts
        self._share_mvdream_model()  # a no-op without stage 1
        if self.cfg.learned_embeds_path:
            self._run.load_file(self.cfg.learned_embeds_path)
        self.prompt_processor = self.prompt_utils = None
        self.sds_ready, self._logged_stage, self._children = False, None, None

    def _share_mvdream_model(self) -> None:
        model_sharing.share_mvdream_model(self.ti_guidance, getattr(self.guidance, "model", None),
                                          self.cfg.share_mvdream_model, threestudio.warn, threestudio.info)

    @property
    def ti_guidance(self) -> Optional[Any]:
        return self._run.ti_guidance if getattr(self, "_run", None) is not None else None

    def configure_optimizers(self):
        out = super().configure_optimizers()
        params = self._run.rows()
        if params:
            out["optimizer"].add_param_group({"params": params, "name": "congeal_ti", **dict(self.cfg.ti_optimizer)})
        return out

    def stage_of(self, global_step: int) -> str:
        return self.schedule.stage_of(global_step)

    @property
    def stage(self) -> str:
        return self.schedule.stage_of(self.true_global_step)

    @property
    def sds_step(self) -> int:
        return self.schedule.sds_step(self.true_global_step)

    def C(self, value: Any) -> float:
        return schedule_value(value, self.true_current_epoch, self.sds_step)

    def current_y_star(self) -> Dict[str, torch.Tensor]:  # {token: float32 [n, dim]} on the CPU
        return self._run.current_y_star()

    def enter_sds(self) -> None:
        """Freeze y*, hand it over through learned_embeds.safetensors, build the prompt processor (once)."""
        if self.sds_ready:
            return
        trial = os.path.dirname(self._save_dir) if self._save_dir is not None else None
        path = self._run.hand_over(trial, self.cfg.learned_embeds_path, os.getcwd(), self.global_rank, barrier)
        # building it may load a text encoder (random init) or find the cache: neither may move the SDS noise
        with generator_state.preserved_generators(self.device):
            self.prompt_processor = threestudio.find(self.cfg.prompt_processor_type)(
                {**dict(self.cfg.prompt_processor), "learned_embeds_path": path})
            self.prompt_utils = self.prompt_processor()
        self._children, self.sds_ready = None, True  # (the prompt processor is a new Updateable attribute)
        threestudio.info(f"congeal: stage 2 (SDS) from step {self.true_global_step}; y* in {path}")

    def _updateable(self) -> List[Any]:  # threestudio's walk, over children found once (SDS overhead budget 2 %)
        if getattr(self, "_children", None) is None:  # also called from BaseSystem.__init__, before configure()
            self._children = updateable_children.updateable_names(self, lambda v: isinstance(v, Updateable))
        return [c for c in (getattr(self, name, None) for name in self._children) if isinstance(c, Updateable)]

    def do_update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        for child in self._updateable():
            child.do_update_step(epoch, global_step, on_load_weights=on_load_weights)
        self.update_step(epoch, global_step, on_load_weights=on_load_weights)

    def do_update_step_end(self, epoch: int, global_step: int) -> None:
        for child in self._updateable():
            child.do_update_step_end(epoch, global_step)
        self.update_step_end(epoch, global_step)

    def on_train_batch_start(self, batch, batch_idx, unused=0):
        world = gradient_sync.world_size()  # generators restored here, not at load: the data loader draws from them
        self._run.restore_pending_generators(self.global_rank, world, self.device, threestudio.warn)
        self.preprocess_data(batch, "train")
        self.dataset = self.trainer.train_dataloader.dataset
        self.schedule.show_photos(self.dataset, self.true_global_step)
        update_if_possible(self.dataset, self.true_current_epoch, self.sds_step)  # SDS, renderer, cameras: SDS steps
        self.do_update_step(self.true_current_epoch, self.sds_step)
        update_if_possible(self.ti_guidance, self.true_current_epoch, self.true_global_step)  # TI: global steps
        gradient_sync.set_ddp_sync(getattr(self, "_trainer", None), self.stage)
        if self.stage == "sds":
            self.enter_sds()

    def on_train_start(self) -> None:
        self.schedule.number_batches(getattr(getattr(self.trainer, "train_dataloader", None), "dataset", None))
        last_checkpoint.keep_writing_last_checkpoint(self.trainer)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # not only at train start: Lightning >= 2.1 fetches the first batch before on_train_start
        self.schedule.number_batches(getattr(getattr(self.trainer, "datamodule", None), "train_dataset", None))
        self._run.shard(self.global_rank, gradient_sync.world_size())

    def on_after_backward(self) -> None:
        self._run.average_gradients(self.true_global_step, gradient_sync.world_size())

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.dataset = self.trainer.train_dataloader.dataset
        update_end_if_possible(self.dataset, self.true_current_epoch, self.sds_step)
        self.do_update_step_end(self.true_current_epoch, self.sds_step)

    def _eval_batch_start(self, batch: Dict[str, Any], stage: str, loaders: Any) -> None:
        self.preprocess_data(batch, stage)
        self.dataset = loaders.dataset
        update_if_possible(self.dataset, self.true_current_epoch, self.sds_step)
        self.do_update_step(self.true_current_epoch, self.sds_step)

    def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._eval_batch_start(batch, "validation", self.trainer.val_dataloaders)

    def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._eval_batch_start(batch, "test", self.trainer.test_dataloaders)

    def on_predict_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._eval_batch_start(batch, "predict", self.trainer.predict_dataloaders)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self._run.write_checkpoint(checkpoint, self.device, gradient_sync.world_size())  # every rank saves

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._run.read_checkpoint(checkpoint, threestudio.warn)

    def forward(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return self.renderer(**batch_parts.camera_part(batch))

    def training_step(self, batch, batch_idx):
        loss = self._ti_step(batch) if self.stage == "ti" else self._sds_step(batch)
        if self._logged_stage != self.stage:  # once per stage: Lightning re-reports it at every later step
            self.log("train/stage", self.schedule.stage_flag(self.true_global_step), prog_bar=True)
            self._logged_stage = self.stage
        return {"loss": loss}

    def _ti_step(self, batch: Dict[str, Any]) -> torch.Tensor:
        out = self.ti_guidance(*batch_parts.photo_part(batch))
        scalars = stage_losses.scalar_values(out, "train/")
        # straight to the loggers: self.log() would re-report loss_ti through the whole SDS stage (one endless epoch)
        for logger in self.loggers:
            logger.log_metrics(scalars, step=self.global_step)
        if "train/loss_ti" in scalars:
            self.log("train/loss_ti", scalars["train/loss_ti"], prog_bar=True, logger=False)
        return stage_losses.weighted_sum(out, lambda key: float(self.cfg.loss.get(key, 1.0)))

    def _sds_step(self, batch: Dict[str, Any]) -> torch.Tensor:
        cameras = batch_parts.camera_part(batch)
        out = self.renderer(**cameras)
        terms = view_groups.run_guidance(self.guidance, self.prompt_utils, out["comp_rgb"], cameras,
                                         self.cfg.sds_noise_by_group, self.cfg.seed, self.true_global_step,
                                         self.global_rank, self.device)
        terms.update(regularisers.sds_regularisers(out, lambda key: self.C(self.cfg.loss.get(key, 0.0))))
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss_sds")
        # lambda_ti is a stage-1 weight: its (constant) value is in configs/parsed.yaml
        self.log_dict({f"train_params/{k}": self.C(v) for k, v in self.cfg.loss.items() if k != "lambda_ti"})
        return stage_losses.weighted_sum(terms, lambda key: self.C(self.cfg.loss[key]))

    def validation_step(self, batch, batch_idx):
        if renders(batch, self.stage):
            self.save_image_grid(f"it{self.true_global_step}-{batch['index'][0]}.png", image_grid(self(batch)),
                                 name="validation_step", step=self.true_global_step)

    def on_validation_epoch_end(self):
        pass

    def test_step(self, batch, batch_idx):
        if "rays_o" in batch:
            self.save_image_grid(f"it{self.true_global_step}-test/{batch['index'][0]}.png", image_grid(self(batch)),
                                 name="test_step", step=self.true_global_step)

    def on_test_epoch_end(self):
        if self._save_dir is None:
            return
        name = f"it{self.true_global_step}-test"
        if has_frames(self.get_save_path(name)):
            self.save_img_sequence(name, name, r"(\d+)\.png", save_format="mp4", fps=30, name="test",
                                   step=self.true_global_step)
        if self.global_rank == 0:  # one writer; the others' copies are the same bytes
            path = os.path.join(self._save_dir, "canonical.safetensors")
            save_canonical(path, self.bake_canonical())
            threestudio.info(f"congeal: canonical written to {path}")
            if self._run.y_star is not None or self.ti_guidance is not None:
                save_learned_embeds(os.path.join(os.path.dirname(self._save_dir), "learned_embeds.safetensors"),
                                    self.current_y_star())

    def bake_canonical(self, resolution: Optional[int] = None) -> Any:
        """The trained geometry and material on an R^3 grid -> `congeal.canonical.grid.Canonical` (no grad)."""
        return bake_canonical(self.geometry, self.material, int(resolution or self.cfg.canonical_resolution),
                              chunk=self.cfg.canonical_chunk, sdf_beta=self.cfg.sdf_beta,
                              sdf_max_density=self.cfg.sdf_max_density)
