"""The registration pipeline: photos + canonical -> camera per photo, coordinate maps, pictures.

    result = register_collection("canonical.safetensors", "photos/", "out/run", preset="fast", features="rgb")
    print(result.summary)                                   # JSON-ready dict; files under out/run/
    add_images("out/run", "more_photos/")                   # incremental: only the new photos are registered

Stages (each timed; `on_stage` receives `{"stage", "seconds", "peak_memory_mb"}`):
  load -> candidates (render + frame + featurise the K grid candidates once, cached in OUT/cache) ->
  search (N×K batched scores, top-k per photo) -> refine (all N·k hypotheses at once, soft IoU) ->
  select (final render of every hypothesis at the working size; best score wins, others become alternatives) ->
  mapping (`congeal.registration.mapping.fit_warps`, state + maps files, map pictures) -> outputs (poses.json,
  transforms.json, register.json, pictures).

Presets: `paper` (the paper's sizes: 3×16×16 grid, 1000 refinement steps, 4000 mapping steps, DINOv2 features)
and `fast` (CPU-friendly settings for synthetic benchmarks). Any field can be overridden with `overrides`
(a dict or "key=value" dot-list strings, e.g. `["refine.steps=300", "search.top_k=2"]`).
"""
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from congeal.common.atomic import write_json
from congeal.geometry.cameras import CandidateGridConfig
from congeal.common.errors import InputError
from congeal.features.extractors import FeatureExtractor, build_extractor
from congeal.registration.framing import render_in_frame
from congeal.registration.mapping import MappingConfig
from congeal.registration.refine import PoseParameters, RefineConfig, binary_iou, masked_feature_distance, refine_poses
from congeal.registration.search import (CandidateBank, SearchConfig, bank_key, build_candidate_bank, load_bank, save_bank,
                     score_candidates, score_grid, top_k_hypotheses)
from congeal.common.paths import PathLike

REGISTER_FORMAT = "congeal-register-v1"

@dataclass
class FeatureConfig:
    """Which feature extractor the search (and the mapping) uses.

    Attributes:
        name: "rgb" or "dinov2".
        dinov2_model: model id or local folder for DINOv2.
        layer: DINOv2 layer (-1 = final normed output, i = hidden state i).
        input_size: DINOv2 input side (multiple of 14).
        rgb_grid: RGB feature grid side.
        batch_size: images per extractor call.
    """

    name: str = "rgb"
    dinov2_model: str = "facebook/dinov2-giant"
    layer: int = -1
    input_size: int = 224
    rgb_grid: int = 16
    batch_size: int = 64


@dataclass
class RegistrationConfig:
    """Everything that determines a registration run (serialises with omegaconf; stored in register.json).

    Attributes:
        working_size: S, the side of the photos' working crops and of the final renders.
        margin: crop margin around the object (fraction of its longer bbox side, each side), photos and renders.
        mask: mask source for the photos ("auto", "alpha", "file", "white-background", "sam").
        final_samples: ray-marching samples of the final renders (selection, mapping, pictures).
        features, grid, search, refine, mapping: the stages' settings.
    """

    working_size: int = 64
    margin: float = 0.1
    mask: str = "auto"
    final_samples: int = 64
    features: FeatureConfig = field(default_factory=FeatureConfig)
    grid: CandidateGridConfig = field(default_factory=CandidateGridConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)


PRESETS: Dict[str, Dict[str, Any]] = {
    # the paper's sizes; meant for a GPU
    "paper": {
        "working_size": 224, "final_samples": 96,
        "features": {"name": "dinov2", "input_size": 224, "batch_size": 64},
        "grid": {"fovy_deg": [25.0, 40.0, 55.0], "n_azimuth": 16, "n_elevation": 16},
        "search": {"render_size": 224, "render_samples": 96, "chunk": 128, "top_k": 3},
        "refine": {"steps": 1000, "resolution": 64, "samples": 64, "patience": 100},
        "mapping": {"steps": 4000},
    },
    # CPU-friendly: the same 768-candidate grid at low resolution, short refinement and mapping
    "fast": {
        "working_size": 64, "final_samples": 48,
        "features": {"name": "rgb", "rgb_grid": 16},
        "search": {"render_size": 96, "render_samples": 32, "chunk": 128, "top_k": 2, "mask_size": 64},
        # the colour term settles what silhouettes leave ambiguous (FoV vs distance vs rotation)
        "refine": {"steps": 150, "resolution": 32, "samples": 24, "patience": 25, "lr_rotation": 0.03,
                   "feature_weight": 1.0},
        "mapping": {"steps": 150, "loss_resolution": 32},
    },
}


