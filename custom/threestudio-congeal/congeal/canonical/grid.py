"""The baked canonical: density + colour on a dense cubic grid, and its file (`canonical.safetensors`).

    canonical = Canonical(torch.zeros(32, 32, 32), torch.full((32, 32, 32, 3), 0.5), radius=1.0)
    save_canonical("canonical.safetensors", canonical)
    canonical = load_canonical("canonical.safetensors")       # validated; bad files raise InputError

File format ("congeal-canonical-v1"): safetensors with `density` float32 [R,R,R] (σ ≥ 0, per world unit) and
`rgb` float32 [R,R,R,3] in [0,1], indexed [ix, iy, iz] along world x, y, z; cell centres at
`-radius + (i + 0.5)·2·radius/R`; metadata `{"format": "congeal-canonical-v1", "radius": "<float>"}`.
Builders: `congeal.canonical.bake` (signed distance functions), `congeal.canonical.from_mesh` (triangle meshes).
"""
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.atomic import write_safetensors
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = [
    "FORMAT",
    "Canonical",
    "load_canonical",
    "save_canonical",
    "validate_canonical",
    "grid_points",
]

FORMAT = "congeal-canonical-v1"


def grid_points(resolution: int, radius: float, device: Optional[Union[str, torch.device]] = None,
                dtype: torch.dtype = torch.float32) -> Float[Tensor, "{resolution} {resolution} {resolution} 3"]:
    """Cell centres of a cubic grid indexed [ix,iy,iz], value (x,y,z)."""
    axis = -radius + (torch.arange(resolution, device=device, dtype=dtype) + 0.5) * (2.0 * radius / resolution)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


@dataclass
class Canonical:
    """A baked canonical shape (`validate_canonical` checks what the types cannot)."""

    density: Tensor
    """[R,R,R] volume density σ ≥ 0 (per world unit), indexed [ix,iy,iz]."""
    rgb: Tensor
    """[R,R,R,3] colour in [0,1]."""
    radius: float
    """Half the side of the cube [-radius, radius]^3 the grid covers."""

    @property
    def resolution(self) -> int:
        return int(self.density.shape[0])

    @property
    def cell_size(self) -> float:
        return 2.0 * self.radius / self.resolution

    @property
    def device(self) -> torch.device:
        return self.density.device

    def to(self, device: Optional[Union[str, torch.device]] = None,
           dtype: Optional[torch.dtype] = None) -> "Canonical":
        """A copy on `device` (and `dtype`, if given)."""
        return Canonical(self.density.to(device=device, dtype=dtype), self.rgb.to(device=device, dtype=dtype), self.radius)

    def points(self) -> Float[Tensor, "R R R 3"]:
        """Cell centres (world x,y,z)."""
        return grid_points(self.resolution, self.radius, device=self.density.device, dtype=self.density.dtype)

    def content_hash(self) -> str:
        """Stable hex digest of the arrays (as float32) and the radius; use it in cache keys."""
        digest = hashlib.sha256()
        digest.update(FORMAT.encode())
        digest.update(repr(float(self.radius)).encode())
        for array in (self.density, self.rgb):
            data = array.detach().to("cpu", torch.float32).contiguous().numpy()
            digest.update(repr(tuple(data.shape)).encode())
            digest.update(data.tobytes())
        return digest.hexdigest()[:32]

    def occupancy(self, threshold: float = 0.5) -> Tensor:
        """Bool [R,R,R]: cells whose one-cell opacity 1 - exp(-σ·cell) exceeds `threshold`."""
        return (1.0 - torch.exp(-self.density * self.cell_size)) > threshold

    def bounding_radius(self, threshold: float = 0.3) -> float:
        """Radius of the smallest origin-centred sphere holding every occupied cell (cell half-diagonal added)."""
        occupied = self.occupancy(threshold)
        if not bool(occupied.any()):
            return float(self.radius)
        centres = self.points()[occupied]
        reach = centres.norm(dim=-1).max().item() + 0.5 * math.sqrt(3.0) * self.cell_size
        return float(min(reach, math.sqrt(3.0) * self.radius))


