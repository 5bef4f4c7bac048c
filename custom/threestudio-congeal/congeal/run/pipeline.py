"""The registration pipeline over a collection: photos + canonical -> camera per photo, coordinate maps, pictures.

    result = register_collection("canonical.safetensors", "photos/", "out/run", preset="fast", features="rgb")
    print(result.summary)                                   # JSON-ready dict; files under out/run/
    add_images("out/run", "more_photos/")                   # incremental: only the new photos are registered

Stages (each timed; `on_stage` receives `{"stage", "seconds", "peak_memory_mb", "device"}`):
  load -> candidates (render + frame + featurise the K grid candidates once, cached in the run's cache/) ->
  search -> refine -> select (`congeal.registration.poses.estimate_poses`) -> mapping (`fit_warps`, state + map
  files) -> outputs (poses.json, transforms.json, register.json, pictures). The run folder's files are named by
  `congeal.run.folder.RunFolder`; the settings and presets live in `congeal.registration.registration_config`.
"""
import hashlib
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.common.atomic import write_json, write_safetensors
from congeal.common.device import resolve_device
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.common.stage_timer import StageTimer
from congeal.features.extractors import FeatureExtractor
from congeal.io.exif import KnownFocal, exif_focal
from congeal.registration.registration_config import (RegistrationConfig, build_configured_extractor, config_from_dict,
                                         config_to_dict, make_config)
from congeal.registration.consensus import load_field, save_field
from congeal.registration.mapping import fit_warps
from congeal.registration.poses import PoseEstimates, PoseRenderers, estimate_poses
from congeal.registration.queries import write_forward_map
from congeal.registration.search import CandidateBank, bank_key, build_candidate_bank, load_bank, save_bank
from congeal.registration.state import write_image_state
from congeal.registration.trust import TrustConfig, assess_trust, signals_from_records
from congeal.run.folder import REGISTER_FORMAT, RunFolder
from congeal.run.map_pictures import write_map_pictures
from congeal.run.outputs import camera_record, write_poses, write_transforms
from congeal.viz.pictures import write_overlay_grid, write_score_maps


@dataclass
class RegistrationResult:
    """What a run produced: the run folder, image names, poses.json records, timings, and a summary."""

    out_dir: Path
    names: List[str]
    records: List[Dict[str, Any]]
    stages: List[Dict[str, Any]]
    summary: Dict[str, Any]


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
    cover = F.adaptive_avg_pool2d(collection.mask_cover.float(), size)
    crops = [replace(crop, size=size) for crop in collection.crops]
    return replace(collection, images=images, masks=(cover >= 0.5).float(), mask_cover=cover, crops=crops)


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
    return load_collection(Path(images), size=cfg.working_size, mask=cfg.mask, margin=cfg.margin, min_photos=minimum)


class _Session:
    """The shared objects of a run: config, canonical, renderers, extractor, candidate bank and its cache key."""

    def __init__(self, cfg: RegistrationConfig, canonical: Any, device: torch.device,
                 extractor: Optional[FeatureExtractor], progress: bool, renderer: Any = None):
        self.cfg, self.device, self.progress = cfg, device, progress
        self.canonical = canonical.to(device)
        self.radius = canonical.bounding_radius()
        self.extractor = extractor or build_configured_extractor(cfg, device)
        self.key = bank_key(canonical.content_hash(), self.extractor.identity, cfg.grid, cfg.working_size,
                            cfg.margin, cfg.search, self.radius)
        if renderer is None:
            self.renderers = PoseRenderers.from_canonical(self.canonical, cfg)
        else:
            # an external renderer (e.g. a threestudio renderer through the protocol) renders every stage; the
            # canonical still gives the bounding radius and, with the renderer's identity, the cache key
            self.renderers = PoseRenderers.shared(renderer, cfg)
            self.key = hashlib.sha256(f"{self.key}|{getattr(renderer, 'identity', type(renderer).__name__)}"
                                      .encode()).hexdigest()[:16]

    def candidate_bank(self, folder: RunFolder) -> CandidateBank:
        path = folder.candidates_path(self.key)
        bank = load_bank(path, self.key, self.device)
        if bank is None:
            bank = build_candidate_bank(self.renderers.search, self.extractor, self.cfg.grid, self.radius,
                                        self.cfg.search, self.cfg.working_size, self.cfg.margin, self.device,
                                        progress=self.progress)
            save_bank(path, bank, self.key)
            # use the bank as every later reader gets it (features rounded to float16 like the cache file): a
            # photo's result must not depend on whether its chunk, rank or relaunch built the bank or read it
            bank = replace(bank, features=bank.features.to(torch.float16).float())
        return bank