def make_config(preset: str = "fast", features: Optional[str] = None, dinov2: Optional[str] = None,
                mask: Optional[str] = None, overrides: Union[None, Dict[str, Any], Sequence[str]] = None
                ) -> RegistrationConfig:
    """Build a RegistrationConfig: defaults <- preset <- explicit arguments <- overrides.

    Args:
        preset: "fast" or "paper".
        features: "rgb" / "dinov2" (None keeps the preset's).
        dinov2: DINOv2 id or folder (None keeps the preset's).
        mask: mask source (None keeps the preset's).
        overrides: dict (nested or dotted keys) or ["key=value", ...].
    Returns:
        RegistrationConfig.
    Raises:
        InputError for an unknown preset, key or badly typed value.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if preset not in PRESETS:
        raise InputError(None, f"unknown preset {preset!r}", f"use one of {', '.join(PRESETS)}")
    base = OmegaConf.structured(RegistrationConfig)
    explicit: Dict[str, Any] = {}
    if features is not None:
        explicit.setdefault("features", {})["name"] = features
    if dinov2 is not None:
        explicit.setdefault("features", {})["dinov2_model"] = str(dinov2)
    if mask is not None:
        explicit["mask"] = mask
    try:
        merged = OmegaConf.merge(base, OmegaConf.create(PRESETS[preset]), OmegaConf.create(explicit))
        if overrides:
            if isinstance(overrides, dict):
                extra = OmegaConf.create({})
                for key, value in overrides.items():
                    OmegaConf.update(extra, key, value, force_add=True)
            else:
                extra = OmegaConf.from_dotlist(list(overrides))
            merged = OmegaConf.merge(merged, extra)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise InputError(None, f"bad registration setting: {str(error).splitlines()[0]}",
                         "check the key against RegistrationConfig (e.g. --set refine.steps=300)") from error
    if cfg.features.name not in ("rgb", "dinov2"):
        raise InputError(None, f"unknown features {cfg.features.name!r}", "use rgb or dinov2")
    if cfg.search.top_k < 1 or cfg.working_size < 16 or cfg.refine.steps < 0:
        raise InputError(None, "search.top_k must be >= 1, working_size >= 16 and refine.steps >= 0",
                         "fix the --set values")
    return cfg


def config_to_dict(cfg: RegistrationConfig) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def config_from_dict(data: Dict[str, Any]) -> RegistrationConfig:
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RegistrationConfig), OmegaConf.create(data)))


@dataclass
class RegistrationResult:
    """What a run produced: the run folder, image names, poses.json records, timings, and a summary."""

    out_dir: Path
    names: List[str]
    records: List[Dict[str, Any]]
    stages: List[Dict[str, Any]]
    summary: Dict[str, Any]


class _Stages:
    """Times stages and reports peak memory (CUDA: max allocated; CPU: process max RSS)."""

    def __init__(self, device: torch.device, on_stage: Optional[Callable[[Dict[str, Any]], None]]):
        self.device, self.on_stage, self.records = device, on_stage, []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        value = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        record = {"stage": name, "seconds": round(time.perf_counter() - start, 3), "peak_memory_mb": round(peak, 1),
                  "device": self.device.type}
        self.records.append(record)
        if self.on_stage is not None:
            self.on_stage(record)
        return value


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """'cuda' without a GPU is a user error with a fix, not a crash deep inside torch."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda was asked for but torch sees no CUDA GPU", "use --device cpu")
    return device


def _load_canonical(canonical: Any):
    from congeal.canonical.grid import Canonical, load_canonical, validate_canonical

    if isinstance(canonical, Canonical):
        validate_canonical(canonical)
        return canonical
    return load_canonical(canonical)


