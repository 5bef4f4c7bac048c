"""Dense cross-image correspondences through the canonical space: reverse_B(forward_A(p)).

    corr = Correspondence("out/run")
    points, valid = corr.transfer("cat_01", "cat_07", [(120.5, 80.5), (64.0, 200.0)])   # original pixels
    flow, valid = corr.dense("cat_01", "cat_07")                                        # [H,W,2], [H,W]

`identity_warp=True` switches the coordinate maps off (every warp is the identity): the pose alone carries the
transfer, which is the baseline the mapping has to beat.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from congeal.common.errors import InputError
from congeal.registration.mapping import MappingConfig
from congeal.registration.queries import forward_map, forward_points, reverse_points
from congeal.registration.state import ImageState, load_image_state
from congeal.common.paths import PathLike
from congeal.run.folder import RunFolder


def _run_mapping_config(run: RunFolder) -> MappingConfig:
    """Thresholds the run was registered with (register.json), else the defaults."""
    cfg = MappingConfig()
    data = run.read_register_json()
    if data is None:
        return cfg
    found: Any = data.get("mapping") or (data.get("config") or {}).get("mapping") if isinstance(data, dict) else None
    if isinstance(found, dict):
        for key, value in found.items():
            if key in cfg.__dataclass_fields__ and not isinstance(value, (dict, list)):
                setattr(cfg, key, type(getattr(cfg, key))(value))
    return cfg


class Correspondence:
    """Point transfer between the registered images of one run.

    Args:
        run_dir: a `congeal register` output folder (needs state/<name>.safetensors).
        identity_warp: ignore the coordinate maps (baseline).
        cfg: forward/reverse thresholds; default: the run's own (register.json) or MappingConfig().
        device: torch device for the look-ups.
    """

    def __init__(self, run_dir: PathLike, identity_warp: bool = False, cfg: Optional[MappingConfig] = None,
                 device: Union[str, torch.device, None] = None):
        self.run = RunFolder(run_dir)
        self.run_dir = self.run.root
        if not self.run.state_dir.is_dir():
            raise InputError(self.run_dir, "is not a registration run (no state/ folder)",
                             "pass the --out folder of `congeal register`")
        self.identity_warp = bool(identity_warp)
        self.cfg = cfg or _run_mapping_config(self.run)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._states: Dict[str, ImageState] = {}

    @property
    def names(self) -> List[str]:
        """Registered image names, sorted."""
        return self.run.state_names()

    def state(self, name: str) -> ImageState:
        """The image's ImageState (identity warp when the object was built with identity_warp=True)."""
        if name not in self._states:
            state = load_image_state(self.run.state_path(name), self.device)
            self._states[name] = state.with_identity_warp() if self.identity_warp else state
        return self._states[name]

    def transfer(self, src: str, trg: str, points: Any) -> Tuple[Any, Any]:
        """Move points from image `src` to image `trg`.

        Args:
            src, trg: image names.
            points: [P,2] original-pixel (x, y) of `src` (tensor, array or list of pairs).
        Returns:
            (points [P,2] original pixels of `trg`, NaN where invalid; valid [P] bool) — torch tensors when
            `points` was a tensor, numpy arrays otherwise.
        """
        as_tensor = isinstance(points, Tensor)
        pts = torch.as_tensor(np.asarray(points.detach().cpu() if as_tensor else points, dtype=np.float32))
        if pts.numel() == 0:
            pts = pts.reshape(0, 2)
        if pts.ndim != 2 or pts.shape[-1] != 2:
            raise InputError(None, f"points must be [P,2] (x, y), got shape {tuple(pts.shape)}",
                             "pass a list of (x, y) pairs")
        xyz, ok_a = forward_points(self.state(src), pts.to(self.device), self.cfg, snap=True)
        out, ok_b = reverse_points(self.state(trg), xyz, self.cfg)
        valid = ok_a & ok_b
        out = torch.where(valid[:, None], out, torch.full_like(out, float("nan")))
        if as_tensor:
            return out.to(points.device), valid.to(points.device)
        return out.cpu().numpy(), valid.cpu().numpy()

    def dense(self, src: str, trg: str) -> Tuple[np.ndarray, np.ndarray]:
        """Flow field from every object pixel of `src` to `trg`.

        Returns:
            flow [H,W,2] float32 displacement (target xy − source pixel centre; NaN where invalid) on the source's
            original grid, valid [H,W] bool.
        """
        state = self.state(src)
        xyz, ok_a = forward_map(state, self.cfg)
        h, w = ok_a.shape
        flat = xyz.reshape(-1, 3).to(self.device)
        sel = ok_a.reshape(-1).to(self.device)
        target = torch.full((h * w, 2), float("nan"), device=self.device)
        valid = torch.zeros(h * w, dtype=torch.bool, device=self.device)
        if bool(sel.any()):
            out, ok_b = reverse_points(self.state(trg), flat[sel], self.cfg)
            target[sel] = out
            valid[sel] = ok_b
        ys, xs = torch.meshgrid(torch.arange(h, device=self.device) + 0.5, torch.arange(w, device=self.device) + 0.5,
                                indexing="ij")
        flow = target.reshape(h, w, 2) - torch.stack([xs, ys], dim=-1)
        return flow.cpu().numpy().astype(np.float32), valid.reshape(h, w).cpu().numpy()