def _composited(collection: Any, device: torch.device) -> Float[Tensor, "N 3 S S"]:
    """Photos on black outside their masks, like the premultiplied renders."""
    return (collection.images.to(device).float() * collection.masks.to(device).float()).clamp(0, 1)


def _photo_principals(collection: Any) -> Float[Tensor, "N 2"]:
    """Each photo's principal point (its centre: a real photo's camera) in its working frame."""
    centres = [crop.to_working(np.array([0.5 * width, 0.5 * height]))
               for crop, (height, width) in zip(collection.crops, collection.original_sizes)]
    return torch.tensor(np.stack(centres), dtype=torch.float32)


def _known_focals(collection: Any, cfg: RegistrationConfig) -> List[Optional[KnownFocal]]:
    """Each photo's known focal length (given for all, else from its EXIF tags), None where it is estimated."""
    known: List[Optional[KnownFocal]] = []
    for path, (height, _width) in zip(collection.paths, collection.original_sizes):
        if cfg.intrinsics.focal_px:
            known.append(KnownFocal(float(cfg.intrinsics.focal_px), "given"))
        elif cfg.intrinsics.fovy_deg:
            known.append(KnownFocal(0.5 * height / math.tan(0.5 * math.radians(cfg.intrinsics.fovy_deg)), "given"))
        else:
            known.append(exif_focal(path) if cfg.intrinsics.exif else None)
    return known


def _working_fovy(collection: Any, known: List[Optional[KnownFocal]]) -> Float[Tensor, "N"]:
    """The vertical FoV each photo's square crop spans where its focal length is known; NaN elsewhere."""
    return torch.tensor([math.nan if k is None else 2.0 * math.atan(0.5 * crop.side / k.focal_px)
                         for k, crop in zip(known, collection.crops)], dtype=torch.float32)


def _records(collection: Any, estimates: PoseEstimates) -> List[Dict[str, Any]]:
    """poses.json entries: each photo's chosen camera (in its original pixel grid) with the others as alternatives."""
    refined, k = estimates.refined, estimates.k

    def record(i: int, h: int, name: Optional[str]) -> Dict[str, Any]:
        rec = camera_record(name, refined.cameras.c2w[h], refined.cameras.fovy[h], refined.cameras.principal[h],
                            collection.crops[i], collection.original_sizes[i], estimates.scores_of(i, h))
        rec["candidate"] = int(estimates.candidates[h])
        return rec

    records = []
    for i, name in enumerate(collection.names):  # per-image bookkeeping (JSON), not tensor work
        main = record(i, int(estimates.best[i]), name)
        # the collection's verdict: chosen joint score / runner-up's (1 = it cannot tell the two readings apart)
        main["ambiguity"] = round(float(estimates.joint.ambiguity[i]), 4)
        main["undecided"] = bool(estimates.joint.undecided[i])
        main["alternatives"] = [record(i, i * k + int(j), None) for j in estimates.order[i, 1:].tolist()]
        records.append(main)
    return records


def _assess(records: List[Dict[str, Any]], previous: Sequence[Dict[str, Any]], cfg: TrustConfig) -> None:
    """Each new photo's confidence, status and reason (the photos registered before count in the collection's
    medians). With `trust.verdict_flags`, the collection's `undecided` verdict (two readings it cannot tell apart) makes
    an `ok` undecided."""
    trust = assess_trust(signals_from_records(records), cfg,
                         reference=signals_from_records(previous) if previous else None)
    for record, confidence, status, reason in zip(records, trust.confidence.tolist(), trust.status, trust.reasons):
        record["confidence"] = round(float(confidence), 4)
        record["status"] = status
        if reason:
            record["status_reason"] = reason


def _fit_maps(session: _Session, collection: Any, estimates: PoseEstimates, records: List[Dict[str, Any]],
              folder: RunFolder) -> None:
    """fit_warps for all photos at once, then each photo's state and map files."""
    masks = collection.masks.to(session.device).float()
    opacity = estimates.render["opacity"].permute(0, 3, 1, 2)
    with torch.enable_grad():
        warps = fit_warps(estimates.image_feats, estimates.render_feats, masks, opacity, session.cfg.mapping,
                          progress=session.progress)
    for i, name in enumerate(collection.names):
        state = write_image_state(folder.state_path(name), name, collection.crops[i], collection.original_sizes[i], warps[i],
                                  estimates.render["xyz"][i], estimates.render["opacity"][i], masks[i, 0], records[i])
        write_forward_map(folder.map_path(name), state, session.cfg.mapping)