def _resize_collection(collection: Any, size: int) -> Any:
    """The same crops at another working size (exact: the crop windows do not change)."""
    from dataclasses import replace

    if collection.size == size:
        return collection
    images = F.interpolate(collection.images.float(), size=(size, size), mode="bilinear", align_corners=False,
                           antialias=True).clamp(0, 1)
    masks = (F.adaptive_avg_pool2d(collection.masks.float(), size) >= 0.5).float()
    crops = [replace(crop, size=size) for crop in collection.crops]
    return replace(collection, images=images, masks=masks, crops=crops)


def load_images(images: Any, cfg: RegistrationConfig, minimum: int = 2):
    """An ImageCollection at the config's working size from a folder or a collection.

    Args:
        images: folder path or `ImageCollection`.
        cfg: working size, margin, mask source.
        minimum: fewest photos accepted (`--add` accepts a single new photo).
    """
    from congeal.io.collection import ImageCollection, load_collection

    if isinstance(images, ImageCollection):
        return _resize_collection(images, cfg.working_size)
    folder = Path(images)
    if minimum >= 2:
        return load_collection(folder, size=cfg.working_size, mask=cfg.mask, margin=cfg.margin)
    from congeal.io.collection import list_images

    listing = list_images(folder)
    if len(listing.images) == 1:  # load_collection wants two photos; one new photo is fine for --add
        from congeal.io.collection import load_image

        item = load_image(listing.images[0], size=cfg.working_size, mask=cfg.mask, margin=cfg.margin)
        return ImageCollection(names=[item.name], paths=[item.path], images=item.image[None], masks=item.mask[None],
                               original_sizes=[item.original_size], crops=[item.crop],
                               mask_sources=[item.mask_source], coverages=[item.coverage], folder=listing.folder,
                               options=dict(size=cfg.working_size, mask=cfg.mask, margin=cfg.margin),
                               packed_masks=[item.packed_mask])
    return load_collection(folder, size=cfg.working_size, mask=cfg.mask, margin=cfg.margin)


def _make_extractor(cfg: RegistrationConfig, device: torch.device) -> FeatureExtractor:
    fc = cfg.features
    if fc.name == "rgb":
        return build_extractor("rgb", grid=fc.rgb_grid, batch_size=fc.batch_size)
    return build_extractor("dinov2", device=device, model=fc.dinov2_model, layer=fc.layer,
                           input_size=fc.input_size, batch_size=fc.batch_size)


class _Context:
    """The shared objects of a run: config, canonical, renderers, extractor, candidate bank."""

    def __init__(self, cfg: RegistrationConfig, canonical: Any, device: torch.device,
                 extractor: Optional[FeatureExtractor], progress: bool, stages: _Stages, renderer: Any = None):
        from congeal.canonical.render import GridRenderer
        from congeal.canonical.silhouette import SilhouetteRenderer

        self.cfg, self.device, self.progress, self.stages = cfg, device, progress, stages
        self.canonical = canonical.to(device)
        self.radius = canonical.bounding_radius()
        self.extractor = extractor or _make_extractor(cfg, device)
        self.key = bank_key(canonical.content_hash(), self.extractor.identity, cfg.grid, cfg.working_size,
                            cfg.margin, cfg.search, self.radius)
        self.bank: Optional[CandidateBank] = None
        if renderer is not None:
            # an external renderer (e.g. a threestudio renderer through the protocol) renders every stage; the
            # canonical still gives the bounding radius and, with the renderer's identity, the cache key
            self.search_renderer = self.refine_renderer = self.final_renderer = renderer
            self.feature_renderer = renderer if cfg.refine.feature_weight > 0 else None
            self.key = hashlib.sha256(f"{self.key}|{getattr(renderer, 'identity', type(renderer).__name__)}"
                                      .encode()).hexdigest()[:16]
            return
        self.search_renderer = GridRenderer(self.canonical, num_samples=cfg.search.render_samples)
        # the mask loss needs opacity alone: the closed-form silhouette renderer is several times cheaper; the
        # optional colour term gets a full renderer at its own resolution
        self.refine_renderer = SilhouetteRenderer(self.canonical, num_samples=cfg.refine.samples)
        self.feature_renderer = (GridRenderer(self.canonical, num_samples=cfg.refine.samples)
                                 if cfg.refine.feature_weight > 0 else None)
        self.final_renderer = GridRenderer(self.canonical, num_samples=cfg.final_samples)

    def candidate_bank(self, cache_dir: Path) -> CandidateBank:
        path = cache_dir / f"candidates-{self.key}.safetensors"
        bank = load_bank(path, self.key, self.device)
        if bank is None:
            bank = build_candidate_bank(self.search_renderer, self.extractor, self.cfg.grid, self.radius,
                                        self.cfg.search, self.cfg.working_size, self.cfg.margin, self.device,
                                        progress=self.progress)
            save_bank(path, bank, self.key)
        self.bank = bank
        return bank