def validate_canonical(canonical: Canonical, path: Optional[PathLike] = None) -> None:
    """Raise InputError (naming `path`) unless `canonical` is well-formed."""
    fix = "re-bake the canonical (congeal.canonical.grid.save_canonical) or pass the right file"
    density, rgb = canonical.density, canonical.rgb
    if not isinstance(density, Tensor) or not isinstance(rgb, Tensor):
        raise InputError(path, "density and rgb must be tensors", fix)
    if density.ndim != 3:
        raise InputError(path, f"density must be [R,R,R], got shape {list(density.shape)}", fix)
    r = density.shape[0]
    if tuple(density.shape) != (r, r, r):
        raise InputError(path, f"the grid must be cubic, got density shape {list(density.shape)}", fix)
    if r < 2:
        raise InputError(path, f"the grid must have at least 2 cells per side, got {r}", fix)
    if tuple(rgb.shape) != (r, r, r, 3):
        raise InputError(path, f"rgb must be [{r},{r},{r},3] to match density, got {list(rgb.shape)}", fix)
    if not density.is_floating_point() or not rgb.is_floating_point():
        raise InputError(path, "density and rgb must be floating point", fix)
    radius = canonical.radius
    if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise InputError(path, f"radius must be a positive finite number, got {radius!r}", fix)
    if not bool(torch.isfinite(density).all()):
        raise InputError(path, "density contains NaN or Inf", fix)
    if not bool(torch.isfinite(rgb).all()):
        raise InputError(path, "rgb contains NaN or Inf", fix)
    if bool((density < 0).any()):
        raise InputError(path, f"density is negative somewhere (min {density.min().item():.4g}); σ must be ≥ 0", fix)
    if bool((rgb < 0).any()) or bool((rgb > 1).any()):
        raise InputError(
            path, f"rgb must lie in [0,1], found values in [{rgb.min().item():.4g}, {rgb.max().item():.4g}]", fix
        )


def load_canonical(path: PathLike) -> Canonical:
    """Read and validate a `canonical.safetensors` file.

    Args:
        path: the file.
    Returns:
        Canonical on the CPU, float32.
    Raises:
        InputError naming the file: missing, not safetensors, wrong/missing format tag or radius, bad arrays.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file", "pass the canonical.safetensors written by a bake or `congeal synth`")
    if not path.is_file():
        raise InputError(path, "is not a file", "pass the canonical.safetensors file itself")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
            tensors = {k: handle.get_tensor(k) for k in keys & {"density", "rgb"}}
    except Exception as error:  # safetensors raises several error types for junk files
        raise InputError(path, f"is not a readable safetensors file ({type(error).__name__}: {error})",
                         "pass a canonical.safetensors file") from None
    tag = metadata.get("format")
    if tag != FORMAT:
        raise InputError(path, f"format tag is {tag!r}, expected {FORMAT!r}",
                         "bake the canonical with congeal.canonical.grid.save_canonical")
    if "radius" not in metadata:
        raise InputError(path, "metadata has no 'radius'", "bake the canonical with congeal.canonical.grid.save_canonical")
    try:
        radius = float(metadata["radius"])
    except ValueError:
        raise InputError(path, f"radius {metadata['radius']!r} is not a number", "re-bake the canonical") from None
    missing = {"density", "rgb"} - keys
    if missing:
        raise InputError(path, f"missing tensor(s) {sorted(missing)}", "re-bake the canonical")
    canonical = Canonical(tensors["density"], tensors["rgb"], radius)
    validate_canonical(canonical, path)
    return Canonical(canonical.density.float(), canonical.rgb.float(), radius)


def save_canonical(path: PathLike, canonical: Canonical) -> None:
    """Write `canonical` atomically as float32 safetensors with the format tag and radius in the metadata."""
    validate_canonical(canonical, path)
    tensors = {
        "density": canonical.density.detach().to("cpu", torch.float32).contiguous(),
        "rgb": canonical.rgb.detach().to("cpu", torch.float32).contiguous(),
    }
    write_safetensors(path, tensors, metadata={"format": FORMAT, "radius": repr(float(canonical.radius))})
