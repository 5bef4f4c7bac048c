"""threestudio system `congeal-system`: textual inversion (y*) then MVDream SDS of the canonical NeRF, one run.

    python launch.py --config configs/congeal.yaml --train data.image_dir=photos/
    # steps [0, ti_steps): loss_ti on photo batches; [ti_steps, max_steps): loss_sds on multiview camera batches
    # trial dir: learned_embeds.safetensors, ckpts/, configs/parsed.yaml, save/canonical.safetensors, save/*.mp4

How the two stages share one Lightning run (the design decision):
* One training loop, one optimizer. `trainer.global_step` alone decides the stage: steps below `ti_steps` run the
  textual-inversion guidance on photos, the rest run SDS with the MVDream guidance on camera batches. Lightning
  checkpoints the global step, so a checkpoint from either stage resumes in that stage with no extra bookkeeping,
  and a progress bar / TensorBoard / CSV log cover the whole run (`train/loss_ti`, then `train/loss_sds`;
  `train/stage` is 0 or 1).
* The optimizer has the config's NeRF parameter groups plus one group `congeal_ti` holding y*'s rows. A parameter
  without a gradient is skipped by torch's optimizers, so each stage updates only its own parameters, and the
  optimizer state of both (Adam moments, step counts) travels in every checkpoint.
* Schedules of the SDS part (guidance min/max step, camera resolution milestones, loss weights) see the
  *SDS-local* step `global_step - ti_steps`, so threestudio-mvdream's numbers (e.g. 64 -> 256 px at 5000) are
  reused unchanged.
* y* itself is saved in every checkpoint (`congeal_y_star`), and copied back into the guidance's rows on load.
  Entering SDS (fresh or resumed) writes `learned_embeds.safetensors` into the trial directory and builds the
  prompt processor from it, so the SDS stage never depends on the TI guidance's in-memory state.
Why not two runs: the user asked for one command with progress for both; one run also keeps one trial dir and one
resume story. Why not two optimizers (manual optimisation): threestudio's mixed precision, gradient clipping and
schedulers all assume automatic optimisation.

Several processes (DDP) and exact resume:
* y*'s rows stay out of the nn.Module (its frozen text encoder and UNet must not go into checkpoints), so DDP does
  not see them: during stage 1 DDP's own gradient sync is off (nothing it holds trains then) and y*'s gradient is
  averaged over ranks explicitly after each backward. The TI guidance draws the random numbers of every rank's
  photos from one generator and keeps its slice, and the data module does the same for photos and cameras, so N
  processes train exactly what one process with N x the batch would (see `sds_noise_by_group` for stage 2's noise).
* Rank 0 alone writes learned_embeds.safetensors (and the prompt cache); the others wait at a barrier, then read.
* Checkpoints hold every rank's random generators (torch CPU/CUDA, python, numpy), the TI generator, and (through
  the data module) the number of batches used, so a resumed run draws what the uninterrupted run would have drawn.

Missing pieces are explained at start (`dependencies.require_registered`): no threestudio-mvdream in `custom/`, no
`mvdream` package, a `ckpt_path` that names no file.
"""
import contextlib
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist

import threestudio
from threestudio.systems.base import BaseLift3DSystem
from threestudio.utils.base import Updateable, update_end_if_possible, update_if_possible
from threestudio.utils.misc import C as schedule_value
from threestudio.utils.misc import barrier
from threestudio.utils.ops import binary_cross_entropy, dot

from ..dependencies import require_file, require_mvdream_package, require_registered
from ..registry import register

