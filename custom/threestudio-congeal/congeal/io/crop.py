"""Square crop windows with exact transforms between original and working pixel coordinates.

    crop = Crop.from_bbox((40.0, 10.0, 200.0, 130.0), size=256, margin=0.1)
    working = crop.apply(image)                     # [C,H,W] -> [C,256,256], antialiased
    xy_original = crop.to_original(crop.to_working(xy_original))   # exact round trip

Pixel convention (docs/internals.md): continuous coordinates, x right / y down, the centre of pixel (row i, col j)
is `(j + 0.5, i + 0.5)`; a point `[..., 2]` is `(x, y)`. A crop is the square window `[x0, x0 + side] x
[y0, y0 + side]` of the original image (floats; it may reach past the border) mapped onto `[0, S] x [0, S]` of the
working image, so `working = (original - (x0, y0)) * S / side`.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float, Shaped
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence]


def square_window(bbox: Float[Tensor, "*batch 4"], margin: float) -> Float[Tensor, "*batch 3"]:
    """`(x0, y0, side)` of the square window centred on each box `(x_min, y_min, x_max, y_max)`, `margin` of the box's
    longer side (at least 1 pixel) added on every side.

    The one framing rule for photos (`Crop.from_bbox`) and renders (`registration.framing.square_boxes`): both must
    be framed alike for a photo and a render to be compared without searching translation or scale.
    """
    centre = 0.5 * (bbox[..., :2] + bbox[..., 2:])
    longer = torch.maximum(bbox[..., 2] - bbox[..., 0], bbox[..., 3] - bbox[..., 1]).clamp_min(1.0)
    side = longer * (1.0 + 2.0 * margin)
    return torch.stack([centre[..., 0] - 0.5 * side, centre[..., 1] - 0.5 * side, side], dim=-1)


@dataclass(frozen=True)
class Crop:
    """A square window of the original image, resampled to `size` x `size` working pixels.

    Attributes:
        x0, y0: top-left corner of the window in original pixel coordinates (may be negative).
        side: window side length in original pixels (may reach past the image border).
        size: working size S in pixels.
    """

    x0: float
    y0: float
    side: float
    size: int

    def __post_init__(self):
        if not (self.side > 0 and self.size > 0):
            raise ValueError(f"Crop needs side > 0 and size > 0, got side={self.side}, size={self.size}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bbox(cls, bbox: Sequence[float], size: int, margin: float = 0.1) -> "Crop":
        """Square window centred on a box, `margin` of the box's longer side added on every side.

        Args:
            bbox: `(x_min, y_min, x_max, y_max)` in continuous original coordinates (pixel edges, so a
                one-pixel object at column j spans `[j, j + 1]`).
            size: working size S.
            margin: fraction of the longer box side added on each side (0.1 -> side = 1.2 x longer side).
        Returns:
            The crop.
        """
        box = torch.tensor([float(v) for v in bbox], dtype=torch.float64)
        x0, y0, side = square_window(box, float(margin)).tolist()
        return cls(x0, y0, side, int(size))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Crop":
        return cls(float(data["x0"]), float(data["y0"]), float(data["side"]), int(data["size"]))

    # ------------------------------------------------------------------ transforms
    @property
    def scale(self) -> float:
        """Working pixels per original pixel (S / side)."""
        return self.size / self.side

    def working_from_original(self) -> Float[np.ndarray, "2 3"]:
        """2x3 affine matrix A (float64): `working = A @ (x, y, 1)`."""
        s = self.scale
        return np.array([[s, 0.0, -self.x0 * s], [0.0, s, -self.y0 * s]], dtype=np.float64)

    def original_from_working(self) -> Float[np.ndarray, "2 3"]:
        """2x3 affine matrix B (float64): `original = B @ (u, v, 1)`; the inverse of `working_from_original`."""
        r = self.side / self.size
        return np.array([[r, 0.0, self.x0], [0.0, r, self.y0]], dtype=np.float64)

    def to_working(self, xy: ArrayLike) -> ArrayLike:
        """Original pixel coordinates `[..., 2]` -> working pixel coordinates `[..., 2]`.

        Args:
            xy: torch tensor (dtype/device kept) or numpy array / sequence (returned as float64 numpy).
        Returns:
            Same type as the input, shape `[..., 2]`.
        """
        xy, offset = _as_points(xy, self.x0, self.y0)
        return (xy - offset) * self.scale

    def to_original(self, xy: ArrayLike) -> ArrayLike:
        """Working pixel coordinates `[..., 2]` -> original pixel coordinates `[..., 2]` (inverse of to_working)."""
        xy, offset = _as_points(xy, self.x0, self.y0)
        return xy / self.scale + offset

    # ------------------------------------------------------------------ resampling
    def apply(self, image: Shaped[Tensor, "C H W"], fill: Union[str, float] = "edge") -> Float[Tensor, "C S S"]:
        """Resample the window to `[C,S,S]`: box-averaged when shrinking (antialiased), bilinear when enlarging.

        Args:
            image: tensor on the original grid (non-float input is resampled in float32).
            fill: what lies outside the image: "edge" (repeat the border pixels, i.e. the photo's background
                continues) or a constant (e.g. 0.0 for masks).
        Returns:
            Same dtype (float32 for non-float input) and device as `image`.
        """
        if image.dim() != 3:
            raise ValueError(f"Crop.apply expects [C,H,W], got {tuple(image.shape)}")
        _, height, width = image.shape
        edge = isinstance(fill, str)
        if edge and fill != "edge":
            raise ValueError(f"fill must be 'edge' or a number, got {fill!r}")
        wy, y_lo, y_hi = _axis_matrix(self.y0, self.side, self.size, height, edge, image.device)
        wx, x_lo, x_hi = _axis_matrix(self.x0, self.side, self.size, width, edge, image.device)
        dtype = image.dtype if image.is_floating_point() else torch.float32
        source = image[:, y_lo:y_hi, x_lo:x_hi].to(dtype)
        wy, wx = wy.to(dtype), wx.to(dtype)
        out = wy @ (source @ wx.T)  # separable: rows then columns, [C,S,S]
        if not edge:
            # weight that fell outside the image goes to the constant
            inside = wy.sum(1)[:, None] * wx.sum(1)[None, :]
            out = out + (1.0 - inside) * float(fill)
        return out

    def source_window(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """Integer pixel rows/cols `(y_lo, y_hi, x_lo, x_hi)` of an HxW image that `apply` reads."""
        _, y_lo, y_hi = _axis_matrix(self.y0, self.side, self.size, height, True, "cpu")
        _, x_lo, x_hi = _axis_matrix(self.x0, self.side, self.size, width, True, "cpu")
        return y_lo, y_hi, x_lo, x_hi


def _as_points(xy: ArrayLike, x0: float, y0: float):
    if isinstance(xy, Tensor):
        if not xy.is_floating_point():
            xy = xy.to(torch.get_default_dtype())
        return xy, torch.tensor([x0, y0], dtype=xy.dtype, device=xy.device)
    return np.asarray(xy, dtype=np.float64), np.array([x0, y0], dtype=np.float64)


def _hat_integral(t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """Antiderivative of the unit hat max(0, 1 - |t|), 0 at t <= -1 and 1 at t >= 1."""
    t = t.clamp(-1.0, 1.0)
    return torch.where(t < 0, 0.5 * (t + 1) ** 2, 1.0 - 0.5 * (1 - t) ** 2)


def _axis_matrix(start: float, side: float, size: int, length: int, edge: bool, device
                 ) -> Tuple[Float[Tensor, "size taps"], int, int]:
    """Resampling weights along one axis: `out[s] = sum_k W[s, k] * src[lo + k]`.

    The source samples (pixel k at `k + 0.5`) are joined by linear interpolation; working pixel s takes that
    signal's value at its centre `c = start + (s + 0.5) * r`, `r = side / size`, when enlarging (bilinear
    interpolation), and its mean over `[c - r/2, c + r/2]` when shrinking (antialiased: a box over the working
    pixel's footprint). Linear interpolation reproduces ramps, so both keep the geometry of `Crop` exact: a linear
    ramp comes out as the ramp evaluated at the working pixel centres (tested).

    Returns:
        W `[size, hi - lo]` float64, lo, hi (source index range; taps outside the image are clamped to the edge when
        `edge`, dropped otherwise so rows then sum to less than one).
    """
    r = side / size
    h = 0.5 * r if r > 1.0 else 0.0  # half-width of the averaging box, in original pixels
    centres = start + (torch.arange(size, dtype=torch.float64) + 0.5) * r  # [S]
    first = torch.floor(centres - h - 1.5)  # leftmost source pixel whose hat reaches the box
    taps = int(np.ceil(2 * h)) + 4
    k = first[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # [S,T]
    offset = centres[:, None] - (k + 0.5)  # box centre relative to each sample
    if h > 0:
        weights = (_hat_integral(offset + h) - _hat_integral(offset - h)) / (2 * h)
    else:
        weights = (1.0 - offset.abs()).clamp_min(0.0)
    index = k.long()
    if not edge:
        weights = weights.masked_fill((index < 0) | (index >= length), 0.0)
    index = index.clamp(0, length - 1)
    used = index[weights > 0]
    lo = int(used.min()) if used.numel() else 0
    hi = int(used.max()) + 1 if used.numel() else 1
    matrix = torch.zeros(size, hi - lo, dtype=torch.float64)
    rows = torch.arange(size)[:, None].expand_as(index)
    # accumulate: taps clamped onto the border pixel add up there
    matrix.index_put_((rows.reshape(-1), (index - lo).clamp(0, hi - lo - 1).reshape(-1)), weights.reshape(-1),
                      accumulate=True)
    return matrix.to(device), lo, hi
