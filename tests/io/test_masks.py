"""congeal.io.masks: the white-background mask (and its flood fill) and the SAM masker's wiring (tiny random SAM)."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.common.errors import InputError
from congeal.io.collection import load_collection
from congeal.io.masks import SamMasker, border_connected, white_background_mask
from helpers.images import object_array


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum()) / float((a | b).sum())


def _jpeg(array: np.ndarray, quality: int = 80) -> torch.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded).permute(2, 0, 1)


def _blob(height: int = 96, width: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy - 50) / 30.0) ** 2 + ((xx - 60) / 40.0) ** 2 <= 1.0  # an ellipse


def _within(mask: torch.Tensor, truth: np.ndarray, pixels: int = 2) -> bool:
    """Every disagreement with the truth lies within `pixels` of the truth's outline (JPEG bleeds at edges)."""
    t = torch.from_numpy(truth).float()[None, None]
    k = 2 * pixels + 1
    grown = torch.nn.functional.max_pool2d(t, k, stride=1, padding=pixels)[0, 0].bool()
    shrunk = (-torch.nn.functional.max_pool2d(-t, k, stride=1, padding=pixels))[0, 0].bool()
    m = mask.bool()
    return bool((m <= grown).all() and (shrunk <= m).all())


@pytest.mark.parametrize("background,colour", [((255, 255, 255), (180, 40, 30)), ((128, 128, 128), (20, 60, 220)),
                                                ((250, 250, 245), (90, 90, 90))])
def test_white_background_mask_finds_the_object(background, colour):
    truth = _blob()
    array = np.where(truth[..., None], np.uint8(colour), np.uint8(background)).astype(np.uint8)
    mask = white_background_mask(_jpeg(array))
    assert mask.shape == (1, 96, 128) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert _within(mask[0], truth, pixels=2)
    assert _iou(mask[0], torch.from_numpy(truth)) > 0.9


def test_white_background_mask_noise_and_limits():
    truth = _blob()
    rng = np.random.default_rng(0)
    noisy = np.where(truth[..., None], np.uint8([30, 30, 200]), np.uint8([245, 245, 245])).astype(np.float32)
    noisy += rng.normal(0, 6, noisy.shape)  # sensor noise on the background
    image = torch.from_numpy(np.clip(noisy / 255.0, 0, 1)).permute(2, 0, 1).float()
    mask = white_background_mask(image)
    assert _within(mask[0], truth, pixels=1)
    # documented limit: a hole that does not reach the border stays object (a ring's inside)
    yy, xx = np.mgrid[0:96, 0:128]
    ring = truth & ~(((yy - 50) / 12.0) ** 2 + ((xx - 60) / 16.0) ** 2 <= 1.0)
    ring_image = np.where(ring[..., None], np.uint8([30, 30, 200]), np.uint8([255, 255, 255])).astype(np.uint8)
    ring_mask = white_background_mask(torch.from_numpy(ring_image).permute(2, 0, 1).float() / 255.0)
    assert torch.equal(ring_mask[0].bool(), torch.from_numpy(truth))


def test_white_background_mask_refuses_busy_backgrounds():
    noise = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="not uniform"):
        white_background_mask(noise)


def test_border_connected_matches_scipy_labels():
    ndimage = pytest.importorskip("scipy.ndimage")
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(70, 90, generator=generator) < p for p in (0.45, 0.55, 0.6, 0.7)]
    spiral = np.zeros((41, 41), bool)  # a long winding corridor: many turns for the run-based fill
    for k in range(0, 20, 2):
        spiral[k, k:41 - k] = spiral[k:41 - k, 40 - k] = spiral[40 - k, k + 2:41 - k] = True
        spiral[k + 2:41 - k, k + 2] = True
    maps.append(torch.from_numpy(spiral))
    for candidates in maps:
        labels, _ = ndimage.label(candidates.numpy())  # 4-connectivity by default
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        expected = np.isin(labels, border[border > 0])
        assert np.array_equal(border_connected(candidates).numpy(), expected)


# ---------------------------------------------------------------------------------------------- SAM wiring
def _tiny_sam():
    transformers = pytest.importorskip("transformers")
    try:  # transformers 5.x: the PIL image processor needs no torchvision
        from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil as ImageProcessor
    except ImportError:
        ImageProcessor = transformers.SamImageProcessor
    config = transformers.SamConfig(
        vision_config=dict(hidden_size=16, output_channels=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16, window_size=2, global_attn_indexes=[0], num_pos_feats=8,
                           mlp_dim=32),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    torch.manual_seed(0)
    model = transformers.SamModel(config)
    processor = transformers.SamProcessor(image_processor=ImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16}))
    return model, processor


@pytest.fixture(scope="module")
def tiny_sam():
    return _tiny_sam()


def test_sam_masker_shapes_and_prompt(tiny_sam):
    model, processor = tiny_sam
    masker = SamMasker(model=model, processor=processor, device="cpu")
    truth = _blob(50, 70)
    image = torch.from_numpy(np.where(truth[..., None], np.float32([0.8, 0.1, 0.1]), np.float32(1.0)))
    image = image.permute(2, 0, 1).contiguous()
    box = masker.box_prompt(image)
    rows, cols = np.nonzero(truth)
    assert box == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]  # the white-background object box
    assert masker.box_prompt(torch.rand(3, 50, 70)) == [0.0, 0.0, 70.0, 50.0]  # busy photo: the whole frame
    mask = masker(image)
    assert mask.shape == (1, 50, 70) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}  # random weights: the values themselves mean nothing


def test_sam_masker_loads_a_local_folder_and_feeds_the_loader(tiny_sam, tmp_path):
    model, processor = tiny_sam
    model.save_pretrained(tmp_path / "sam")
    processor.save_pretrained(tmp_path / "sam")
    masker = SamMasker(str(tmp_path / "sam"), device="cpu")
    assert type(masker.model).__name__ == "SamModel"
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(object_array(40, 56, (8, 30, 10 + i, 40))).save(photos / f"p{i}.jpg")
    try:
        collection = load_collection(photos, size=16, mask="sam", sam_model=masker)
    except InputError as error:  # a random SAM may well predict an empty mask: that must be a clean InputError
        assert "empty" in str(error)
        return
    assert collection.mask_sources == ["sam", "sam"]
    assert collection.masks.shape == (2, 1, 16, 16)


def test_sam_model_that_cannot_load_is_an_input_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(InputError, match="not a SAM model folder"):
        SamMasker(str(tmp_path / "no-such-model"))
    broken = tmp_path / "broken-sam"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")  # a local folder: no network is touched
    with pytest.raises(InputError, match="cannot load the SAM model"):
        SamMasker(str(broken))


def test_loader_passes_the_upright_photo_to_the_sam_masker(tmp_path):
    """Plumbing with a stand-in masker: it gets the whole upright photo in [0,1] and its mask becomes the crop's."""
    seen = []

    def masker(image):
        seen.append(image.shape)
        assert image.dtype == torch.float32 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        return white_background_mask(image)

    for i in range(2):
        Image.fromarray(object_array(40, 56, (8, 30, 10 + i, 40))).save(tmp_path / f"p{i}.png")
    collection = load_collection(tmp_path, size=16, mask="sam", sam_model=masker)
    assert seen == [(3, 40, 56), (3, 40, 56)]
    assert collection.mask_sources == ["sam", "sam"]
    assert collection.coverages[0] == pytest.approx(22 * 30 / (40 * 56))