# batch keys the data module adds for textual inversion; the renderer and SDS guidance never see them
IMAGE_KEYS = ("images", "masks", "image_index", "names")


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
        # stage 2 noise: False = the SDS guidance draws its timestep and noise from each process's torch generator
        # (threestudio's way: N processes are statistically, not sample for sample, one process with N x the
        # batch). True = one timestep per step and one noise draw per view group, seeded from (seed, step, group):
        # N processes then train exactly what one process would, at the cost of one guidance call per view group
        sds_noise_by_group: bool = False
        seed: int = 0  # seed of the by-group SDS noise

    cfg: Config

    # ---------------------------------------------------------------- set-up
    def configure(self) -> None:
        self._check_dependencies()
        super().configure()  # geometry, material, background, renderer
        self.guidance = threestudio.find(self.cfg.guidance_type)(self.cfg.guidance)
        # hidden from nn.Module registration: its frozen models must not go into checkpoints
        self._ti: List[Any] = []
        if self.cfg.ti_steps > 0:
            self._ti.append(threestudio.find(self.cfg.ti_guidance_type)(self.cfg.ti_guidance))
            self._share_mvdream_model()
            if self.cfg.learned_embeds_path:
                self._load_rows_from_file(self.cfg.learned_embeds_path)
        self._y_star: Optional[Dict[str, torch.Tensor]] = None
        if self.cfg.learned_embeds_path:
            from congeal.inversion.embedding_files import load_learned_embeds

            self._y_star = load_learned_embeds(self.cfg.learned_embeds_path)
        self.prompt_processor = None
        self.prompt_utils = None
        self._children: Optional[List[str]] = None
        self.sds_ready = False
        self._logged_stage: Optional[str] = None
        self._pending_rng: Optional[Dict[str, Any]] = None  # generators to restore at the first resumed step

    def _share_mvdream_model(self) -> None:
        """Let textual inversion use the MVDream model the SDS guidance already loaded (single-view mode).

        Only when the TI guidance would load MVDream itself (`ti_guidance.denoiser: mvdream`): one copy of the
        weights in memory, and y* is fitted to exactly the UNet that SDS will condition on.
        """
        ti = self.ti_guidance
        model = getattr(self.guidance, "model", None)
        wants_mvdream = getattr(getattr(ti, "cfg", None), "denoiser", None) == "mvdream"
        if not (self.cfg.share_mvdream_model and wants_mvdream and model is not None
                and hasattr(ti, "share_mvdream_model")):
            return
        # the TI trainer casts its denoiser to its weight dtype: sharing must not turn SDS's model into bf16/fp16
        ti_dtype = getattr(getattr(ti, "trainer", None), "weight_dtype", None)
        model_dtype = next(model.parameters()).dtype
        if ti_dtype is not None and ti_dtype != model_dtype:
            threestudio.warn(f"congeal: not sharing the MVDream model with textual inversion (it would cast it to "
                             f"{ti_dtype}); MVDream is loaded twice. Set system.ti_guidance.half_precision_weights: "
                             "false to share it")
            return
        ti.share_mvdream_model(model)
        threestudio.info("congeal: textual inversion shares the SDS guidance's MVDream model")

    def _check_dependencies(self) -> None:
        cfg = self.cfg
        for field_name in ("geometry_type", "material_type", "background_type", "renderer_type",
                           "guidance_type", "prompt_processor_type"):
            require_registered(getattr(cfg, field_name), f"system.{field_name}")
        if cfg.ti_steps > 0:
            require_registered(cfg.ti_guidance_type, "system.ti_guidance_type")
        elif not cfg.learned_embeds_path:
            from congeal.common.errors import InputError

            raise InputError(None, "system.ti_steps is 0 and system.learned_embeds_path is not set",
                             "train y* (ti_steps > 0) or point learned_embeds_path at a learned_embeds.safetensors")
        if cfg.guidance_type == "congeal-mvdream-guidance":  # a subclass of threestudio-mvdream's guidance
            require_registered("mvdream-multiview-diffusion-guidance", "system.guidance_type (its parent class)")
        if "mvdream" in cfg.guidance_type:
            require_mvdream_package()
            require_file(cfg.guidance.get("ckpt_path"), "system.guidance.ckpt_path", "an MVDream checkpoint (.pt)")
        require_file(cfg.learned_embeds_path, "system.learned_embeds_path", "a learned_embeds.safetensors")

    @property
    def ti_guidance(self) -> Optional[Any]:
        return self._ti[0] if self._ti else None

    def ti_parameters(self) -> List[torch.nn.Parameter]:
        """y*'s trainable tensors in the TI guidance (its own `trainable_parameters()`, else those needing grad)."""
        guidance = self.ti_guidance
        if guidance is None:
            return []
        if hasattr(guidance, "trainable_parameters"):
            return list(guidance.trainable_parameters())
        return [p for p in guidance.parameters() if p.requires_grad]

    def configure_optimizers(self):
        out = super().configure_optimizers()
        params = self.ti_parameters()
        if params:
            out["optimizer"].add_param_group({"params": params, "name": "congeal_ti", **dict(self.cfg.ti_optimizer)})
        return out

    # ---------------------------------------------------------------- stages
    def stage_of(self, global_step: int) -> str:
        """'ti' for global steps below ti_steps, else 'sds'."""
        return "ti" if global_step < self.cfg.ti_steps else "sds"

    @property
    def stage(self) -> str:
        return self.stage_of(self.true_global_step)

    @property
    def sds_step(self) -> int:
        """The SDS-local step the SDS schedules see (0 throughout textual inversion)."""
        return max(0, self.true_global_step - self.cfg.ti_steps)

    def C(self, value: Any) -> float:
        return schedule_value(value, self.true_current_epoch, self.sds_step)

    def _trial_dir(self) -> Optional[str]:
        return os.path.dirname(self._save_dir) if self._save_dir is not None else None

    def current_y_star(self) -> Dict[str, torch.Tensor]:
        """{token: float32 [n_vectors, dim]} on the CPU: the live rows during TI, else the last snapshot."""
        if self.ti_guidance is not None:
            return {k: v.detach().float().cpu().clone() for k, v in self.ti_guidance.learned_embeds().items()}
        assert self._y_star is not None
        return self._y_star

    def _load_rows_from_file(self, path: str) -> None:
        from congeal.inversion.embedding_files import load_learned_embeds

        embeds = load_learned_embeds(path)
        self._copy_into_rows(list(embeds.values()), path)

    def _copy_into_rows(self, tensors: List[torch.Tensor], source: Optional[str] = None) -> None:
        from congeal.common.errors import InputError

        params = self.ti_parameters()
        shapes = [tuple(t.shape) for t in tensors]
        if shapes != [tuple(p.shape) for p in params]:
            wanted = [tuple(p.shape) for p in params]
            raise InputError(source, f"y* of shape {shapes} does not fit the TI guidance's {wanted}",
                             "use the same ti_guidance.n_vectors / text encoder as the run that wrote it")
        with torch.no_grad():
            for p, t in zip(params, tensors):
                p.copy_(t.to(p.device, p.dtype))

    def enter_sds(self) -> None:
        """Freeze y*, write learned_embeds.safetensors, build the prompt processor from it (once per process).

        Rank 0 writes the file; every rank waits at a barrier and then reads y* back from it, so all ranks
        condition SDS on the same bytes.
        """
        if self.sds_ready:
            return
        from congeal.inversion.embedding_files import load_learned_embeds, save_learned_embeds

        self._y_star = self.current_y_star()
        trial = self._trial_dir()
        path = self.cfg.learned_embeds_path
        if trial is not None or path is None:
            folder = trial if trial is not None else os.path.join(os.getcwd(), ".congeal")
            path = os.path.join(folder, "learned_embeds.safetensors")
            if self.global_rank == 0:
                save_learned_embeds(path, self._y_star)
            barrier()
            self._y_star = load_learned_embeds(path)
        pp_cfg = dict(self.cfg.prompt_processor)
        pp_cfg["learned_embeds_path"] = path
        # building it may load a text encoder (whose random init draws from torch's generator) or find the cache:
        # which one must not change the SDS noise, or a resumed run (cache present) would leave the straight path
        with self._preserved_generators():
            self.prompt_processor = threestudio.find(self.cfg.prompt_processor_type)(pp_cfg)
            self.prompt_utils = self.prompt_processor()
        self._children = None  # the prompt processor is a new Updateable attribute
        self.sds_ready = True
        threestudio.info(f"congeal: stage 2 (SDS) from step {self.true_global_step}; y* in {path}")

    # ---------------------------------------------------------------- step-dependent updates
    def _updateable_children(self) -> List[str]:
        """Names of the public attributes that are `Updateable` (found once; reset when one is added)."""
        if self._children is None:
            found = []
            for name in self.__dir__():
                # `dataset` (train, val or test in turn) is updated directly by the batch hooks
                if name.startswith("_") or name == "dataset" or isinstance(getattr(type(self), name, None), property):
                    continue
                try:
                    value = getattr(self, name)
                except Exception:  # attributes that cannot be read outside a trainer, as threestudio tolerates
                    continue
                if isinstance(value, Updateable):
                    found.append(name)
            self._children = found
        return self._children

    # the same walk as threestudio's Updateable (children first, then this system), over a cached list of
    # children: the generic walk reads every attribute of the LightningModule twice a step (SDS overhead budget 2 %)
    def do_update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        if getattr(self, "_children", None) is None:
            self._children = None  # called from BaseSystem.__init__ (load_weights) before configure() finished
        for name in self._updateable_children():
            child = getattr(self, name, None)
            if isinstance(child, Updateable):
                child.do_update_step(epoch, global_step, on_load_weights=on_load_weights)
        self.update_step(epoch, global_step, on_load_weights=on_load_weights)

    def do_update_step_end(self, epoch: int, global_step: int) -> None:
        for name in self._updateable_children():
            update_end_if_possible(getattr(self, name, None), epoch, global_step)
        self.update_step_end(epoch, global_step)

    def _update(self, dataset: Any) -> None:
        # TI parts count global steps; everything else (SDS guidance, renderer, cameras) counts SDS steps
        epoch, step = self.true_current_epoch, self.true_global_step
        sds_step = max(0, step - self.cfg.ti_steps)
        if hasattr(dataset, "include_images"):
            dataset.include_images = step < self.cfg.ti_steps
        update_if_possible(dataset, epoch, sds_step)
        self.do_update_step(epoch, sds_step)
        update_if_possible(self.ti_guidance, epoch, step)

    def on_train_batch_start(self, batch, batch_idx, unused=0):
        if self._pending_rng is not None:  # here, not at load: starting the data loader draws from torch's generator
            self._restore_generators(self._pending_rng)
            self._pending_rng = None
        self.preprocess_data(batch, "train")
        self.dataset = self.trainer.train_dataloader.dataset
        self._update(self.dataset)
        ddp = self._ddp_module()
        if ddp is not None:
            # stage 1 trains only y*, which DDP does not hold (its gradient is averaged in on_after_backward):
            # DDP's sync would wait for NeRF gradients that never come
            ddp.require_backward_grad_sync = self.stage != "ti"
        if self.stage == "sds":
            self.enter_sds()

    # ---------------------------------------------------------------- several processes
    def _world_size(self) -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def _ddp_module(self) -> Optional[torch.nn.parallel.DistributedDataParallel]:
        trainer = getattr(self, "_trainer", None)
        model = getattr(getattr(trainer, "strategy", None), "model", None) if trainer is not None else None
        return model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None

    def _number_batches_by_stage(self, dataset: Any) -> None:
        # batch k's cameras are drawn with the camera module set to batch k's own SDS step (Lightning prefetches
        # the next batch before this system's step hooks run, so the hooks alone would lag one batch behind, and
        # differently right after a resume)
        if hasattr(dataset, "first_sds_step"):
            dataset.first_sds_step = int(self.cfg.ti_steps)

    def on_train_start(self) -> None:
        # for train loaders not from a data module (on_fit_start has set it on the data module's train set)
        self._number_batches_by_stage(getattr(getattr(self.trainer, "train_dataloader", None), "dataset", None))
        self._keep_writing_last_ckpt()

    def _keep_writing_last_ckpt(self) -> None:
        """On resume, let ModelCheckpoint overwrite the trial's `last.ckpt` instead of starting a `last-v1.ckpt`.

        Lightning writes a step's checkpoint before `last.ckpt`, so the first step checkpoint of a run (e.g.
        `epoch=0-step=1.ckpt`) records no last checkpoint; resumed from it, ModelCheckpoint takes the existing
        `last.ckpt` for someone else's file and writes `last-v1.ckpt`, leaving the stale `last.ckpt` (the killed
        run's) where threestudio's `resume=`/`--test`/`--export` instructions point. A resume from any later
        checkpoint already overwrites it; this makes the first one do the same. Only for a checkpoint in the
        callback's own folder (the same trial): a fresh run into an old folder still gets Lightning's versioning.
        """
        trainer = self.trainer
        resumed_from = getattr(trainer, "ckpt_path", None)
        if not resumed_from:
            return
        for callback in getattr(trainer, "checkpoint_callbacks", []):
            name = getattr(callback, "CHECKPOINT_NAME_LAST", None)
            if (not getattr(callback, "save_last", False) or getattr(callback, "last_model_path", "") or
                    callback.dirpath is None or not name or "{" in name):
                continue
            if os.path.realpath(os.path.dirname(str(resumed_from))) != os.path.realpath(str(callback.dirpath)):
                continue
            last = callback.format_checkpoint_name({}, name)
            if callback.file_exists(last, trainer):  # rank 0's answer on every rank
                callback.last_model_path = last

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # here, not only in on_train_start: Lightning >= 2.1 fetches the first batch before on_train_start, and
        # a run resumed at the stage switch would draw its first SDS batch's cameras with the camera module left
        # at its initial state instead of SDS step 0 (threestudio's progressive_view makes those differ)
        self._number_batches_by_stage(getattr(getattr(self.trainer, "datamodule", None), "train_dataset", None))
        guidance = self.ti_guidance
        if guidance is not None and hasattr(guidance, "set_shard"):
            guidance.set_shard(self.global_rank, self._world_size())

    def on_after_backward(self) -> None:
        """Average y*'s gradient over ranks (DDP averages only the parameters it holds: the NeRF's)."""
        world = self._world_size()
        if world == 1 or self.stage != "ti":
            return
        for p in self.ti_parameters():
            grad = p.grad if p.grad is not None else torch.zeros_like(p)  # every rank joins every all-reduce
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            p.grad = grad.div_(world)

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

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["congeal_y_star"] = self.current_y_star()
        checkpoint["congeal_ti_steps"] = int(self.cfg.ti_steps)
        checkpoint["congeal_rng"] = self._gather_generators()
        generator = getattr(getattr(self.ti_guidance, "trainer", None), "generator", None)
        if generator is not None:  # the same on every rank: each draws the whole batch's numbers
            checkpoint["congeal_ti_generator"] = generator.get_state()

    def _gather_generators(self) -> Dict[str, Any]:
        """{"ranks": [one dict of generator states per rank]}; a collective: every rank calls it (Lightning saves
        checkpoints on every rank and writes rank 0's)."""
        python_version, python_state, python_gauss = random.getstate()
        numpy_name, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
        mine: Dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": [python_version, torch.tensor(python_state, dtype=torch.int64), python_gauss],
            "numpy": [numpy_name, torch.from_numpy(numpy_keys.astype(np.int64)), int(numpy_pos),
                      int(numpy_has_gauss), float(numpy_gauss)],
        }
        if self.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        world = self._world_size()
        if world == 1:
            return {"ranks": [mine]}
        ranks: List[Any] = [None] * world
        dist.all_gather_object(ranks, mine)
        return {"ranks": [{k: v.cpu() if torch.is_tensor(v) else v for k, v in r.items()} for r in ranks]}

    @contextlib.contextmanager
    def _preserved_generators(self) -> Iterator[None]:
        """Run a block without moving this process's random generators (torch CPU and CUDA, python, numpy)."""
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            yield
        random.setstate(python_state)
        np.random.set_state(numpy_state)

    def _restore_generators(self, saved: Dict[str, Any]) -> None:
        ranks = saved.get("ranks", [])
        if len(ranks) != self._world_size():
            threestudio.warn(f"congeal: the checkpoint holds the random generators of {len(ranks)} processes, this "
                             f"run has {self._world_size()}: the resumed run's random draws differ from the "
                             "uninterrupted run's")
            return
        mine = ranks[self.global_rank]
        torch.set_rng_state(mine["torch"])
        python_version, python_state, python_gauss = mine["python"]
        random.setstate((python_version, tuple(int(v) for v in python_state.tolist()), python_gauss))
        name, keys, pos, has_gauss, gauss = mine["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "congeal_rng" in checkpoint:
            self._pending_rng = checkpoint["congeal_rng"]
        generator = getattr(getattr(self.ti_guidance, "trainer", None), "generator", None)
        if generator is not None and "congeal_ti_generator" in checkpoint:
            generator.set_state(checkpoint["congeal_ti_generator"].cpu())
        y_star = checkpoint.get("congeal_y_star")
        if y_star is None:
            return
        self._y_star = {k: v.float().cpu() for k, v in y_star.items()}
        if self.ti_guidance is not None:
            self._copy_into_rows(list(self._y_star.values()), "the checkpoint")
        saved = checkpoint.get("congeal_ti_steps")
        if saved is not None and int(saved) != int(self.cfg.ti_steps):
            threestudio.warn(f"congeal: checkpoint was trained with ti_steps={saved}, config says "
                             f"{self.cfg.ti_steps}; the stage follows the config")

    # ---------------------------------------------------------------- training
    def forward(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return self.renderer(**{k: v for k, v in batch.items() if k not in IMAGE_KEYS})

    def training_step(self, batch, batch_idx):
        if self.stage == "ti":
            loss = self._ti_step(batch)
        else:
            loss = self._sds_step(batch)
        if self._logged_stage != self.stage:
            # logged once per stage: Lightning re-reports the value at every later step (progress bar and loggers),
            # and each self.log() costs about as much as a small kernel launch (the SDS overhead budget is 2 %)
            self.log("train/stage", float(self.stage == "sds"), prog_bar=True)
            self._logged_stage = self.stage
        return {"loss": loss}

    def _ti_step(self, batch: Dict[str, Any]) -> torch.Tensor:
        if "images" not in batch:
            raise RuntimeError("textual-inversion step without photos: data_type must be "
                               "congeal-image-collection-datamodule (it adds 'images' and 'masks' to the batch)")
        out = self.ti_guidance(batch["images"], batch.get("masks"))
        loss = 0.0
        scalars = {}
        for name, value in out.items():
            if torch.is_tensor(value) and value.numel() == 1:
                scalars[f"train/{name}"] = float(value.detach())
            if name.startswith("loss_"):
                loss = loss + value * float(self.cfg.loss.get(name.replace("loss_", "lambda_"), 1.0))
        # straight to the loggers: a value passed to self.log() is re-reported at every later step of the epoch,
        # and this run has one endless epoch, so loss_ti would flat-line through the whole SDS stage
        for logger in self.loggers:
            logger.log_metrics(scalars, step=self.global_step)
        if "train/loss_ti" in scalars:
            self.log("train/loss_ti", scalars["train/loss_ti"], prog_bar=True, logger=False)
        return loss

    def _sds_step(self, batch: Dict[str, Any]) -> torch.Tensor:
        cameras = {k: v for k, v in batch.items() if k not in IMAGE_KEYS}
        out = self.renderer(**cameras)
        if self.cfg.sds_noise_by_group:
            guidance_out = self._guidance_by_group(out["comp_rgb"], cameras)
        else:
            guidance_out = self.guidance(out["comp_rgb"], self.prompt_utils, **cameras)
        loss = 0.0
        for name, value in guidance_out.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss_sds")
            if name.startswith("loss_"):
                loss = loss + value * self.C(self.cfg.loss[name.replace("loss_", "lambda_")])
        for name, term in self._regularisers(out).items():
            self.log(f"train/{name}", term)
            loss = loss + term * self.C(self.cfg.loss[name.replace("loss_", "lambda_")])
        for name, value in self.cfg.loss.items():
            if name != "lambda_ti":  # a stage-1 weight: its (constant) value is in configs/parsed.yaml
                self.log(f"train_params/{name}", self.C(value))
        return loss

    def _guidance_by_group(self, rgb: torch.Tensor, cameras: Dict[str, Any]) -> Dict[str, Any]:
        """The guidance once per view group, with one timestep for the step and each group's noise seeded from
        (seed, step, the group's number in the whole batch of all ranks); outputs averaged over groups.

        The guidance's loss is a per-view mean, so the mean over groups is the loss of the whole local batch.
        """
        from ..data.image_collection import batch_seed

        n_view = int(getattr(self.guidance.cfg, "n_view", 1))
        batch = rgb.shape[0]
        if batch % n_view:
            raise ValueError(f"sds_noise_by_group: camera batch {batch} is not a multiple of n_view {n_view}")
        groups = batch // n_view
        step = self.true_global_step
        low, high = int(self.guidance.min_step), int(self.guidance.max_step)
        pick = torch.Generator().manual_seed(batch_seed(self.cfg.seed, step, "sds-timestep"))
        timestep = int(torch.randint(low, high + 1, (1,), generator=pick))
        devices = [self.device] if self.device.type == "cuda" else []
        outs = []
        for g in range(groups):
            rows = slice(g * n_view, (g + 1) * n_view)
            part = {k: v[rows] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == batch else v
                    for k, v in cameras.items()}
            with torch.random.fork_rng(devices=devices):
                seed = batch_seed(self.cfg.seed, step, f"sds-noise-{self.global_rank * groups + g}")
                torch.default_generator.manual_seed(seed)
                if devices:
                    torch.cuda.manual_seed(seed)
                outs.append(self.guidance(rgb[rows], self.prompt_utils, timestep=timestep, **part))
        merged: Dict[str, Any] = {}
        for name, value in outs[0].items():
            if torch.is_tensor(value) and value.numel() == 1:
                merged[name] = torch.stack([o[name].reshape(()) for o in outs]).mean()
            elif isinstance(value, (int, float)):
                merged[name] = sum(o[name] for o in outs) / len(outs)
            else:
                merged[name] = value
        return merged

    def _regularisers(self, out: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """The SDS-stage regularisers whose weight in `system.loss` is > 0 (the ones threestudio-mvdream offers)."""
        weight = lambda key: self.C(self.cfg.loss.get(key, 0.0))  # noqa: E731
        terms: Dict[str, torch.Tensor] = {}
        if weight("lambda_orient") > 0:
            if "normal" not in out:
                raise ValueError("lambda_orient > 0 needs normals: set the geometry's normal_type")
            facing = dot(out["normal"], out["t_dirs"]).clamp_min(0.0) ** 2
            terms["loss_orient"] = (out["weights"].detach() * facing).sum() / (out["opacity"] > 0).sum()
        if weight("lambda_sparsity") > 0:
            terms["loss_sparsity"] = (out["opacity"] ** 2 + 0.01).sqrt().mean()
        if weight("lambda_opaque") > 0:
            clamped = out["opacity"].clamp(1.0e-3, 1.0 - 1.0e-3)
            terms["loss_opaque"] = binary_cross_entropy(clamped, clamped)
        if weight("lambda_z_variance") > 0:
            terms["loss_z_variance"] = out["z_variance"][out["opacity"] > 0.5].mean()
        if weight("lambda_eikonal") > 0:
            terms["loss_eikonal"] = ((torch.linalg.norm(out["sdf_grad"], ord=2, dim=-1) - 1.0) ** 2).mean()
        return terms

    # ---------------------------------------------------------------- validation / test / export
    def _image_grid(self, out: Dict[str, Any]) -> List[Dict[str, Any]]:
        grid = []
        if "comp_rgb" in out:
            grid.append({"type": "rgb", "img": out["comp_rgb"][0], "kwargs": {"data_format": "HWC"}})
        if "comp_normal" in out:
            grid.append({"type": "rgb", "img": out["comp_normal"][0],
                         "kwargs": {"data_format": "HWC", "data_range": (0, 1)}})
        grid.append({"type": "grayscale", "img": out["opacity"][0, :, :, 0],
                     "kwargs": {"cmap": None, "data_range": (0, 1)}})
        return grid

    def validation_step(self, batch, batch_idx):
        if "rays_o" not in batch or self.stage == "ti":
            return  # nothing to render yet: the NeRF only trains in stage 2
        out = self(batch)
        self.save_image_grid(f"it{self.true_global_step}-{batch['index'][0]}.png", self._image_grid(out),
                             name="validation_step", step=self.true_global_step)

    def on_validation_epoch_end(self):
        pass

    def test_step(self, batch, batch_idx):
        if "rays_o" not in batch:
            return
        out = self(batch)
        self.save_image_grid(f"it{self.true_global_step}-test/{batch['index'][0]}.png", self._image_grid(out),
                             name="test_step", step=self.true_global_step)

    def on_test_epoch_end(self):
        if self._save_dir is None:
            return
        folder = self.get_save_path(f"it{self.true_global_step}-test")
        if os.path.isdir(folder) and any(name.endswith(".png") for name in os.listdir(folder)):
            self.save_img_sequence(f"it{self.true_global_step}-test", f"it{self.true_global_step}-test",
                                   r"(\d+)\.png", save_format="mp4", fps=30, name="test", step=self.true_global_step)
        if self.global_rank != 0:  # one writer; the others' copies are the same bytes
            return
        self.export_canonical(os.path.join(self._save_dir, "canonical.safetensors"))
        if self.sds_ready or self._y_star is not None or self.ti_guidance is not None:
            from congeal.inversion.embedding_files import save_learned_embeds

            trial = self._trial_dir()
            if trial is not None:
                save_learned_embeds(os.path.join(trial, "learned_embeds.safetensors"), self.current_y_star())

    @torch.no_grad()
    def bake_canonical(self, resolution: Optional[int] = None) -> Any:
        """The trained geometry and material on an R^3 grid of cell centres -> `congeal.canonical.grid.Canonical`
        (see `adapters.baking.bake_canonical`; SDF geometries through a Laplace CDF with this system's β / max)."""
        from ..adapters.baking import bake_canonical

        return bake_canonical(self.geometry, self.material, int(resolution or self.cfg.canonical_resolution),
                              chunk=self.cfg.canonical_chunk, sdf_beta=self.cfg.sdf_beta,
                              sdf_max_density=self.cfg.sdf_max_density)

    def export_canonical(self, path: str) -> str:
        """Bake (see `bake_canonical`) and write `canonical.safetensors` atomically; returns the path."""
        from congeal.canonical.grid import save_canonical

        save_canonical(path, self.bake_canonical())
        threestudio.info(f"congeal: canonical written to {path}")
        return path