def _composited(collection: Any, device: torch.device) -> Tensor:
    """Photos on black outside their masks, like the premultiplied renders: [N,3,S,S]."""
    return (collection.images.to(device).float() * collection.masks.to(device).float()).clamp(0, 1)


def _register_images(ctx: _Context, collection: Any) -> Dict[str, Any]:
    """Search, refine and select poses for a collection; returns tensors and per-image records."""
    from congeal.run.outputs import camera_record

    cfg, device, bank = ctx.cfg, ctx.device, ctx.bank
    n = len(collection)
    k = min(cfg.search.top_k, bank.c2w.shape[0])
    photos = _composited(collection, device)
    masks = collection.masks.to(device).float()

    def search():
        with torch.no_grad():
            feats = ctx.extractor.extract(photos)
            scores = score_candidates(feats, masks, bank, cfg.search)
            top = top_k_hypotheses(scores["score"], bank, k, cfg.search.nms_deg)  # [N,k]
        return feats, scores, top

    image_feats, scores, top = ctx.stages.run("search", search)
    flat = top.reshape(-1)  # hypothesis h = n·k + j
    photo_of = torch.arange(n, device=device).repeat_interleave(k)

    def refine():
        init = PoseParameters.from_cameras(bank.c2w[flat], bank.fovy[flat], bank.principal[flat], cfg.working_size)
        return refine_poses(ctx.refine_renderer, init, masks[photo_of], cfg.refine,
                            image_feats=image_feats[photo_of], extractor=ctx.extractor, progress=ctx.progress,
                            feature_renderer=ctx.feature_renderer)

    refined = ctx.stages.run("refine", refine)

    def select():
        size = cfg.working_size
        with torch.no_grad():
            chunk = cfg.search.chunk
            outs = [render_in_frame(ctx.final_renderer, c, f, p, size) for c, f, p in
                    zip(refined.c2w.split(chunk), refined.fovy.split(chunk), refined.principal.split(chunk))]
            out = {key: torch.cat([o[key] for o in outs]) for key in ("rgb", "opacity", "xyz")}
            opacity = out["opacity"].permute(0, 3, 1, 2)
            rgb = out["rgb"].permute(0, 3, 1, 2).clamp(0, 1)
            iou = binary_iou(opacity, masks[photo_of])
            render_feats = ctx.extractor.extract(rgb)
            weight = F.adaptive_avg_pool2d(opacity * masks[photo_of], render_feats.shape[-2:])
            fdist = masked_feature_distance(render_feats, image_feats[photo_of], weight)
            final = fdist + cfg.search.iou_weight * (1.0 - iou)
            order = final.view(n, k).argsort(dim=1)  # best hypothesis first
        return out, render_feats, iou, fdist, final, order

    out, render_feats, iou, fdist, final, order = ctx.stages.run("select", select)
    best = torch.arange(n, device=device) * k + order[:, 0]
    records = []
    for i, name in enumerate(collection.names):  # per-image bookkeeping (JSON), not tensor work
        crop, size_hw = collection.crops[i], collection.original_sizes[i]

        def record(h: int, with_name: bool) -> Dict[str, Any]:
            scores_h = {"iou": iou[h], "feature_distance": fdist[h], "score": final[h],
                        "search_score": scores["score"][i, flat[h]], "refine_loss": refined.loss[h],
                        "refine_steps": refined.steps[h]}
            rec = camera_record(name if with_name else None, refined.c2w[h], refined.fovy[h], refined.principal[h],
                                crop, size_hw,
                                {key: float(v) for key, v in scores_h.items()})
            rec["candidate"] = int(flat[h])
            return rec

        main = record(int(best[i]), True)
        main["alternatives"] = [record(i * k + int(j), False) for j in order[i, 1:].tolist()]
        records.append(main)
    return {
        "records": records, "best": best, "photos": collection.images.float(), "masks": masks,
        "image_feats": image_feats,
        "render_rgb": out["rgb"][best], "render_opacity": out["opacity"][best], "render_xyz": out["xyz"][best],
        "render_feats": render_feats[best], "score_grid": score_grid(scores["score"], cfg.grid),
        "best_candidate": flat[best],
    }


