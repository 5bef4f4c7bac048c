"""Build MVDream's model from its packaged config without downloading OpenCLIP, then load a checkpoint strictly.

    from congeal.models.mvdream import build_mvdream
    model = build_mvdream("sd-v2.1-base-4view", checkpoint="sd-v2.1-base-4view.pt")   # LatentDiffusionInterface
    eps = model.apply_model(x_noisy, t, {"context": text_emb, "camera": cams, "num_frames": 4})

`mvdream.model_zoo.build_model` instantiates `FrozenOpenCLIPEmbedder(version="laion2b_s32b_b79k")`, which downloads
the full OpenCLIP ViT-H-14 (986M parameters, 3.94 GB: image and text towers), deletes the image tower, and then the
MVDream checkpoint overwrites every text weight anyway. Here the text encoder is built with random weights and a
token-sized image tower (the same class, the same state-dict keys), so the only download is the MVDream checkpoint,
and loading checks that the checkpoint fills every key of the model (strict), listing what is missing/unexpected.
`mvdream` is imported lazily (it is an optional dependency of the core).
"""
import copy
import importlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from congeal.common.errors import InputError

# MVDream model name -> packaged config file (mirrors mvdream.model_zoo.PRETRAINED_MODELS, read lazily below)
MODEL_CONFIGS = {"sd-v2.1-base-4view": "sd-v2-base.yaml", "sd-v1.5-4view": "sd-v1.yaml"}
OPENCLIP_EMBEDDER = "mvdream.ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder"
# a token-sized image tower: FrozenOpenCLIPEmbedder deletes `model.visual` right after construction
_TINY_VISION = {"image_size": 14, "layers": 1, "width": 64, "head_width": 64, "patch_size": 14}


def _mvdream_fix(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError) and error.name == "pkg_resources":
        return ('MVDream imports pkg_resources, which setuptools >= 81 no longer ships: pip install "setuptools<81"')
    if isinstance(error, ModuleNotFoundError) and error.name in ("open_clip", "torchvision"):
        return ("MVDream's text encoder class needs open_clip (and torchvision): pip install open-clip-torch "
                "torchvision (a torchvision build that matches your torch)")
    if isinstance(error, ModuleNotFoundError) and error.name and not error.name.startswith("mvdream"):
        return f"pip install {error.name.split('.')[0]} (an MVDream requirement)"
    return "pip install git+https://github.com/bytedance/MVDream (with its requirements)"


def import_mvdream(module: str = "mvdream.ldm.util") -> Any:
    """Import a module of the MVDream package, turning import failures into an InputError that says the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise InputError(None, f"cannot import {module} ({type(error).__name__}: {error})", _mvdream_fix(error)) \
            from error


def packaged_config_path(model_name: str = "sd-v2.1-base-4view") -> Path:
    """Path of MVDream's packaged YAML for `model_name`, found without importing mvdream (no pkg_resources)."""
    if model_name not in MODEL_CONFIGS:
        raise InputError(None, f"unknown MVDream model_name {model_name!r}",
                         f"use one of {', '.join(MODEL_CONFIGS)}")
    spec = importlib.util.find_spec("mvdream")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "the mvdream package is not installed",
                         "pip install git+https://github.com/bytedance/MVDream")
    path = Path(list(spec.submodule_search_locations)[0]) / "configs" / MODEL_CONFIGS[model_name]
    if not path.is_file():
        raise InputError(path, "MVDream's packaged config is missing", "reinstall the mvdream package")
    return path


def _merge(base: Dict[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for name, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(name), Mapping) and "target" not in value:
            out[name] = _merge(dict(out[name]), value)
        else:
            out[name] = copy.deepcopy(value)
    return out


def model_config(model_name: str = "sd-v2.1-base-4view", overrides: Optional[Mapping[str, Any]] = None,
                 no_openclip_download: bool = True) -> Dict[str, Any]:
    """The `model:` section of MVDream's packaged config as a plain dict, with overrides and the download removed.

    Args:
        model_name: an MVDream model name ("sd-v2.1-base-4view").
        overrides: nested dict merged into the `model` section (e.g. tiny sizes for tests); a mapping that has a
            `target` replaces the whole sub-config instead of merging.
        no_openclip_download: route the OpenCLIP text encoder through `openclip_text_encoder` (no pretrained weights).

    Returns:
        {"target": ..., "params": {...}} ready for `mvdream.ldm.util.instantiate_from_config`.
    """
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(packaged_config_path(model_name)).model, resolve=True)
    if overrides is not None and not isinstance(overrides, dict):  # an OmegaConf node from a threestudio config
        overrides = OmegaConf.to_container(OmegaConf.create(overrides), resolve=True)
    if overrides:
        config = _merge(config, overrides)
    cond = config["params"]["cond_stage_config"]
    if no_openclip_download and cond.get("target") == OPENCLIP_EMBEDDER:
        cond["target"] = f"{__name__}.openclip_text_encoder"
    return config


