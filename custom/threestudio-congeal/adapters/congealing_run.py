"""Rebuild the canonical NeRF of a congealing run (`configs/congeal.yaml` trial folder) from its files.

    run = load_congealing_run("outputs/congeal/cats@20261124-101500")
    canonical = bake_canonical(run.geometry, run.material, resolution=128)
    renderer = ThreestudioRenderer(run.renderer)

Reads `<trial>/configs/parsed.yaml` (threestudio's config snapshot) and a checkpoint (default
`<trial>/ckpts/last.ckpt`), builds the geometry, material and background with the registered types the run used
(any threestudio implicit geometry: implicit-volume, implicit-sdf, volume-grid, ...) and the run's renderer over them,
and loads their weights, checking that every parameter of the three modules was filled.
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass
class CongealingRun:
    trial_dir: str
    config: Any  # the run's `system` section (OmegaConf)
    geometry: Any
    material: Any
    background: Any
    renderer: Any


def _error(path: str, problem: str, fix: str):
    from congeal.common.errors import InputError

    return InputError(path, problem, fix)


def read_checkpoint_weights(ckpt_path: str) -> Dict[str, Any]:
    """The `state_dict` of a Lightning checkpoint, loaded with `weights_only=True` (never a full unpickle: a
    checkpoint may come from someone else; `congeal.weights.torch_files`).

    Raises:
        InputError: a file that is not a readable torch checkpoint, holds Python objects beyond tensors and plain
            data, or has no state dict.
    """
    from congeal.weights.torch_files import load_torch_file

    fix = "point system.canonical_ckpt at a checkpoint written by a congealing run (ckpts/last.ckpt)"
    checkpoint = load_torch_file(ckpt_path, fix)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise _error(ckpt_path, "holds no state_dict (it is not a Lightning checkpoint)", fix)
    return state


def load_congealing_run(trial_dir: str, ckpt_path: Optional[str] = None, device: Any = "cpu") -> CongealingRun:
    """Rebuild geometry/material/background/renderer of a congealing run and load their weights.

    Args:
        trial_dir: the run's trial folder (holds configs/parsed.yaml and ckpts/).
        ckpt_path: checkpoint to load (default: <trial_dir>/ckpts/last.ckpt).
        device: where to put the modules.
    Returns:
        CongealingRun.
    Raises:
        InputError: missing folder/config/checkpoint, or a checkpoint that does not fill the modules.
    """
    import threestudio
    from omegaconf import OmegaConf

    config_path = os.path.join(trial_dir, "configs", "parsed.yaml")
    if not os.path.isfile(config_path):
        raise _error(config_path, "not found: this is not the trial folder of a congealing run",
                     "set system.canonical_run to the folder launch.py printed for `--config configs/congeal.yaml`")
    ckpt_path = ckpt_path or os.path.join(trial_dir, "ckpts", "last.ckpt")
    if not os.path.isfile(ckpt_path):
        raise _error(ckpt_path, "checkpoint not found",
                     "finish (or resume) the congealing run, or set system.canonical_ckpt to an existing .ckpt")
    system_cfg = OmegaConf.load(config_path).system
    system_cfg = OmegaConf.create(OmegaConf.to_container(system_cfg, resolve=True))
    geometry = threestudio.find(system_cfg.geometry_type)(system_cfg.geometry)
    material = threestudio.find(system_cfg.material_type)(system_cfg.material)
    background = threestudio.find(system_cfg.background_type)(system_cfg.background)
    state = read_checkpoint_weights(ckpt_path)
    for prefix, module in (("geometry", geometry), ("material", material), ("background", background)):
        own = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        missing, _unexpected = module.load_state_dict(own, strict=False)
        if missing:
            raise _error(ckpt_path, f"does not hold the run's {prefix} weights (missing {missing[:5]})",
                         "point system.canonical_ckpt at a checkpoint of the same congealing run")
    renderer = threestudio.find(system_cfg.renderer_type)(system_cfg.renderer, geometry=geometry, material=material,
                                                          background=background)
    for module in (geometry, material, background, renderer):
        module.to(device)
        module.eval()
        if hasattr(module, "requires_grad_"):
            module.requires_grad_(False)
    return CongealingRun(trial_dir, system_cfg, geometry, material, background, renderer)
