"""The configuration of stage 3: every stage's settings in one `RegistrationConfig`, the presets, and how to build one.

    cfg = make_config("fast", overrides=["refine.steps=300", "search.top_k=2"])
    extractor = build_configured_extractor(cfg, torch.device("cpu"))
    cfg == config_from_dict(config_to_dict(cfg))            # what register.json stores

Presets: `paper` (the paper's sizes: 3x16x16 grid, 1000 refinement steps, 4000 mapping steps, DINOv2 features)
and `fast` (CPU-friendly settings for synthetic benchmarks). Any field can be overridden with `overrides`
(a dict or "key=value" dot-list strings).
"""
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Union

import torch

from congeal.common.errors import InputError
from congeal.features.extractors import FeatureExtractor, build_extractor
from congeal.geometry.candidates import CandidateGridConfig
from congeal.registration.consensus import ConsensusConfig
from congeal.registration.trust import TrustConfig
from congeal.registration.mapping import MappingConfig
from congeal.registration.refine import RefineConfig
from congeal.registration.search import SearchConfig


@dataclass
class FeatureConfig:
    """Which feature extractor the search (and the mapping) uses."""

    name: str = "rgb"
    """"rgb" or "dinov2"."""
    dinov2_model: str = "facebook/dinov2-giant"
    """model id or local folder for DINOv2."""
    layer: int = -1
    """DINOv2 layer (-1 = final normed output, i = hidden state i)."""
    input_size: int = 224
    """DINOv2 input side (multiple of 14)."""
    rgb_grid: int = 16
    """RGB feature grid side."""
    rgb_normalise: str = "none"
    """Colour normalisation of the rgb features, also the refinement's colour term: "none", "gain" (each image's colours
    over their mean on the object) or "chroma" (chromaticity; shading-blind). See `congeal.features.extractors`."""
    batch_size: int = 64
    """images per extractor call."""


@dataclass
class IntrinsicsConfig:
    """What is known about the photos' cameras. The principal point is always the photo's centre."""

    fovy_deg: Optional[float] = None
    """Every photo's vertical field of view in degrees, when the camera is known (`congeal register --fovy`)."""
    focal_px: Optional[float] = None
    """Every photo's focal length in pixels of the original photos (`congeal register --focal`); wins over fovy_deg."""
    exif: bool = True
    """Read each photo's focal length from its EXIF tags (`congeal.io.exif`) when neither of the above is set."""


@dataclass
class RegistrationConfig:
    """Everything that determines a registration run (serialises with omegaconf; stored in register.json)."""

    working_size: int = 64
    """S, the side of the photos' working crops and of the final renders."""
    margin: float = 0.1
    """crop margin around the object (fraction of its longer bbox side, each side), photos and renders."""
    mask: str = "auto"
    """mask source for the photos ("auto", "alpha", "file", "white-background", "sam")."""
    final_samples: int = 64
    """ray-marching samples of the final renders (selection, mapping, pictures)."""
    final_front_level: float = 0.25
    """the final renders' canonical point of a ray whose expected termination point falls between a thin part and
    the surface behind it (more than `final_front_gap_cells` behind where its opacity first reaches this level) is
    that first crossing (`GridRenderer`'s `front_level`; 0 = always the expected point). Without it a keypoint on
    spot's ear mapped 0.23–0.29 of the object's size away, onto the head (docs/evaluation.md, stop 26)."""
    final_front_gap_cells: float = 2.0
    """see `final_front_level`."""
    intrinsics: IntrinsicsConfig = field(default_factory=IntrinsicsConfig)
    """known focal lengths (given, or from EXIF); how refinement uses them is `refine.known_focal`."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """the feature extractor of search, selection and mapping."""
    grid: CandidateGridConfig = field(default_factory=CandidateGridConfig)
    """the candidate poses of the exhaustive search (FoVs x azimuths x elevations)."""
    search: SearchConfig = field(default_factory=SearchConfig)
    """candidate scoring and the hypotheses kept."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """the soft-IoU pose refinement."""
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    """the joint choice of one hypothesis per photo by the whole collection (flips, ambiguity)."""
    trust: TrustConfig = field(default_factory=TrustConfig)
    """How far each photo's camera is trusted: the calibrated confidence and the ok / undecided / failed status."""
    mapping: MappingConfig = field(default_factory=MappingConfig)
    """the per-photo coordinate-map fit."""