def openclip_text_encoder(arch: str = "ViT-H-14", version: Optional[str] = None, device: str = "cuda",
                          max_length: int = 77, freeze: bool = True, layer: str = "last") -> torch.nn.Module:
    """MVDream's `FrozenOpenCLIPEmbedder` built with random weights and a token-sized image tower (no download).

    The text tower keeps `arch`'s exact shape, so the MVDream checkpoint fills it; `version` (the pretrained tag) is
    accepted for config compatibility and ignored. Returns the embedder ([B] prompts -> [B,77,1024] for ViT-H-14).
    """
    modules = import_mvdream("mvdream.ldm.modules.encoders.modules")
    import open_clip

    base = open_clip.get_model_config(arch)
    if base is None:
        raise InputError(None, f"open_clip has no model config {arch!r}", "use arch: ViT-H-14")
    text_only = dict(copy.deepcopy(base), vision_cfg=dict(_TINY_VISION))
    name = f"congeal-textonly-{arch}"
    if open_clip.get_model_config(name) is None:
        # add_model_config reads the JSON at once; the temporary file is not needed afterwards
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.json"
            path.write_text(json.dumps(text_only))
            open_clip.add_model_config(path)
    return modules.FrozenOpenCLIPEmbedder(arch=name, version=None, device=device, max_length=max_length,
                                          freeze=freeze, layer=layer)


def instantiate(config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiate a `{"target", "params"}` config with MVDream's own helper (imports mvdream lazily)."""
    return import_mvdream("mvdream.ldm.util").instantiate_from_config(config)


def load_state_dict_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a checkpoint (.pt/.ckpt/.bin torch pickle or .safetensors) as a flat state dict on CPU.

    Torch files are read by `congeal.weights.torch_files.load_torch_file`: always `weights_only=True` (memory-mapped
    where the torch and the file allow), never a full unpickle, whatever the file holds or the torch version is. A
    Lightning-style {"state_dict": ...} is unwrapped.
    """
    from congeal.weights.torch_files import load_torch_file

    path = Path(path).expanduser()
    fix = ("set system.guidance.ckpt_path to the downloaded sd-v2.1-base-4view.pt, or null to use the Hugging Face "
           "cache")
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist", fix)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 - truncated or foreign file: one line, not a Rust traceback
            raise InputError(path, f"cannot read the checkpoint ({type(error).__name__}: {str(error)[:200]})",
                             "re-download the file") from None
    state = load_torch_file(path, "re-download the file; it should be a plain state dict")
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InputError(path, f"holds a {type(state).__name__}, not a state dict", "use MVDream's released .pt")
    return dict(state)


def _non_persistent_buffers(model: torch.nn.Module) -> set:
    names = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            names.add(f"{prefix}.{name}" if prefix else name)
    return names


def load_checkpoint_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                           source: Union[str, Path, None] = None, show: int = 8, assign: bool = False
                           ) -> Tuple[int, int]:
    """Copy `state` into `model`, requiring every key of the model to be filled and no key to be left over.

    Args:
        model: the freshly built model.
        state: its state dict.
        source: file name for messages.
        show: how many missing/unexpected keys to list in the error.
        assign: use the checkpoint's tensors as the model's (no copy; needed for a model built on the meta device).

    Returns:
        (number of tensors loaded, number of parameters loaded).

    Raises:
        InputError listing missing and unexpected keys (and shape mismatches), e.g. a v1.5 checkpoint with the
        v2.1 config.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - _non_persistent_buffers(model))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                listed = ", ".join(keys[:show]) + (f", ... ({len(keys) - show} more)" if len(keys) > show else "")
                parts.append(f"{len(keys)} {label} keys: {listed}")
        raise InputError(source, "the checkpoint does not fill the model exactly: " + "; ".join(parts),
                         "use the checkpoint that matches model_name (sd-v2.1-base-4view.pt for "
                         "sd-v2.1-base-4view, sd-v1.5-4view.pt for sd-v1.5-4view)")
    subset = {k: state[k] for k in expected}
    if assign:
        model.load_state_dict(subset, strict=True, assign=True)
    else:
        model.load_state_dict(subset, strict=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor the checkpoint cannot provide (a non-persistent buffer built on the meta device)
        raise RuntimeError(f"tensors left unmaterialised after loading: {', '.join(left[:show])}")
    n_params = sum(p.numel() for p in model.parameters())
    return len(expected), n_params


def supports_meta_loading() -> bool:
    """torch >= 2.1: `with torch.device("meta")` construction and `load_state_dict(..., assign=True)`."""
    import inspect

    return hasattr(torch.device, "__enter__") and \
        "assign" in inspect.signature(torch.nn.Module.load_state_dict).parameters


def _instantiate_unet_vae_on_meta(config: Mapping[str, Any]) -> torch.nn.Module:
    """The interface with its UNet and VAE built on the meta device (no memory, no random init); the text encoder
    and the noise-schedule buffers are built normally (the schedule is computed with numpy)."""
    params = config["params"]
    light = copy.deepcopy(dict(config))
    light["params"] = dict(params, unet_config={"target": "torch.nn.Identity"},
                           first_stage_config={"target": "torch.nn.Identity"})
    model = instantiate(light)
    with torch.device("meta"):
        unet = instantiate(params["unet_config"])
        vae = instantiate(params["first_stage_config"])
    model.model.diffusion_model = unet
    model.first_stage_model = vae
    return model


def resolve_checkpoint(model_name: str = "sd-v2.1-base-4view", ckpt_path: Optional[str] = None,
                       repo_id: str = "MVDream/MVDream", allow_download: bool = True) -> Path:
    """The checkpoint file to load: `ckpt_path` if given, else the Hugging Face cache, else a download.

    With HF_HUB_OFFLINE=1 (or `allow_download=False`) a cache miss raises an InputError saying how to fill it.
    """
    from congeal.weights.hub_cache import hub_offline
    from congeal.weights.locate import locate
    from congeal.weights.table import SOURCES

    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise InputError(path, "MVDream checkpoint not found", "fix system.guidance.ckpt_path (or set it to null)")
        return path
    filename = Path(SOURCES["mvdream"].extra["model_files"].get(model_name, f"{model_name}.pt")).name
    hit = locate("mvdream", f"{repo_id}:{filename}")
    if hit.present and hit.path is not None:
        return hit.path
    if hub_offline() or not allow_download:
        raise InputError(None, f"{repo_id}/{filename} is not in the Hugging Face cache and downloads are off",
                         hit.fix)
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename))


