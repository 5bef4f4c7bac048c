"""What search, refinement and selection compare a render with a photo by: sharpened opacity, IoUs, feature distance.

    opacity = sharpen(render_opacity, k=10.0)                   # soft fringe -> edge on the 0.5 contour
    loss = soft_iou_loss(opacity, masks)                        # [M,1,r,r] each -> [M], differentiable
    iou = binary_iou(opacity, masks)                            # [M], the reported "iou"
    distance = masked_feature_distance(feats_a, feats_b, weight)   # [M,C,h,w] × 2, [M,1,h,w] -> [M]

Photo masks are binary (alpha ≥ 0.5); a render's opacity has a soft fringe, which would cap every IoU below 1 and
bias a soft IoU towards poses that fit the fringe. `sharpen` puts the render's edge on the same 0.5 contour, or on
another `level` where the canonical is fatter than the photos' objects (`RefineConfig.polish_edge_levels`).
"""
from typing import Union

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["sharpen", "soft_iou_loss", "binary_iou", "masked_feature_distance"]


def sharpen(opacity: Float[Tensor, "*shape"], k: float, level: Union[float, Tensor] = 0.5) -> Float[Tensor, "*shape"]:
    """sigmoid(k·(o − level)) rescaled so 0 -> 0 and 1 -> 1 (k = 0: o unchanged): the edge on the `level` contour
    (a number, or a tensor that broadcasts against `opacity`, e.g. one level per item [M,1,1,1])."""
    if k <= 0:
        return opacity
    level = torch.as_tensor(level, dtype=opacity.dtype, device=opacity.device)
    lo, hi = torch.sigmoid(-level * k), torch.sigmoid((1.0 - level) * k)
    return (torch.sigmoid(k * (opacity - level)) - lo.to(opacity)) / (hi - lo).to(opacity)


def soft_iou_loss(opacity: Float[Tensor, "M 1 r r"], mask: Float[Tensor, "M 1 r r"]) -> Float[Tensor, "M"]:
    """1 − soft IoU per item (values in [0,1])."""
    inter = (opacity * mask).flatten(1).sum(-1)
    union = (opacity + mask - opacity * mask).flatten(1).sum(-1)
    return 1.0 - inter / union.clamp_min(1e-6)


def binary_iou(opacity: Float[Tensor, "M 1 r r"], mask: Float[Tensor, "M 1 r r"],
               threshold: float = 0.5) -> Float[Tensor, "M"]:
    """IoU of `opacity > threshold` and `mask > threshold` (the reported "iou")."""
    a, b = opacity > threshold, mask > threshold
    inter = (a & b).flatten(1).sum(-1).float()
    union = (a | b).flatten(1).sum(-1).float()
    return inter / union.clamp_min(1.0)


def masked_feature_distance(feats_a: Float[Tensor, "M C h w"], feats_b: Float[Tensor, "M C h w"],
                            weight: Float[Tensor, "M 1 h w"], eps: float = 1e-3) -> Float[Tensor, "M"]:
    """Mean (1 − cosine) of unit features, weighted per cell."""
    cos = (feats_a * feats_b).sum(1, keepdim=True)
    return ((1.0 - cos) * weight).flatten(1).sum(-1).add(eps) / weight.flatten(1).sum(-1).add(eps)
