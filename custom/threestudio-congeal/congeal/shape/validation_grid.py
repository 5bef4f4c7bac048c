"""The pictures of stage 2's validation and test renders: which images go into a grid, and when to make a video.

    grid = image_grid(out)                  # threestudio's save_image_grid entries: rgb, normals, opacity
    if has_frames(folder): ...               # a test video only from a folder with frames

The NeRF trains only in stage 2, so nothing is rendered during textual inversion.
"""
import os
from typing import Any, Dict, List


def image_grid(out: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Args: out: a renderer's outputs (`comp_rgb` [B,H,W,3], `comp_normal` [B,H,W,3], `opacity` [B,H,W,1]).
    Returns: the first view's colour (when rendered), normals (when rendered) and opacity, as grid entries."""
    grid = []
    if "comp_rgb" in out:
        grid.append({"type": "rgb", "img": out["comp_rgb"][0], "kwargs": {"data_format": "HWC"}})
    if "comp_normal" in out:
        grid.append({"type": "rgb", "img": out["comp_normal"][0],
                     "kwargs": {"data_format": "HWC", "data_range": (0, 1)}})
    grid.append({"type": "grayscale", "img": out["opacity"][0, :, :, 0],
                 "kwargs": {"cmap": None, "data_range": (0, 1)}})
    return grid


def has_frames(folder: str) -> bool:
    """Args: folder: where the test step saved its frames. Returns: whether it holds any .png."""
    return os.path.isdir(folder) and any(name.endswith(".png") for name in os.listdir(folder))


def renders(batch: Dict[str, Any], stage: str) -> bool:
    """Args: batch: a validation batch. stage: the current stage.
    Returns: whether to render it (a camera batch, and not during textual inversion)."""
    return "rays_o" in batch and stage != "ti"