def build_mvdream(model_name: str = "sd-v2.1-base-4view", checkpoint: Union[str, Path, Mapping, None] = None,
                  overrides: Optional[Mapping[str, Any]] = None, no_openclip_download: bool = True,
                  low_memory: bool = True) -> torch.nn.Module:
    """MVDream's `LatentDiffusionInterface` from its packaged config, without OpenCLIP's pretrained weights.

    Args:
        model_name: "sd-v2.1-base-4view" (default) or "sd-v1.5-4view".
        checkpoint: a file path, an already-loaded state dict, or None (random weights; for tests and timing).
        overrides: nested dict merged into the config's `model` section (tiny sizes in tests).
        no_openclip_download: False reproduces MVDream's original construction (downloads OpenCLIP).
        low_memory: with a checkpoint and torch >= 2.1, build the UNet and VAE on the meta device and adopt the
            (memory-mapped) checkpoint tensors instead of allocating, randomly initialising and overwriting them.

    Returns:
        the model on CPU in eval mode; every tensor filled from `checkpoint` when one is given (strict).
    """
    config = model_config(model_name, overrides, no_openclip_download)
    # a caller's in-memory state dict is copied, not adopted: only files are loaded without a copy
    meta = low_memory and isinstance(checkpoint, (str, Path)) and supports_meta_loading()
    model = _instantiate_unet_vae_on_meta(config) if meta else instantiate(config)
    if checkpoint is not None:
        state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict_file(checkpoint)
        load_checkpoint_strict(model, state, None if isinstance(checkpoint, Mapping) else checkpoint, assign=meta)
        del state
    return model.eval()


def count_parameters(module: torch.nn.Module) -> Dict[str, int]:
    """Parameter counts of the model's parts: {"unet", "vae", "text", "total"} (meta tensors count too)."""
    parts = {"unet": getattr(module, "model", None), "vae": getattr(module, "first_stage_model", None),
             "text": getattr(module, "cond_stage_model", None)}
    counts = {name: sum(p.numel() for p in part.parameters()) if part is not None else 0
              for name, part in parts.items()}
    counts["total"] = sum(p.numel() for p in module.parameters())
    return counts


__all__ = ["MODEL_CONFIGS", "build_mvdream", "model_config", "openclip_text_encoder", "instantiate",
           "load_state_dict_file", "load_checkpoint_strict", "resolve_checkpoint", "packaged_config_path",
           "import_mvdream", "count_parameters", "supports_meta_loading"]