def _run_mapping(ctx: _Context, collection: Any, reg: Dict[str, Any], out_dir: Path) -> bool:
    """fit_warps for all images at once, then the per-image state and map files. False if mapping is absent."""
    try:
        from congeal.registration.mapping import fit_warps, write_image_state
    except ImportError as error:  # the mapping module is optional for pose-only runs
        warnings.warn(f"congeal.registration.mapping unavailable ({error}); coordinate maps skipped")
        return False
    opacity = reg["render_opacity"].permute(0, 3, 1, 2)
    with torch.enable_grad():
        warps = fit_warps(reg["image_feats"], reg["render_feats"], reg["masks"], opacity, ctx.cfg.mapping,
                          progress=ctx.progress)
    for i, name in enumerate(collection.names):
        write_image_state(out_dir, name, collection.crops[i], collection.original_sizes[i], warps[i],
                          reg["render_xyz"][i], reg["render_opacity"][i], reg["masks"][i, 0], reg["records"][i],
                          cfg=ctx.cfg.mapping)
    return True


def _map_pictures(out_dir: Path) -> None:
    try:
        from congeal.run.map_pictures import write_map_pictures
    except ImportError as error:
        warnings.warn(f"congeal.run.map_pictures unavailable ({error}); NOCS/correspondence pictures skipped")
        return
    write_map_pictures(out_dir)


