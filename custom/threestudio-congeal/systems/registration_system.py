"""threestudio system `congeal-registration-system`: stage 3 of 3D Congealing inside `launch.py`.

    python launch.py --config configs/congeal-register.yaml --train \
        system.canonical_run=outputs/congeal/cats@20261124-101500 data.image_dir=photos/

Rebuilds the congealing run's canonical NeRF (geometry, material, background and renderer from its parsed config and
checkpoint), then registers the photos with the `congeal` engine: pose search -> refinement -> coordinate maps.
Render backend (`system.render_backend`): `baked` (default; the NeRF is baked once into a density+rgb grid and
ray-marched with `grid_sample`: fast, same numbers on every device) or `threestudio` (the run's own renderer through
the renderer protocol, xyz from depth along the rays: full fidelity, slower).

How the work maps onto Lightning: each training step registers one chunk of `data.chunk_size` photos (the next
chunk of this rank not yet on disk) into `save/chunks/chunk-XXXX`, committed by an atomic folder rename; at the end
of fit, rank 0 merges all chunks into `save/` (poses.json, transforms.json, maps/, state/, pictures/). So:
* progress bar = chunks; TensorBoard gets per-photo IoU, refinement loss and mean IoU per chunk, and the overlays;
* DDP (`launch.py --gpu 0,1`): Lightning's sampler gives every rank its share of steps; the chunks still pending
  at the start are dealt to the ranks in turn (`share_pending`), each rank builds its feature extractor once and
  publishes its chunks' files into `save/` as it commits them, and rank 0's merge after the barrier only writes the
  JSON files and a bounded set of pictures; results equal a single-process run with the same chunk size (each chunk's
  photos choose their hypotheses jointly, the rest is per photo);
* kill -9 + relaunch with `resume=`: committed chunks are kept, a half-done chunk is redone, the merged outputs equal
  an uninterrupted run (the engine is deterministic);
* `system.previous_run=<save dir of an earlier registration>` + `data.image_dir=<new photos>`: the earlier run is
  copied in and only photos it does not hold are registered (`congeal.run.pipeline.add_images`).
`--test` re-renders the overlays from the saved cameras; `--export` writes maps/ and transforms.json again.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

import threestudio
from threestudio.systems.base import BaseSystem

from ..registry import register


@register("congeal-registration-system")
class CongealRegistrationSystem(BaseSystem):
    @dataclass
    class Config(BaseSystem.Config):
        canonical_run: Optional[str] = None  # trial folder of a `configs/congeal.yaml` run
        canonical_ckpt: Optional[str] = None  # its checkpoint (default <canonical_run>/ckpts/last.ckpt)
        canonical_file: Optional[str] = None  # or a canonical.safetensors (then no threestudio model is rebuilt)
        render_backend: str = "baked"  # "baked" | "threestudio"
        bake_resolution: int = 128  # R of the baked grid (R^3 cells)
        bake_chunk: int = 65536  # points per geometry query while baking
        preset: str = "paper"  # engine preset: "paper" (GPU) or "fast" (CPU-friendly)
        features: str = "dinov2"  # "dinov2" or "rgb"
        dinov2_model: Optional[str] = None  # DINOv2 id or local folder (None: the preset's, facebook/dinov2-giant)
        overrides: Dict[str, Any] = field(default_factory=dict)  # engine settings, e.g. {"refine.steps": 500}
        previous_run: Optional[str] = None  # save/ folder of an earlier registration: register only new photos
        seed: int = 0

    cfg: Config

    def configure(self) -> None:
        # DDP refuses a module without trainable parameters; registration has none (it is not gradient training
        # of this module), so hold one inert anchor.
        self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))
        self.automatic_optimization = False
        self._runner = None
        self._canonical = None
        self._renderer = None
        if self.cfg.render_backend not in ("baked", "threestudio"):
            raise ValueError(f"system.render_backend must be 'baked' or 'threestudio', got {self.cfg.render_backend!r}")
        if not (self.cfg.canonical_run or self.cfg.canonical_file or self.cfg.previous_run):
            raise ValueError("set system.canonical_run=<trial folder of a congeal.yaml run> "
                             "(or system.canonical_file=<canonical.safetensors>)")

    def configure_optimizers(self):
        # Lightning counts global steps (and so step-based checkpoints) by optimizer steps: a no-op optimizer on the
        # anchor makes every registered chunk a step, hence a checkpoint to `resume=` from
        return torch.optim.SGD([self.ddp_anchor], lr=0.0)

    def _count_step(self) -> None:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        optimizer.step()

    # ---- the canonical and the engine -------------------------------------------------------------------------
    def _build_canonical(self) -> None:
        from congeal.canonical.grid import load_canonical

        if self._canonical is not None:
            return
        if self.cfg.canonical_file:
            self._canonical = load_canonical(self.cfg.canonical_file)
            return
        if not self.cfg.canonical_run and self.cfg.previous_run:
            from congeal.run.folder import RunFolder

            self._canonical = load_canonical(RunFolder(self.cfg.previous_run).canonical)
            return
        from congeal.shape.field_baking import bake_canonical
        from ..adapters.congealing_run import load_congealing_run
        from ..adapters.renderer import ThreestudioRenderer

        run = load_congealing_run(self.cfg.canonical_run, self.cfg.canonical_ckpt, device=self.device)
        # SDF geometries: the same β / max density the congealing system bakes with (its parsed config)
        self._canonical = bake_canonical(run.geometry, run.material, self.cfg.bake_resolution, self.cfg.bake_chunk,
                                         sdf_beta=float(run.config.get("sdf_beta", 0.01)),
                                         sdf_max_density=float(run.config.get("sdf_max_density", 100.0)))
        self._canonical = self._canonical.to("cpu")
        if self.cfg.render_backend == "threestudio":
            self._renderer = ThreestudioRenderer(run.renderer)

    def _register_kwargs(self) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = dict(preset=self.cfg.preset, features=self.cfg.features, device=self.device,
                                      seed=self.cfg.seed, overrides=dict(self.cfg.overrides) or None, progress=False,
                                      mask=self._data_cfg().mask)
        if self.cfg.dinov2_model:
            kwargs["dinov2"] = self.cfg.dinov2_model
        if self._renderer is not None:
            kwargs["renderer"] = self._renderer
        return kwargs

    def _data_cfg(self) -> Any:
        return self.trainer.datamodule.cfg

    def _save_root(self) -> str:
        return self.get_save_dir()

    def on_fit_start(self) -> None:
        from congeal.run.chunked import ChunkedRegistration, share_pending

        self._build_canonical()
        save = self._save_root()
        if self.cfg.previous_run:
            self._adopt_previous_run(save)
            return
        kwargs = self._register_kwargs()
        runner = ChunkedRegistration(self._canonical, self._data_cfg().image_dir, save,
                                     chunk_size=self._data_cfg().chunk_size, rank=self.global_rank,
                                     world_size=self.trainer.world_size, **kwargs)
        # every rank takes its turn over the chunks still pending (read by all ranks before anyone registers): a
        # relaunch splits the leftovers of any rank evenly, so no rank registers the others' share while they wait
        self.trainer.strategy.barrier()
        runner.assigned = share_pending(save, len(runner.plan.chunks), self.global_rank, self.trainer.world_size)
        self.trainer.strategy.barrier()
        self._runner = runner

    def _adopt_previous_run(self, save: str) -> None:
        """Bring an earlier registration's outputs into this run once (hard links where possible, else atomic
        copies: the earlier run's files stay untouched, since every writer here replaces files, never edits them)."""
        from pathlib import Path

        from congeal.common.atomic import publish
        from congeal.run.folder import RunFolder

        if self.global_rank == 0 and not RunFolder(save).is_run():
            previous = Path(self.cfg.previous_run)
            for src in sorted(previous.rglob("*")):
                relative = src.relative_to(previous)
                if relative.parts[0] == "chunks" or not src.is_file():
                    continue
                dst = Path(save) / relative
                if not dst.exists():
                    publish(src, dst)
        self.trainer.strategy.barrier()

    def training_step(self, batch, batch_idx):
        self._count_step()
        if self.cfg.previous_run:
            if batch_idx == 0 and self.global_rank == 0:
                self._add_new_photos()
            return None
        pending = self._runner.pending()
        if not pending:
            return None  # a resumed or re-sharded run may hand a rank more steps than it has chunks
        index = pending[0]
        folder = self._runner.run_chunk(index)
        self._log_chunk(index, folder)
        return None

    def _add_new_photos(self) -> None:
        from congeal.io.collection import load_collection
        from congeal.registration.registration_config import config_from_dict
        from congeal.run.folder import RunFolder
        from congeal.run.pipeline import add_images

        save = self._save_root()
        run = RunFolder(save)
        cfg = config_from_dict(run.read_register()["config"])
        known = set(run.read_poses())
        collection = load_collection(self._data_cfg().image_dir, size=cfg.working_size, mask=cfg.mask,
                                     margin=cfg.margin)
        new = [n for n in collection.names if n not in known]
        threestudio.info(f"congeal: {len(new)} new photos ({len(collection.names) - len(new)} already registered)")
        if new:
            add_images(save, collection.subset(new), device=self.device, progress=False)
        self.log("register/new_photos", float(len(new)), rank_zero_only=True)

    def _log_chunk(self, index: int, folder: str) -> None:
        from congeal.run.folder import RunFolder

        poses = RunFolder(folder).read_poses()
        ious = [float(p["iou"]) for p in poses.values()]
        for name, pose in poses.items():
            self.log(f"iou/{name}", float(pose["iou"]), on_step=True, sync_dist=False)
            if "refine_loss" in pose:
                self.log(f"refine_loss/{name}", float(pose["refine_loss"]), on_step=True, sync_dist=False)
        self.log("register/chunk_mean_iou", sum(ious) / max(1, len(ious)), on_step=True, prog_bar=True)
        self.log("register/chunk", float(index), on_step=True)

    def on_train_end(self) -> None:
        from congeal.run.chunked import merge_chunks

        if self.cfg.previous_run:
            return
        self._runner.run()  # this rank's chunks not reached by the steps (e.g. a resumed epoch)
        self.trainer.strategy.barrier()
        if self.global_rank == 0:
            # cheap: each rank published its chunks' files when it committed them; the merge writes the JSON
            # files and a bounded number of pictures
            merge_chunks(self._save_root())
            self._log_pictures()
            threestudio.info(f"congeal: registration written to {self._save_root()}")
        self.trainer.strategy.barrier()

    def _log_pictures(self) -> None:
        import numpy as np
        from PIL import Image

        from congeal.run.folder import RunFolder

        pictures = str(RunFolder(self._save_root()).pictures_dir)
        if not os.path.isdir(pictures):
            return
        for logger in self.loggers or []:
            experiment = getattr(logger, "experiment", None)
            if experiment is None or not hasattr(experiment, "add_image"):
                continue
            for root, _dirs, files in os.walk(pictures):
                for name in sorted(files):
                    if name.endswith(".png"):
                        array = np.asarray(Image.open(os.path.join(root, name)).convert("RGB"))
                        tag = os.path.relpath(os.path.join(root, name), pictures)
                        experiment.add_image(f"congeal/{tag}", array, self.true_global_step, dataformats="HWC")

    # ---- --test / --export ---------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        return None

    def test_step(self, batch, batch_idx):
        from congeal.run.overlays import rerender_overlays

        self._build_canonical()
        if self.global_rank == 0:
            path = rerender_overlays(self._save_root(), renderer=self._renderer, device=self.device)
            threestudio.info(f"congeal: overlays re-rendered to {path}")

    def predict_step(self, batch, batch_idx):
        from congeal.run.reexport import reexport_run

        if self.global_rank == 0:
            reexport_run(self._save_root())
            threestudio.info(f"congeal: maps/ and transforms.json re-exported in {self._save_root()}")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # the registration state lives in save/ (atomic files); the checkpoint only records how far we got
        checkpoint["congeal_registration"] = {"done_chunks": self._done()}

    def _done(self) -> List[int]:
        from congeal.run.chunked import done_chunks

        return done_chunks(self._save_root()) if self._save_dir is not None else []