def _write_pictures(folder: RunFolder, cfg: RegistrationConfig, collection: Any, estimates: PoseEstimates,
                    statuses: Sequence[str], suffix: str = "") -> None:
    write_overlay_grid(folder.pictures_dir / f"overlay{suffix}.png", collection.images.float().cpu(),
                       estimates.render["rgb"].cpu(), estimates.render["opacity"].cpu(), collection.names,
                       undecided=estimates.joint.undecided.tolist(), statuses=statuses)
    best = estimates.candidates[estimates.best].cpu()
    el = (best // cfg.grid.n_azimuth) % cfg.grid.n_elevation
    az = best % cfg.grid.n_azimuth
    write_score_maps(folder.pictures_dir / f"search-scores{suffix}.png", estimates.score_grid.cpu(), collection.names,
                     list(zip(el.tolist(), az.tolist())))


def _save_score_grids(folder: RunFolder, names: Sequence[str], estimates: PoseEstimates) -> None:
    """Keep each photo's search score map (for pictures after `--add`)."""
    from safetensors.torch import load_file

    path = folder.search_scores
    tensors = load_file(str(path)) if path.is_file() else {}
    best = estimates.candidates[estimates.best]
    for name, grid, cand in zip(names, estimates.score_grid.cpu(), best.cpu()):
        tensors[f"grid/{name}"] = grid.contiguous()
        tensors[f"best/{name}"] = cand.reshape(1)
    write_safetensors(path, tensors)


def _summary(out_dir: Path, records: List[Dict[str, Any]], stages: List[Dict[str, Any]], started: float,
             added: int = 0) -> Dict[str, Any]:
    ious = torch.tensor([r["iou"] for r in records]) if records else torch.zeros(1)
    summary = {"out": str(out_dir), "images": len(records), "seconds": round(time.perf_counter() - started, 2),
               "mean_iou": round(float(ious.mean()), 4), "min_iou": round(float(ious.min()), 4),
               "stages": {s["stage"]: s["seconds"] for s in stages},
               "poses": str(out_dir / "poses.json"), "pictures": str(out_dir / "pictures")}
    undecided = [r["name"] for r in records if r.get("undecided")]
    summary["undecided"] = len(undecided)
    if undecided:  # photos whose two readings neither they nor the collection could tell apart: check these first
        summary["undecided_images"] = undecided
    # what the run itself does not fully believe, and why: failed cameras are left out of transforms.json, exports,
    # propagate and edit; undecided ones are kept, marked for a look
    summary["failed"] = sum(r.get("status") == "failed" for r in records)
    flagged = {r["name"]: {"status": r["status"], "reason": r.get("status_reason", "")}
               for r in records if r.get("status") in ("failed", "undecided")}
    if flagged:
        summary["flagged"] = flagged
    if added:
        summary["added"] = added
    return summary


def _image_entries(collection: Any) -> List[Dict[str, Any]]:
    return [{"name": n, "path": str(Path(p).resolve()), "crop": c.to_dict()}
            for n, p, c in zip(collection.names, collection.paths, collection.crops)]


def _write_outputs(folder: RunFolder, session: _Session, records: List[Dict[str, Any]],
                   entries: List[Dict[str, Any]], extra: Dict[str, Any]) -> None:
    write_poses(folder.poses, records, extra={"working_size": session.cfg.working_size})
    write_transforms(folder.transforms, records, [Path(e["path"]) for e in entries])
    write_json(folder.register, {
        "format": REGISTER_FORMAT, "config": config_to_dict(session.cfg), "cache_key": session.key,
        "extractor": session.extractor.identity, "canonical": folder.canonical.name, "radius": session.radius,
        "images": entries, **extra,
    })


def _register(folder: RunFolder, session: _Session, collection: Any, timer: StageTimer, extra: Dict[str, Any],
              previous_records: Sequence[Dict[str, Any]] = (), previous_entries: Sequence[Dict[str, Any]] = (),
              picture_suffix: str = "") -> List[Dict[str, Any]]:
    """The stages shared by a new run and `add_images`; returns every record of the run (previous ones first,
    unchanged)."""
    bank = timer.run("candidates", lambda: session.candidate_bank(folder))
    masks = collection.masks.to(session.device).float()
    known = _known_focals(collection, session.cfg)
    # photos registered before vote in the new photos' joint choice (their own choices stay)
    prior = load_field(folder.consensus_field) if previous_records else None
    estimates = estimate_poses(_composited(collection, session.device), masks,
                               _photo_principals(collection).to(session.device),
                               _working_fovy(collection, known).to(session.device), bank, session.extractor,
                               session.renderers, session.cfg, timer, session.progress, prior=prior,
                               mask_cover=collection.mask_cover.to(session.device).float())
    new_records = _records(collection, estimates)
    for record, focal in zip(new_records, known):  # where each camera's intrinsics came from
        record["principal_source"] = "image-centre"
        record["focal_source"] = focal.source if focal is not None else "estimated"
    _assess(new_records, previous_records, session.cfg.trust)
    timer.run("mapping", lambda: _fit_maps(session, collection, estimates, new_records, folder))

    def outputs():
        records = list(previous_records) + new_records
        _write_outputs(folder, session, records, list(previous_entries) + _image_entries(collection), extra)
        _save_score_grids(folder, collection.names, estimates)
        save_field(folder.consensus_field, estimates.joint.field)
        _write_pictures(folder, session.cfg, collection, estimates, [r["status"] for r in new_records],
                        suffix=picture_suffix)
        write_map_pictures(folder.root)
        return records

    return timer.run("outputs", outputs)


def register_collection(canonical: Any, images: Any, out_dir: PathLike, preset: str = "paper",
                        features: Optional[str] = None, device: Union[str, torch.device] = "auto", seed: int = 0,
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
        preset: "paper" or "fast" (the defaults are `congeal register`'s: paper preset, its DINOv2 features, cuda when
            available).
        features: "rgb" / "dinov2" (None = the preset's).
        device: "cpu" / "cuda" / "auto".
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
    from congeal.canonical.grid import save_canonical

    started = time.perf_counter()
    cfg = make_config(preset, features=features, dinov2=dinov2, mask=mask, overrides=overrides)
    device = resolve_device(device)
    torch.manual_seed(seed)
    folder = RunFolder(out_dir)
    timer = StageTimer(device, on_stage)
    canon, collection = timer.run("load", lambda: (_load_canonical(canonical), load_images(images, cfg)))
    folder.root.mkdir(parents=True, exist_ok=True)
    save_canonical(folder.canonical, canon)
    session = _Session(cfg, canon, device, extractor, progress, renderer)
    records = _register(folder, session, collection, timer, extra={"seed": seed, "preset": preset})
    summary = _summary(folder.root, records, timer.records, started)
    return RegistrationResult(folder.root, list(collection.names), records, timer.records, summary)


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

    started = time.perf_counter()
    folder = RunFolder(run_dir)
    doc = folder.read_register()
    cfg = config_from_dict(doc["config"])
    device = resolve_device(device)
    torch.manual_seed(int(doc.get("seed", 0)))
    timer = StageTimer(device, on_stage)
    old = folder.read_poses()
    canon, collection = timer.run("load", lambda: (load_canonical(folder.canonical),
                                                   load_images(images, cfg, minimum=1)))
    clash = sorted(set(collection.names) & set(old))
    if clash:
        raise InputError(images if not hasattr(images, "names") else None,
                         f"photos already registered in {folder.root}: {', '.join(clash)}",
                         "rename them or leave them out of the --add folder")
    session = _Session(cfg, canon, device, extractor, progress)
    if session.key != doc.get("cache_key"):
        warnings.warn("the run's candidate cache key differs (extractor or code changed); candidates are rebuilt")
    extra = {k: v for k, v in doc.items() if k not in ("format", "config", "cache_key", "extractor", "canonical",
                                                        "radius", "images")}
    extra["added"] = extra.get("added", []) + [list(collection.names)]
    records = _register(folder, session, collection, timer, extra, previous_records=list(old.values()),
                        previous_entries=doc["images"], picture_suffix=f"-added-{len(extra['added'])}")
    names = [e["name"] for e in doc["images"]] + list(collection.names)
    summary = _summary(folder.root, records, timer.records, started, added=len(collection))
    return RegistrationResult(folder.root, names, records, timer.records, summary)