def _write_pictures(out_dir: Path, ctx: _Context, collection: Any, reg: Dict[str, Any], suffix: str = "") -> None:
    from congeal.viz.pictures import write_overlay_grid, write_score_maps

    pictures = out_dir / "pictures"
    write_overlay_grid(pictures / f"overlay{suffix}.png", reg["photos"].cpu(), reg["render_rgb"].cpu(),
                       reg["render_opacity"].cpu(), collection.names)
    grid = ctx.cfg.grid
    best = reg["best_candidate"].cpu()
    el = (best // grid.n_azimuth) % grid.n_elevation
    az = best % grid.n_azimuth
    write_score_maps(pictures / f"search-scores{suffix}.png", reg["score_grid"].cpu(), collection.names,
                     list(zip(el.tolist(), az.tolist())))


def _summary(out_dir: Path, records: List[Dict[str, Any]], stages: List[Dict[str, Any]], started: float,
             added: int = 0) -> Dict[str, Any]:
    ious = torch.tensor([r["iou"] for r in records]) if records else torch.zeros(1)
    summary = {"out": str(out_dir), "images": len(records), "seconds": round(time.perf_counter() - started, 2),
               "mean_iou": round(float(ious.mean()), 4), "min_iou": round(float(ious.min()), 4),
               "stages": {s["stage"]: s["seconds"] for s in stages},
               "poses": str(out_dir / "poses.json"), "pictures": str(out_dir / "pictures")}
    if added:
        summary["added"] = added
    return summary


def _write_outputs(out_dir: Path, cfg: RegistrationConfig, ctx: _Context, names: List[str],
                   records: List[Dict[str, Any]], paths: List[Path], crops: List[Any], extra: Dict[str, Any]) -> None:
    from congeal.run.outputs import write_poses, write_transforms

    write_poses(out_dir / "poses.json", records, extra={"working_size": cfg.working_size})
    write_transforms(out_dir / "transforms.json", records, paths)
    write_json(out_dir / "register.json", {
        "format": REGISTER_FORMAT, "config": config_to_dict(cfg), "cache_key": ctx.key,
        "extractor": ctx.extractor.identity, "canonical": "canonical.safetensors", "radius": ctx.radius,
        "images": [{"name": n, "path": str(Path(p).resolve()), "crop": c.to_dict()}
                   for n, p, c in zip(names, paths, crops)],
        **extra,
    })


def register_collection(canonical: Any, images: Any, out_dir: PathLike, preset: str = "fast",
                        features: Optional[str] = "rgb", device: Union[str, torch.device] = "cpu", seed: int = 0,
                        overrides: Union[None, Dict[str, Any], Sequence[str]] = None, progress: bool = True,
                        mask: Optional[str] = None, dinov2: Optional[str] = None,
                        extractor: Optional[FeatureExtractor] = None,
                        on_stage: Optional[Callable[[Dict[str, Any]], None]] = None,
                        renderer: Any = None) -> RegistrationResult:
    """Register every photo of a collection against a canonical shape and write the run folder.

    Args:
        canonical: path of canonical.safetensors or a `Canonical`.
        images: photo folder or `ImageCollection`.
        out_dir: run folder (created; an existing run there is overwritten file by file).
        preset: "fast" or "paper".
        features: "rgb" / "dinov2" (None = the preset's).
        device: "cpu" / "cuda".
        seed: torch seed (the pipeline is deterministic given the seed).
        overrides: config overrides (dict or "key=value" strings).
        progress: tqdm bars per stage.
        mask: photo mask source (None = "auto").
        dinov2: DINOv2 id or local folder.
        extractor: an already-built extractor (benchmarks); replaces the configured one.
        on_stage: called with each stage's timing record.
        renderer: a renderer-protocol object (e.g. a threestudio renderer through `adapters.renderer`) used for
            every stage instead of the grid renderers built from `canonical` (which then gives the radius only).
    Returns:
        RegistrationResult (its `summary` is what `congeal register` prints).
    """
    started = time.perf_counter()
    cfg = make_config(preset, features=features, dinov2=dinov2, mask=mask, overrides=overrides)
    device = resolve_device(device)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    stages = _Stages(device, on_stage)

    def load():
        canon = _load_canonical(canonical)
        collection = load_images(images, cfg)
        return canon, collection

    canon, collection = stages.run("load", load)
    out_dir.mkdir(parents=True, exist_ok=True)
    from congeal.canonical.grid import save_canonical

    save_canonical(out_dir / "canonical.safetensors", canon)
    ctx = _Context(cfg, canon, device, extractor, progress, stages, renderer)
    stages.run("candidates", lambda: ctx.candidate_bank(out_dir / "cache"))
    reg = _register_images(ctx, collection)
    stages.run("mapping", lambda: _run_mapping(ctx, collection, reg, out_dir))

    def outputs():
        _write_outputs(out_dir, cfg, ctx, collection.names, reg["records"], collection.paths, collection.crops,
                       {"seed": seed, "preset": preset})
        _save_score_grids(out_dir, collection.names, reg["score_grid"], reg["best_candidate"])
        _write_pictures(out_dir, ctx, collection, reg)
        _map_pictures(out_dir)

    stages.run("outputs", outputs)
    summary = _summary(out_dir, reg["records"], stages.records, started)
    return RegistrationResult(out_dir, list(collection.names), reg["records"], stages.records, summary)


def _save_score_grids(out_dir: Path, names: Sequence[str], grids: Tensor, best: Tensor) -> None:
    """Keep each photo's search score map (for pictures after `--add`): OUT/cache/search-scores.safetensors."""
    from safetensors.torch import load_file

    from congeal.common.atomic import write_safetensors

    path = out_dir / "cache" / "search-scores.safetensors"
    tensors = load_file(str(path)) if path.is_file() else {}
    for name, grid, cand in zip(names, grids.cpu(), best.cpu()):
        tensors[f"grid/{name}"] = grid.contiguous()
        tensors[f"best/{name}"] = cand.reshape(1)
    write_safetensors(path, tensors)


def read_run(run_dir: PathLike) -> Dict[str, Any]:
    """register.json of a finished run (InputError if it is not one)."""
    path = Path(run_dir) / "register.json"
    if not path.is_file():
        raise InputError(run_dir, "is not a registration run (no register.json)",
                         "pass the --out folder of a finished `congeal register`")
    doc = json.loads(path.read_text())
    if doc.get("format") != REGISTER_FORMAT:
        raise InputError(path, f"is not a {REGISTER_FORMAT} file", "re-run `congeal register`")
    return doc


def add_images(run_dir: PathLike, images: Any, device: Union[str, torch.device] = "cpu", progress: bool = True,
               extractor: Optional[FeatureExtractor] = None,
               on_stage: Optional[Callable[[Dict[str, Any]], None]] = None) -> RegistrationResult:
    """Register new photos into an existing run without touching the existing photos' results.

    The run's canonical, config and cached candidate bank are reused; the new photos' poses, maps and state files
    are appended (poses.json / transforms.json / register.json rewritten atomically with the old entries unchanged).

    Args:
        run_dir: a finished `register_collection` run.
        images: folder (or ImageCollection) with the new photos; names must not clash with registered ones.
        device, progress, extractor, on_stage: as in `register_collection`.
    Returns:
        RegistrationResult over all photos (old + new); `summary["added"]` counts the new ones.
    """
    from congeal.canonical.grid import load_canonical
    from congeal.io.crop import Crop
    from congeal.run.outputs import read_poses

    started = time.perf_counter()
    run_dir = Path(run_dir)
    doc = read_run(run_dir)
    cfg = config_from_dict(doc["config"])
    device = resolve_device(device)
    torch.manual_seed(int(doc.get("seed", 0)))
    stages = _Stages(device, on_stage)
    old = read_poses(run_dir / "poses.json")
    canon, collection = stages.run("load", lambda: (load_canonical(run_dir / "canonical.safetensors"),
                                                    load_images(images, cfg, minimum=1)))
    clash = sorted(set(collection.names) & set(old))
    if clash:
        raise InputError(images if not hasattr(images, "names") else None,
                         f"photos already registered in {run_dir}: {', '.join(clash)}",
                         "rename them or leave them out of the --add folder")
    ctx = _Context(cfg, canon, device, extractor, progress, stages)
    if ctx.key != doc.get("cache_key"):
        warnings.warn("the run's candidate cache key differs (extractor or code changed); candidates are rebuilt")
    stages.run("candidates", lambda: ctx.candidate_bank(run_dir / "cache"))
    reg = _register_images(ctx, collection)
    stages.run("mapping", lambda: _run_mapping(ctx, collection, reg, run_dir))

    def outputs():
        records = list(old.values()) + reg["records"]
        entries = doc["images"] + [{"name": n, "path": str(Path(p).resolve()), "crop": c.to_dict()}
                                   for n, p, c in zip(collection.names, collection.paths, collection.crops)]
        names = [e["name"] for e in entries]
        paths = [Path(e["path"]) for e in entries]
        crops = [Crop.from_dict(e["crop"]) for e in entries]
        extra = {k: v for k, v in doc.items() if k not in ("format", "config", "cache_key", "extractor",
                                                          "canonical", "radius", "images")}
        extra["added"] = extra.get("added", []) + [list(collection.names)]
        _write_outputs(run_dir, cfg, ctx, names, records, paths, crops, extra)
        _save_score_grids(run_dir, collection.names, reg["score_grid"], reg["best_candidate"])
        count = len(extra["added"])
        _write_pictures(run_dir, ctx, collection, reg, suffix=f"-added-{count}")
        _map_pictures(run_dir)
        return records, names

    records, names = stages.run("outputs", outputs)
    summary = _summary(run_dir, records, stages.records, started, added=len(collection))
    return RegistrationResult(run_dir, names, records, stages.records, summary)
