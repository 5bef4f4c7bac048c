"""Automatic foreground masks for photos that come without one.

    mask = white_background_mask(image)                       # image [3,H,W] in [0,1] -> [1,H,W] in {0,1}
    masker = SamMasker("facebook/sam-vit-base", device="cuda")
    mask = masker(image)                                      # SAM, prompted with a box around the object

Both return float masks with 1 = object. `load_collection(..., mask="white-background" | "sam")` calls them.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from congeal.common.errors import InputError

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"


# ---------------------------------------------------------------------------------------------- white background
def white_background_mask(image: Float[Tensor, "3 H W"], tolerance: float = 0.1, min_border_fraction: float = 0.5
                          ) -> Float[Tensor, "1 H W"]:
    """Object mask for a photo on a near-uniform background (studio/product shots; any colour, not only white).

    The background colour is the median of the border pixels. Every pixel whose channels (or whose 3x3 box-blurred
    channels, which calms JPEG noise) all lie within `tolerance` of that colour is a background *candidate*; the
    background is the set of candidates connected (4-neighbourhood) to the image border, and the object is
    everything else.

    Limits: an object part with the background's colour that touches the background (a white mug on white) is cut
    away; shadows and reflections that differ from the background by more than the tolerance become object; holes
    that do not reach the border (the inside of a handle) stay object; gradients, vignetting and textured or busy
    backgrounds fail (an InputError when the border itself is not uniform); objects cut by the frame are fine but
    the background must reach the border somewhere. Provide mask files or use SAM (`mask="sam"`) when these matter.

    Args:
        image: float in [0,1].
        tolerance: largest per-channel difference from the background colour still counted as background.
        min_border_fraction: the fraction of border pixels that must match the background colour; below it the
            background is not uniform and an InputError is raised.
    Returns:
        Float mask (1 = object), same dtype/device as `image`.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"white_background_mask expects [3,H,W], got {tuple(image.shape)}")
    image = image.float() if not image.is_floating_point() else image
    colour, fraction = border_colour(image, tolerance)
    if fraction < min_border_fraction:
        raise InputError(
            None,
            f"the background is not uniform: only {100 * fraction:.0f}% of the border pixels match the "
            f"border colour (need {100 * min_border_fraction:.0f}%), so the white-background mask cannot be used",
            "provide mask files (masks/<name>.png), or use mask='sam'",
        )
    # a pixel is background-like when it or its 3x3 box blur matches: the blur absorbs JPEG speckle, the pixel
    # itself keeps the object's outline where it is (the blur alone would grow the object by a pixel)
    blurred = F.avg_pool2d(F.pad(image[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
    close = lambda x: ((x - colour[:, None, None]).abs() <= tolerance).all(0)  # noqa: E731
    candidates = close(image) | close(blurred)  # [H,W]
    background = border_connected(candidates)
    return (~background).to(image.dtype)[None]


def border_colour(image: Float[Tensor, "3 H W"], tolerance: float = 0.1) -> Tuple[Float[Tensor, "3"], float]:
    """Median border colour and the fraction of border pixels within `tolerance` of it (`image` in [0,1])."""
    border = torch.cat([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], dim=1)  # [3,P]
    colour = border.median(dim=1).values
    fraction = float(((border - colour[:, None]).abs() <= tolerance).all(0).float().mean())
    return colour, fraction


def border_connected(candidates: Bool[Tensor, "H W"]) -> Bool[Tensor, "H W"]:
    """The pixels of a boolean map connected (4-neighbourhood) to the image border through True pixels.

    A flood fill made of whole-run steps: along each row, every maximal run of True pixels that contains a reached
    pixel becomes reached; then the same along columns; repeat until nothing changes. The number of rounds is the
    number of turns the fill has to take, not the path length, so it is a handful for real photos.

    Args:
        candidates: `[H,W]` bool.
    Returns:
        `[H,W]` bool.
    """
    reached = torch.zeros_like(candidates)
    reached[0, :] = candidates[0, :]
    reached[-1, :] = candidates[-1, :]
    reached[:, 0] |= candidates[:, 0]
    reached[:, -1] |= candidates[:, -1]
    spread_rows = lambda r: _spread_along_rows(r, candidates)  # noqa: E731
    spread_cols = lambda r: _spread_along_rows(r.T, candidates.T).T  # noqa: E731
    reached = spread_cols(spread_rows(reached))
    passes = (spread_rows, spread_cols)
    step = 0
    while True:
        # the last pass left the map stable in its direction (a pass is idempotent), so the first pass in the
        # other direction that changes nothing means both directions are settled
        grown = passes[step % 2](reached)
        if torch.equal(grown, reached):
            return reached
        reached, step = grown, step + 1


def _spread_along_rows(reached: Bool[Tensor, "R C"], candidates: Bool[Tensor, "R C"]) -> Bool[Tensor, "R C"]:
    """Mark every row-run of candidates that holds a reached pixel."""
    previous = torch.zeros_like(candidates)
    previous[:, 1:] = candidates[:, :-1]
    starts = candidates & ~previous  # a run starts at column 0 of every row, so runs never span rows
    run_id = torch.cumsum(starts.reshape(-1), 0, dtype=torch.int32).reshape(candidates.shape)
    run_id = run_id * candidates  # 0 = not a candidate
    hit = torch.zeros(int(run_id.max()) + 1, dtype=torch.bool, device=candidates.device)
    hit[run_id[reached & candidates].long()] = True
    hit[0] = False
    return hit[run_id.long()]


# ---------------------------------------------------------------------------------------------- SAM
class SamMasker:
    """Segment Anything (transformers `SamModel`), prompted with one box: the white-background object box when the
    background is uniform, otherwise the whole image. Of SAM's three proposals the one with the highest predicted
    IoU is kept.

        masker = SamMasker("facebook/sam-vit-base")          # hub id or local folder (save_pretrained layout)
        masker = SamMasker(model=model, processor=processor)  # already-built objects (tests: a tiny random model)
        mask = masker(image)                                  # [3,H,W] in [0,1] -> [1,H,W] in {0,1}
    """

    def __init__(self, model_id_or_path: Optional[str] = DEFAULT_SAM_MODEL, device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32, model=None, processor=None):
        """
        Args:
            model_id_or_path: hub id or local folder; ignored when `model` and `processor` are given.
            device: where SAM runs.
            dtype: SAM's weight dtype (float16/bfloat16 saves memory on GPUs).
            model, processor: a built `SamModel` and `SamProcessor` (skip loading).
        """
        self.device = torch.device(device)
        self.dtype = dtype
        self.source = model_id_or_path if model is None else type(model).__name__
        if (model is None) != (processor is None):
            raise ValueError("SamMasker: pass both model and processor, or neither")
        if model is None:
            model, processor = _load_sam(model_id_or_path)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.processor = processor

    def box_prompt(self, image: Float[Tensor, "3 H W"]) -> List[float]:
        """`[x_min, y_min, x_max, y_max]` in pixels: the white-background object box, or the whole image."""
        height, width = image.shape[-2:]
        try:
            mask = white_background_mask(image)[0]
            coverage = float(mask.mean())
        except InputError:
            coverage = 0.0
        if 0.001 < coverage < 0.95:
            rows = torch.nonzero(mask.any(1)).flatten()
            cols = torch.nonzero(mask.any(0)).flatten()
            return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
        return [0.0, 0.0, float(width), float(height)]

    @torch.no_grad()
    def __call__(self, image: Float[Tensor, "3 H W"], box: Optional[Sequence[float]] = None) -> Float[Tensor, "1 H W"]:
        """Object mask of one photo.

        Args:
            image: float in [0,1].
            box: optional `[x_min, y_min, x_max, y_max]` prompt in pixels (default: `box_prompt(image)`).
        Returns:
            Float in {0,1} on the image's device.
        """
        box = list(box) if box is not None else self.box_prompt(image)
        pixels = (image.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        inputs = self.processor(images=[pixels], input_boxes=[[box]], return_tensors="pt")
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
            input_boxes=inputs["input_boxes"].to(self.device, self.dtype),
            multimask_output=True,
        )
        masks = self.processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]  # [boxes=1, 3, H, W] bool
        best = int(outputs.iou_scores[0, 0].float().argmax())
        return masks[0, best][None].to(device=image.device, dtype=image.dtype if image.is_floating_point()
                                       else torch.float32)


def _load_sam(model_id_or_path: Optional[str]):
    """SamModel + SamProcessor from a hub id or local folder, with errors that say what to do."""
    name = str(model_id_or_path or DEFAULT_SAM_MODEL)
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise InputError(folder, "is not a SAM model folder (no config.json)",
                             "give a folder written by SamModel.save_pretrained + SamProcessor.save_pretrained, "
                             "or a hub id such as facebook/sam-vit-base")
        name = str(folder)
    try:
        from transformers import SamModel, SamProcessor
    except ImportError as error:
        raise InputError(None, f"SAM masks need transformers >= 4.29 ({error})",
                         "pip install 'threestudio-congeal[sam]', or provide mask files") from None
    try:
        model = SamModel.from_pretrained(name)
    except Exception as error:  # OSError (not found / offline), ValueError (bad config), ...
        raise InputError(name, f"cannot load the SAM model ({type(error).__name__}: {str(error)[:200]})",
                         "pass a hub id that is cached, or a local folder saved with save_pretrained "
                         "(e.g. --sam-model /models/sam-vit-base)") from None
    try:
        processor = SamProcessor.from_pretrained(name)
    except Exception:
        # transformers 5.x without torchvision: build the processor around the PIL image processor
        try:
            from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil
            processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(name))
        except Exception as error:
            raise InputError(name, f"cannot load the SAM image processor ({type(error).__name__}: "
                                   f"{str(error)[:200]})",
                             "make sure the folder holds preprocessor_config.json") from None
    return model, processor