PRESETS: Dict[str, Dict[str, Any]] = {
    # the paper's sizes; meant for a GPU
    "paper": {
        "working_size": 224, "final_samples": 96,
        "features": {"name": "dinov2", "input_size": 224, "batch_size": 64},
        "grid": {"fovy_deg": [25.0, 40.0, 55.0], "n_azimuth": 16, "n_elevation": 16},
        "search": {"render_size": 224, "render_samples": 96, "chunk": 128, "top_k": 8},
        # up to the paper's 1000 steps, with the fast preset's colour term, step size and cross-instance settings
        # (8 hypotheses pruned to 2, stretched phase; docs/evaluation.md); 32 silhouette samples (the closed-form
        # silhouette renderer needs few) and per-hypothesis early stopping keep it near the fast preset's cost per
        # hypothesis
        "refine": {"steps": 1000, "resolution": 64, "feature_resolution": 32, "samples": 32, "patience": 50,
                   "lr_rotation": 0.03, "feature_weight": 1.0, "prune_step": 20, "prune_keep": 2,
                   "lr_stretch": 0.01, "stretch_prior_weight": 2.0, "stretch_steps": 60,
                   "polish_feature_weight": 0.1},
        "mapping": {"steps": 4000},
    },
    # CPU-friendly: the same 768-candidate grid at low resolution, short refinement and mapping
    "fast": {
        "working_size": 64, "final_samples": 48,
        "features": {"name": "rgb", "rgb_grid": 16},
        "search": {"render_size": 96, "render_samples": 32, "chunk": 128, "top_k": 8, "mask_size": 64},
        # the colour term settles what silhouettes leave ambiguous (FoV vs distance vs rotation); the silhouette at
        # 64 px (colour at 32 px) halves the rotation error of 32 px (benchmark sets, tuning seeds: median 2.1° -> 0.6°).
        # 8 hypotheses pruned to 2 after 20 steps find the right side of near-symmetric objects more often than 4 or 2
        # (4 left two photos of the cross-instance tuning sets 45-49 degrees off, and a held-out chair photo flipped);
        # the stretched phase lets another instance's proportions be a stretch, not a turned camera (docs/evaluation.md)
        # after the vote, the photos the canonical fits are polished at colour weight 0.1 (shaded photos bias the colour
        # term; held-out same-instance medians -0.3 to -0.5 degrees)
        "refine": {"steps": 200, "resolution": 64, "feature_resolution": 32, "samples": 24, "patience": 25,
                   "lr_rotation": 0.03, "feature_weight": 1.0, "prune_step": 20, "prune_keep": 2,
                   "lr_stretch": 0.01, "stretch_prior_weight": 2.0, "stretch_steps": 60,
                   "polish_feature_weight": 0.1},
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
        cfg = _to_config(merged)
    except OmegaConfBaseException as error:
        raise InputError(None, f"bad registration setting: {str(error).splitlines()[0]}",
                         "check the key against RegistrationConfig (e.g. --set refine.steps=300)") from error
    if cfg.features.name not in ("rgb", "dinov2"):
        raise InputError(None, f"unknown features {cfg.features.name!r}", "use rgb or dinov2")
    if cfg.refine.known_focal not in ("fixed", "prior"):
        raise InputError(None, f"unknown refine.known_focal {cfg.refine.known_focal!r}", "use fixed or prior")
    if cfg.search.top_k < 1 or cfg.working_size < 16 or cfg.refine.steps < 0:
        raise InputError(None, "search.top_k must be >= 1, working_size >= 16 and refine.steps >= 0",
                         "fix the --set values")
    return cfg


def config_to_dict(cfg: RegistrationConfig) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def config_from_dict(data: Dict[str, Any]) -> RegistrationConfig:
    """The config a run stored (register.json). Settings this version no longer has are dropped with a warning, so a
    run folder written by an older version stays readable (`--add`, `--test`, `--export`)."""
    from omegaconf import OmegaConf

    known = _known_keys(RegistrationConfig, data, "")
    return _to_config(OmegaConf.merge(OmegaConf.structured(RegistrationConfig), OmegaConf.create(known)))


def _known_keys(cls: type, data: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    import dataclasses
    import typing
    import warnings

    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        if key not in hints:
            warnings.warn(f"registration setting {prefix}{key} is not used by this version; ignored")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            out[key] = _known_keys(hints[key], value, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def _to_config(node: Any) -> RegistrationConfig:
    """`OmegaConf.to_object(node)` with every `Tuple` field a tuple: omegaconf < 2.4 (threestudio pins 2.3.0) gives lists."""
    from omegaconf import OmegaConf

    return _dataclass_from_dict(RegistrationConfig, OmegaConf.to_container(node, resolve=True))


def _dataclass_from_dict(cls: type, data: Dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        value, hint = data[item.name], hints[item.name]
        if dataclasses.is_dataclass(hint):
            value = _dataclass_from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return cls(**values)


def build_configured_extractor(cfg: RegistrationConfig, device: torch.device) -> FeatureExtractor:
    """The feature extractor `cfg.features` names, on `device`."""
    fc = cfg.features
    if fc.name == "rgb":
        return build_extractor("rgb", grid=fc.rgb_grid, batch_size=fc.batch_size, normalise=fc.rgb_normalise)
    return build_extractor("dinov2", device=device, model=fc.dinov2_model, layer=fc.layer,
                           input_size=fc.input_size, batch_size=fc.batch_size)
