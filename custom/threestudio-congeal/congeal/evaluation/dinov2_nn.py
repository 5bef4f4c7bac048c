"""Pairwise DINOv2 nearest-neighbour keypoint transfer (the baseline of the SPair harness).

    matcher = DinoNNMatcher(build_extractor("dinov2", model="facebook/dinov2-giant", input_size=448))
    feats = matcher.features([img_a, img_b])                      # list of [C,h,w] per image (PIL or [3,H,W])
    xy_b = matcher.transfer(feats[0], feats[1], xy_a, size_a, size_b)   # [P,2] continuous pixels of image b

Method: every image is resized (stretched) to the extractor's square input and turned into a feature grid
[C,h,w] that covers the whole image. A source point takes the feature of the grid cell it falls in; its match is
the target cell with the highest cosine similarity, reported at that cell's centre mapped back to the target's
original pixels. No mask, no mutual check, no smoothing: the plain pairwise baseline.
"""
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Shaped
from PIL import Image
from torch import Tensor


def image_to_tensor(image: Union[Image.Image, Shaped[np.ndarray, "H W 3"]]) -> Float[Tensor, "3 H W"]:
    """PIL image or uint8 array (or float array in [0,1]) -> float in [0,1]."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)


class DinoNNMatcher:
    """Nearest neighbour of patch features between two images.

    Args:
        extractor: a feature extractor (`congeal.features.extractors`: `extract(images [B,3,S,S]) -> [B,C,h,w]`,
            L2-normalised over C).
        input_size: side each image is resized to before extraction (the extractor may resize again).
        batch_size: images per extractor call.
    """

    def __init__(self, extractor: Any, input_size: int = 448, batch_size: int = 8):
        self.extractor = extractor
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def features(self, images: Sequence[Union[Image.Image, Float[Tensor, "3 _ _"]]]) -> List[Float[Tensor, "C h w"]]:
        """Images (PIL or tensors in [0,1], any sizes) -> one feature grid each (unit length over C)."""
        tensors = [im if isinstance(im, Tensor) else image_to_tensor(im) for im in images]
        out: List[Tensor] = []
        for start in range(0, len(tensors), self.batch_size):
            chunk = torch.stack([
                F.interpolate(t[None].float(), size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)[0]
                for t in tensors[start:start + self.batch_size]
            ])
            feats = F.normalize(self.extractor.extract(chunk).float(), dim=1, eps=1e-6)
            out.extend(feats.unbind(0))
        return out

    @staticmethod
    def transfer(src_feats: Float[Tensor, "C h w"], trg_feats: Float[Tensor, "C ht wt"],
                 src_xy: Union[Float[Tensor, "P 2"], Float[np.ndarray, "P 2"]], src_size: Tuple[int, int],
                 trg_size: Tuple[int, int]) -> Float[Tensor, "P 2"]:
        """Match source points to the target by feature nearest neighbour.

        Args:
            src_feats, trg_feats: the two images' feature grids.
            src_xy: continuous pixel coordinates (x, y) in the source image.
            src_size, trg_size: (height, width) of the original images.
        Returns:
            continuous pixel coordinates in the target (cell centres, float64); NaN rows for NaN inputs.
        """
        src_xy = torch.as_tensor(src_xy, dtype=torch.float64)
        C, h, w = src_feats.shape
        _, ht, wt = trg_feats.shape
        H, W = src_size
        Ht, Wt = trg_size
        finite = torch.isfinite(src_xy).all(-1)
        xy = torch.nan_to_num(src_xy)
        # the grid covers the whole (stretched) image: cell (r, c) spans [c W/w, (c+1) W/w)
        col = (xy[:, 0] * w / W).floor().long().clamp(0, w - 1)
        row = (xy[:, 1] * h / H).floor().long().clamp(0, h - 1)
        query = src_feats[:, row, col].T  # [P,C]
        scores = query @ trg_feats.reshape(C, ht * wt).to(query.dtype)  # [P, h'w'] cosine (unit vectors)
        best = scores.argmax(dim=1)
        r, c = best // wt, best % wt
        out = torch.stack([(c.double() + 0.5) * Wt / wt, (r.double() + 0.5) * Ht / ht], dim=-1)
        return torch.where(finite[:, None], out, torch.full_like(out, float("nan")))
