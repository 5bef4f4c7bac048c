"""Test helpers for MVDream: make `import mvdream` work where setuptools dropped pkg_resources; tiny configs.

    mvdream_importable_or_skip(monkeypatch)
    model = build_mvdream(overrides=TINY_OVERRIDES)     # ~0.3M parameters, CPU, random weights
"""
import importlib
import importlib.resources
import importlib.util
import sys
import types

import pytest

# Tiny sizes for MVDream's packaged sd-v2-base.yaml (GroupNorm needs channel counts divisible by 32). The text
# encoder is replaced by a parameter-free module: OpenCLIP cannot be imported here (it needs torchvision).
TINY_CONTEXT_DIM = 32
TINY_OVERRIDES = {
    "params": {
        "unet_config": {"params": {
            "image_size": 8, "model_channels": 32, "attention_resolutions": [2], "num_res_blocks": 1,
            "channel_mult": [1, 2], "num_head_channels": 16, "context_dim": TINY_CONTEXT_DIM,
            "transformer_depth": 1, "camera_dim": 16,
        }},
        "first_stage_config": {"params": {"ddconfig": {
            "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "resolution": 16, "z_channels": 4,
        }}},
        "cond_stage_config": {"target": "torch.nn.Identity"},
    }
}


def _pkg_resources_stand_in() -> types.ModuleType:
    """STAND-IN for setuptools' pkg_resources (tests only): just `resource_filename`, which mvdream.model_zoo uses."""
    module = types.ModuleType("pkg_resources", "STAND-IN for pkg_resources (tests/mvdream_helpers.py)")

    def resource_filename(package: str, resource: str) -> str:
        return str(importlib.resources.files(package).joinpath(resource))

    module.resource_filename = resource_filename
    module.__stand_in__ = True
    return module


def mvdream_importable_or_skip(monkeypatch) -> None:
    """Skip unless the mvdream package (and einops) is installed; supply pkg_resources when setuptools lacks it."""
    if importlib.util.find_spec("mvdream") is None:
        pytest.skip("the mvdream package is not installed (pip install git+https://github.com/bytedance/MVDream)")
    if importlib.util.find_spec("einops") is None:
        pytest.skip("einops (an MVDream requirement) is not installed")
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        monkeypatch.setitem(sys.modules, "pkg_resources", _pkg_resources_stand_in())
    importlib.import_module("mvdream.ldm.util")
