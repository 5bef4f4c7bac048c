"""A finished registration run as the apps read it: names, original photos, maps, poses, canonical.

    run = RegisteredRun("out/run")
    run.names                         # photos with a pose and a coordinate map, in poses.json order
    run.left_out                      # {name: reason}: cameras the run itself calls failed (not in names)
    run.require("cat_07")             # InputError naming the run and listing its photos when unknown
    omap = run.object_map("cat_07")   # ObjectMap: xyz [H,W,3] (NaN outside), valid [H,W]  (maps/cat_07.npz)
    photo = run.photo("cat_07")       # Photo: rgb [H,W,3] float32, alpha [H,W] or None, on the map's grid
    corr = run.correspondence         # congeal.run.correspondence.Correspondence (lazy)

Every file is found through `congeal.run.folder.RunFolder`; point transfer goes through `Correspondence`.
A folder written by another version (register.json / poses.json format tags, map arrays) raises InputError.
A camera the run calls failed (poses.json `status`) is no result: it is left out of `names` (so out of propagated
labels, edits and exports) unless `include_failed` is set, and listed with its reason in `left_out`.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from jaxtyping import Float

from congeal.run.surface import DEFAULT_SURFACE_FRACTION, ObjectMap, canonical_bounds
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.folder import RunFolder

__all__ = ["RegisteredRun", "Photo"]

_RERUN = "re-run `congeal register` with this version of congeal"


@dataclass
class Photo:
    """An original photo on its upright pixel grid (the grid of its coordinate map)."""

    name: str
    rgb: Float[np.ndarray, "H W 3"]
    """Straight colour in [0,1]."""
    alpha: Optional[Float[np.ndarray, "H W"]]
    """Transparency in [0,1], or None when the file has none."""
    path: Optional[Path]
    """The file, None for the grey stand-in of a missing photo."""

    def over_white(self) -> Float[np.ndarray, "H W 3"]:
        """The photo composited over white (what pictures show)."""
        if self.alpha is None:
            return self.rgb
        a = self.alpha[..., None]
        return (self.rgb * a + (1.0 - a)).astype(np.float32)


class RegisteredRun:
    """Read access to one `congeal register` output folder.

    Args:
        run_dir: the run folder.
        device: torch device for the correspondence look-ups.
    """

    def __init__(self, run_dir: PathLike, device: str = "cpu", include_failed: bool = False):
        self.folder = RunFolder(run_dir)
        root = self.folder.root
        if not root.is_dir():
            raise InputError(root, "no such run folder", "pass the --out folder of a finished `congeal register`")
        self.register: Dict[str, Any] = self.folder.read_register()  # format tag checked: another version -> error
        self.poses: Dict[str, Dict[str, Any]] = self.folder.read_poses()
        maps = set(self.folder.map_names())
        mapped = [n for n in self.poses if n in maps]
        self.left_out: Dict[str, str] = {} if include_failed else {
            n: str(self.poses[n].get("status_reason") or "the run calls this camera failed")
            for n in mapped if self.poses[n].get("status") == "failed"}
        self.names: List[str] = [n for n in mapped if n not in self.left_out]
        if not mapped:
            raise InputError(root, "has no photo with both a pose (poses.json) and a coordinate map (maps/*.npz)",
                             "re-run `congeal register` with the mapping stage on")
        if not self.names:
            raise InputError(root, f"calls every photo's camera failed ({len(mapped)} photos)",
                             "look at pictures/overlay.png and poses.json `status_reason`; pass --include-flagged "
                             "to use them anyway")
        self.device = device
        self._maps: Dict[str, ObjectMap] = {}
        self._photo_paths: Optional[Dict[str, Path]] = None
        self._corr = None
        self._bounds: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def root(self) -> Path:
        return self.folder.root

    def require(self, name: str) -> str:
        """`name` if the run registered such a photo, else InputError listing the ones it did."""
        if name in self.left_out:
            raise InputError(self.root, f"calls the camera of {name!r} failed ({self.left_out[name]})",
                             "use another photo, or pass --include-flagged to use it anyway")
        if name not in self.names:
            shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
            raise InputError(self.root, f"has no registered photo named {name!r}", f"use one of: {shown}")
        return name

    # ------------------------------------------------------------------------------------------------------------
    # maps

    def object_map(self, name: str) -> ObjectMap:
        """The photo's coordinate map (maps/<name>.npz), validated, cached."""
        self.require(name)
        if name not in self._maps:
            path = self.folder.map_path(name)
            try:
                with np.load(path) as data:
                    arrays = {k: data[k] for k in data.files}
            except Exception as error:  # noqa: BLE001 - a damaged .npz: BadZipFile, zlib.error, EOFError, ...
                message = (str(error).splitlines() or [""])[0][:200]
                raise InputError(path, f"cannot be read ({type(error).__name__}: {message})", _RERUN) from None
            xyz, valid = arrays.get("xyz"), arrays.get("valid")
            if xyz is None or valid is None:
                raise InputError(path, f"lacks 'xyz' and/or 'valid' (has {sorted(arrays)}): written by another "
                                       f"version of congeal", _RERUN)
            if xyz.ndim != 3 or xyz.shape[-1] != 3 or valid.shape != xyz.shape[:2]:
                raise InputError(path, f"has xyz {xyz.shape} and valid {valid.shape}, expected [H,W,3] and [H,W]",
                                 _RERUN)
            valid = valid.astype(bool) & np.isfinite(xyz).all(axis=-1)
            self._maps[name] = ObjectMap(xyz.astype(np.float32), valid)
        return self._maps[name]

    def bounds(self) -> Tuple[Float[np.ndarray, "3"], Float[np.ndarray, "3"]]:
        """(lo, hi) of the mapped canonical points of every photo (robust percentiles)."""
        if self._bounds is None:
            self._bounds = canonical_bounds([self.object_map(n) for n in self.names])
        return self._bounds

    def surface_tolerance(self, fraction: float = DEFAULT_SURFACE_FRACTION) -> float:
        """The same-surface distance: `fraction` of the mapped object's canonical bounding-box diagonal."""
        lo, hi = self.bounds()
        return float(fraction * max(float(np.linalg.norm(hi - lo)), 1e-6))

    # ------------------------------------------------------------------------------------------------------------
    # photos

    def photo_path(self, name: str) -> Optional[Path]:
        """The original photo file register.json names (None when it is not recorded)."""
        if self._photo_paths is None:
            self._photo_paths = self.folder.photo_paths()
        return self._photo_paths.get(name)

    def photo(self, name: str, required: bool = True) -> Photo:
        """The original photo at its original resolution, on the grid of its map.

        Args:
            name: a registered photo.
            required: raise InputError when the file is gone or changed; else return a grey stand-in.
        """
        from congeal.io.decode import decode_image

        omap = self.object_map(name)
        path = self.photo_path(name)
        problem = None
        if path is None:
            problem = (self.folder.register, f"names no photo file for {name!r}", _RERUN)
        elif not path.is_file():
            problem = (path, "the registered photo is gone", "put the photo back where `congeal register` read it")
        if problem is None:
            decoded = decode_image(path)
            if decoded.size != (omap.height, omap.width):
                problem = (path, f"is {decoded.size[1]}x{decoded.size[0]} pixels but its coordinate map is "
                                 f"{omap.width}x{omap.height}", "the photo changed since registration; " + _RERUN)
            else:
                return Photo(name, decoded.rgb.astype(np.float32),
                             None if decoded.alpha is None else decoded.alpha.astype(np.float32), path)
        if required:
            raise InputError(*problem)
        return Photo(name, np.full((omap.height, omap.width, 3), 0.6, np.float32), None, None)

    # ------------------------------------------------------------------------------------------------------------
    # cameras, canonical, correspondences

    def camera(self, name: str) -> Dict[str, Any]:
        """The photo's poses.json record."""
        return self.poses[self.require(name)]

    @property
    def correspondence(self):
        """`congeal.run.correspondence.Correspondence` of this run (needs the run's state/ folder)."""
        if self._corr is None:
            from congeal.run.correspondence import Correspondence

            self._corr = Correspondence(self.root, device=self.device)
            missing = [n for n in self.names if n not in set(self._corr.names)]
            if missing:
                raise InputError(self.folder.state_dir, f"has no state file for {missing[:5]}", _RERUN)
        return self._corr

    def transfer(self, src: str, trg: str, points: Float[np.ndarray, "P 2"]
                 ) -> Tuple[Float[np.ndarray, "P 2"], np.ndarray]:
        """Points of photo `src` (original pixels) -> photo `trg` (NaN where invalid), and the valid flags."""
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        if pts.shape[0] == 0:
            return np.zeros((0, 2), np.float32), np.zeros(0, bool)
        out, valid = self.correspondence.transfer(src, trg, pts)
        return np.asarray(out, np.float32).reshape(-1, 2), np.asarray(valid, bool).reshape(-1)

    def canonical(self):
        """The canonical the run used (`canonical.safetensors`), as `congeal.canonical.grid.Canonical`."""
        from congeal.canonical.grid import load_canonical

        return load_canonical(self.folder.canonical)
