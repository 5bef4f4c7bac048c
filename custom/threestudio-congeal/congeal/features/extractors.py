"""Dense feature extractors: images [B,3,H,W] in [0,1] -> L2-normalised features [B,C,h,w].

    extractor = build_extractor("rgb")                               # colour features, no weights
    extractor = build_extractor("dinov2", model="facebook/dinov2-giant", device="cuda")
    feats = extractor.extract(images)                                # [B,C,h,w], unit length over C

Every extractor has an `identity` string (part of the search cache key: a different model, layer or input size must
not reuse cached candidate features) and processes its input in chunks of `batch_size` so memory stays bounded.
"""
import hashlib
import os
from pathlib import Path
from typing import Any, Optional, Protocol, Union, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from congeal.common.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# transformers ids -> timm model names (timm fallback for transformers < 4.31, which has no Dinov2Model)
_TIMM_NAMES = {
    "facebook/dinov2-small": "vit_small_patch14_dinov2.lvd142m",
    "facebook/dinov2-base": "vit_base_patch14_dinov2.lvd142m",
    "facebook/dinov2-large": "vit_large_patch14_dinov2.lvd142m",
    "facebook/dinov2-giant": "vit_giant_patch14_dinov2.lvd142m",
}


@runtime_checkable
class FeatureExtractor(Protocol):
    """What pose search, refinement and mapping need from a feature extractor."""

    identity: str

    def extract(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B C h w"]:
        """Images in [0,1] -> features, L2-normalised over C."""
        ...


def _normalise(features: Float[Tensor, "B C h w"]) -> Float[Tensor, "B C h w"]:
    return F.normalize(features, dim=1, eps=1e-6)


#: colour normalisations of `RGBFeatures` (features.rgb_normalise)
RGB_NORMALISATIONS = ("none", "gain", "chroma")
_BACKGROUND_LEVEL = 1e-3  # r + g + b of a cell below this is the black outside the object (photos and renders alike)


def _normalised_colours(cells: Float[Tensor, "B 3 g g"], normalise: str) -> Float[Tensor, "B 3 g g"]:
    """Cell colours under `normalise` (see `RGBFeatures`); the black background stays black."""
    if normalise == "none":
        return cells
    total = cells.sum(1, keepdim=True)
    foreground = (total > _BACKGROUND_LEVEL).float()
    if normalise == "gain":
        mean = (cells * foreground).sum((2, 3), keepdim=True) / foreground.sum((2, 3), keepdim=True).clamp_min(1.0)
        return (cells * (0.5 / mean.clamp_min(1e-3))).clamp(0.0, 1.0) * foreground
    return 1.5 * cells / total.clamp_min(_BACKGROUND_LEVEL) * foreground  # grey -> 0.5 in every channel


class RGBFeatures:
    """Colour features at a coarse grid: cheap, weight-free, meaningful for part-coloured shapes.

    Per cell of a `grid`×`grid` lattice: the mean colour of the cell, the mean colour of its 3×3 neighbourhood
    (local context), and a small constant channel. Colours are centred at grey so dark and bright parts differ in
    direction; the constant keeps black (background of premultiplied renders) from becoming a zero vector.

    Args:
        grid: feature resolution h = w.
        context_weight: weight of the neighbourhood-mean channels relative to the cell mean.
        batch_size: images per chunk.
        normalise: "none"; "gain" divides each image's colours by their mean over the object (a darker or tinted
            photo of the same colours reads the same); "chroma" keeps each cell's chromaticity rgb / (r + g + b) alone
            (Lambert shading scales a surface point's colour, so a shaded photo and an unlit render agree cell by
            cell, at the cost of telling dark from bright parts of one hue).
    """

    def __init__(self, grid: int = 16, context_weight: float = 0.5, batch_size: int = 256, normalise: str = "none"):
        if normalise not in RGB_NORMALISATIONS:
            raise InputError(None, f"unknown colour normalisation {normalise!r}",
                             f"use one of {', '.join(RGB_NORMALISATIONS)} (features.rgb_normalise)")
        self.grid = int(grid)
        self.context_weight = float(context_weight)
        self.batch_size = int(batch_size)
        self.normalise = normalise
        self.identity = f"rgb-g{self.grid}-c{self.context_weight:g}" + ("" if normalise == "none" else f"-{normalise}")

    def _extract_chunk(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 7 g g"]:
        # area pooling to the grid: anti-aliased whatever the input size
        cells = _normalised_colours(F.adaptive_avg_pool2d(images.float(), self.grid), self.normalise)  # [B,3,g,g]
        context = F.avg_pool2d(cells, 3, stride=1, padding=1, count_include_pad=False)
        constant = torch.full_like(cells[:, :1], 0.25)
        centred = torch.cat([cells - 0.5, self.context_weight * (context - 0.5), constant], dim=1)
        return _normalise(centred)

    def extract(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 7 g g"]:
        """Images in [0,1] -> unit-length features on a grid×grid lattice (differentiable)."""
        _check_images(images)
        chunks = [self._extract_chunk(chunk) for chunk in images.split(self.batch_size)]
        return torch.cat(chunks) if chunks else images.new_zeros(0, 7, self.grid, self.grid)


class DINOv2Features:
    """DINOv2 patch features (transformers `Dinov2Model`, or timm when transformers has no Dinov2Model).

    Args:
        model: a model id ("facebook/dinov2-giant"), a local directory saved with `save_pretrained`, or an
            already-built `torch.nn.Module` (a transformers Dinov2Model, e.g. random weights for benchmarks).
        layer: -1 = the final (layer-normed) output; i >= 0 = hidden state i of `output_hidden_states`
            (0 = patch embeddings, L = last block before the final norm).
        input_size: side the images are resized to; a multiple of the patch size (14).
        device: where the model runs.
        dtype: model dtype; default bfloat16 on CUDA, float32 elsewhere.
        batch_size: images per forward pass.
        backend: "auto" (transformers if it has Dinov2Model, else timm), "transformers" or "timm".
    """

    def __init__(self, model: Union[str, Path, torch.nn.Module] = "facebook/dinov2-giant", layer: int = -1,
                 input_size: int = 224, device: Union[str, torch.device] = "cpu",
                 dtype: Optional[torch.dtype] = None, batch_size: int = 32, backend: str = "auto"):
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.layer = int(layer)
        self.batch_size = int(batch_size)
        self.input_size = int(input_size)
        if isinstance(model, torch.nn.Module):
            self.backend, self.model, name = _module_backend(model), model, f"module-{type(model).__name__}"
            name += "-" + _config_digest(model)
        else:
            name = str(model)
            self.backend, self.model = _load_model(name, backend)
        self.model = self.model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.patch_size = _patch_size(self.model, self.backend)
        if self.input_size % self.patch_size != 0:
            fix_size = max(self.patch_size, round(self.input_size / self.patch_size) * self.patch_size)
            raise InputError(None, f"DINOv2 input_size {self.input_size} is not a multiple of the patch size "
                                   f"{self.patch_size}", f"use input_size={fix_size}")
        self.prefix_tokens = _prefix_tokens(self.model, self.backend)
        self.identity = f"dinov2-{self.backend}-{name}-l{self.layer}-s{self.input_size}-{str(self.dtype)[6:]}"

    def _tokens(self, pixels: Float[Tensor, "B 3 S S"]) -> Float[Tensor, "B T C"]:
        """Normalised pixels -> tokens of the chosen layer (prefix tokens included)."""
        if self.backend == "transformers":
            if self.layer == -1:
                return self.model(pixel_values=pixels).last_hidden_state
            out = self.model(pixel_values=pixels, output_hidden_states=True)
            return out.hidden_states[self.layer]
        # timm: run the blocks ourselves so intermediate layers are reachable
        if self.layer == -1:
            return self.model.forward_features(pixels)
        x = self.model.patch_embed(pixels)
        x = self.model._pos_embed(x)
        x = self.model.norm_pre(x)
        for block in self.model.blocks[: self.layer]:
            x = block(x)
        return x

    def _extract_chunk(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B C h w"]:
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
        size = self.input_size
        pixels = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True)
        pixels = ((pixels - mean) / std).to(self.device, self.dtype)
        tokens = self._tokens(pixels)
        side = size // self.patch_size
        patches = tokens[:, self.prefix_tokens:]  # drop CLS (+ register) tokens
        grid = patches.reshape(patches.shape[0], side, side, patches.shape[-1]).permute(0, 3, 1, 2)
        return _normalise(grid.float()).to(images.device)

    def extract(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B C h w"]:
        """Images in [0,1] -> unit-length patch features, h = w = input_size / patch size."""
        _check_images(images)
        # no torch.no_grad here: refinement's optional feature term differentiates through it; callers that only
        # score wrap the call in torch.no_grad()
        chunks = [self._extract_chunk(chunk) for chunk in images.split(self.batch_size)]
        return torch.cat(chunks)


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B,3,H,W], got {tuple(images.shape)}")


def _config_digest(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    text = config.to_json_string() if hasattr(config, "to_json_string") else repr(model)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _module_backend(model: torch.nn.Module) -> str:
    return "transformers" if hasattr(model, "config") and hasattr(model.config, "patch_size") else "timm"


def _patch_size(model: torch.nn.Module, backend: str) -> int:
    if backend == "transformers":
        return int(model.config.patch_size)
    size = model.patch_embed.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _prefix_tokens(model: torch.nn.Module, backend: str) -> int:
    if backend == "transformers":
        return 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
    return int(getattr(model, "num_prefix_tokens", 1))


def _transformers_has_dinov2() -> bool:
    try:
        from transformers import Dinov2Model  # noqa: F401  (transformers >= 4.31)
    except ImportError:
        return False
    return True


def _load_model(name: str, backend: str):
    """Load DINOv2 weights by id or local path; any failure becomes an InputError that says what to do."""
    use_transformers = backend == "transformers" or (backend == "auto" and _transformers_has_dinov2())
    local = Path(name).expanduser()
    if use_transformers:
        try:
            from transformers import AutoConfig, Dinov2Model

            config = AutoConfig.from_pretrained(str(local) if local.exists() else name)
            if getattr(config, "model_type", "") == "dinov2_with_registers":
                from transformers import Dinov2WithRegistersModel as model_class
            else:
                model_class = Dinov2Model
            model = model_class.from_pretrained(str(local) if local.exists() else name)
        except ImportError as error:
            raise InputError(None, f"transformers cannot load DINOv2 ({error})",
                             "pip install 'transformers>=4.31' or install timm") from error
        except (OSError, ValueError, KeyError) as error:
            raise InputError(name, f"cannot load a DINOv2 model from this id or folder ({error.__class__.__name__})",
                             "pass a Hugging Face id such as facebook/dinov2-giant (downloaded once, needs network "
                             "or a filled HF cache) or a local folder written by save_pretrained "
                             "(config.json + model.safetensors)") from error
        return "transformers", model
    try:
        import timm
    except ImportError as error:
        raise InputError(None, "neither transformers>=4.31 (Dinov2Model) nor timm is installed",
                         "pip install 'transformers>=4.31' or pip install timm") from error
    try:
        if local.exists():
            weights = local / "model.safetensors" if local.is_dir() else local
            arch = os.environ.get("CONGEAL_TIMM_ARCH", _TIMM_NAMES["facebook/dinov2-giant"])
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(weights)},
                                      dynamic_img_size=True)
        else:
            model = timm.create_model(_TIMM_NAMES.get(name, name), pretrained=True, dynamic_img_size=True)
    except Exception as error:  # timm raises RuntimeError/OSError/HF errors for unknown names and missing files
        raise InputError(name, f"timm cannot load this DINOv2 model ({error.__class__.__name__}: {error})",
                         f"use one of {sorted(_TIMM_NAMES)} or a timm model name, or upgrade transformers") from error
    return "timm", model


def build_extractor(name: str, device: Union[str, torch.device] = "cpu", **kwargs: Any) -> FeatureExtractor:
    """Build a feature extractor by name.

    Args:
        name: "rgb" or "dinov2".
        device: device for models with weights.
        **kwargs: passed to `RGBFeatures` / `DINOv2Features` (e.g. model=, layer=, input_size=).
    Returns:
        the extractor.
    """
    if name == "rgb":
        kwargs = {k: v for k, v in kwargs.items() if k in ("grid", "context_weight", "batch_size", "normalise")}
        return RGBFeatures(**kwargs)
    if name == "dinov2":
        return DINOv2Features(device=device, **kwargs)
    raise InputError(None, f"unknown feature extractor {name!r}", "use --features rgb or --features dinov2")

