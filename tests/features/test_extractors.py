"""Feature extractors: RGB colour features and DINOv2 (tiny model from config, saved and loaded by path)."""
import pytest
import torch

from congeal.common.errors import InputError
from congeal.features.extractors import DINOv2Features, FeatureExtractor, RGBFeatures, build_extractor


def solid(colour, size=32):
    return torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def test_rgb_features_shape_norm_and_chunking():
    torch.manual_seed(0)
    images = torch.rand(5, 3, 40, 40)
    extractor = RGBFeatures(grid=8, batch_size=2)
    feats = extractor.extract(images)
    assert feats.shape == (5, 7, 8, 8)
    assert torch.allclose(feats.norm(dim=1), torch.ones(5, 8, 8), atol=1e-5)
    assert torch.allclose(feats, RGBFeatures(grid=8, batch_size=64).extract(images), atol=1e-6)
    assert isinstance(extractor, FeatureExtractor)


def test_rgb_features_tell_part_colours_apart_and_are_differentiable():
    extractor = RGBFeatures(grid=4)
    red, blue, dark_red = (extractor.extract(solid(c)) for c in ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9), (0.6, 0.1, 0.1)))
    cos = lambda a, b: float((a * b).sum(1).mean())
    assert cos(red, dark_red) > cos(red, blue) + 0.3  # shading changes little, a different part changes a lot
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    extractor.extract(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          patch_size=14, image_size=56)
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    Dinov2Model(config).save_pretrained(folder)
    return folder


def test_dinov2_by_local_path(tiny_dinov2):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 50, 70)
    extractor = build_extractor("dinov2", model=str(tiny_dinov2), input_size=56, batch_size=2)
    feats = extractor.extract(images)
    assert feats.shape == (3, 32, 4, 4)  # 56 / 14 patches per side, CLS dropped
    assert torch.allclose(feats.norm(dim=1), torch.ones(3, 4, 4), atol=1e-4)
    single = DINOv2Features(str(tiny_dinov2), input_size=56, batch_size=1).extract(images)
    assert torch.allclose(feats, single, atol=1e-5)  # chunking does not change results
    assert extractor.dtype == torch.float32  # fp32 on CPU


def test_dinov2_layer_choice_matches_hidden_states(tiny_dinov2):
    from transformers import Dinov2Model

    images = torch.rand(2, 3, 56, 56)
    first = DINOv2Features(str(tiny_dinov2), layer=1, input_size=56)
    last = DINOv2Features(str(tiny_dinov2), layer=-1, input_size=56)
    assert first.identity != last.identity
    f1 = first.extract(images)
    assert not torch.allclose(f1, last.extract(images), atol=1e-3)
    # layer 1 = hidden_states[1] of the model, patches in row-major order
    model = Dinov2Model.from_pretrained(tiny_dinov2).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = model(pixel_values=(images - mean) / std, output_hidden_states=True).hidden_states[1]
    expected = torch.nn.functional.normalize(hidden[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2), dim=1)
    assert torch.allclose(f1, expected, atol=1e-4)


def test_dinov2_accepts_a_built_module(tiny_dinov2):
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(tiny_dinov2)
    feats = DINOv2Features(model, input_size=28).extract(torch.rand(1, 3, 28, 28))
    assert feats.shape == (1, 32, 2, 2)


def test_dinov2_bad_input_size_and_bad_name(tmp_path, tiny_dinov2):
    with pytest.raises(InputError, match="multiple of the patch size"):
        DINOv2Features(str(tiny_dinov2), input_size=50)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(InputError, match="save_pretrained"):
        DINOv2Features(str(empty))
    with pytest.raises(InputError, match="unknown feature extractor"):
        build_extractor("sift")


def test_dinov2_timm_backend_when_installed():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, dynamic_img_size=True)
    feats = DINOv2Features(model, input_size=56).extract(torch.rand(1, 3, 56, 56))
    assert feats.shape[-2:] == (4, 4)


def _parts_image() -> torch.Tensor:
    """A part-coloured object on black: four coloured blocks."""
    image = torch.zeros(1, 3, 64, 64)
    image[0, :, 8:32, 8:32] = torch.tensor([0.8, 0.2, 0.1])[:, None, None]
    image[0, :, 8:32, 32:56] = torch.tensor([0.1, 0.6, 0.3])[:, None, None]
    image[0, :, 32:56, 8:56] = torch.tensor([0.2, 0.3, 0.9])[:, None, None]
    return image


def test_gain_normalised_colours_read_a_darker_tinted_photo_of_the_same_colours_the_same():
    from congeal.features.extractors import RGBFeatures

    image = _parts_image()
    darker = image * torch.tensor([0.35, 0.3, 0.4])[None, :, None, None]  # dim light with a bluish cast
    plain, gain = RGBFeatures(grid=8), RGBFeatures(grid=8, normalise="gain")
    assert (plain.extract(image) - plain.extract(darker)).abs().max() > 0.2
    assert torch.allclose(gain.extract(image), gain.extract(darker), atol=1e-4)
    assert gain.identity != plain.identity  # a cached candidate bank of other features is never reused


def test_chromaticity_is_blind_to_lambert_shading():
    """Lambert shading scales each surface point's colour: a photo shaded from one side (from 0.1 to 1 across the
    object) and the unlit render give the same chromaticity features."""
    from congeal.features.extractors import RGBFeatures

    image = _parts_image()
    shading = torch.linspace(0.1, 1.0, 64)[None, None, None, :]
    chroma = RGBFeatures(grid=8, normalise="chroma")
    assert torch.allclose(chroma.extract(image), chroma.extract(image * shading), atol=1e-4)
    black = torch.zeros(1, 3, 64, 64)
    assert torch.isfinite(chroma.extract(black)).all()


def test_an_unknown_colour_normalisation_is_a_clear_error():
    from congeal.common.errors import InputError
    from congeal.features.extractors import RGBFeatures

    with pytest.raises(InputError, match="rgb_normalise"):
        RGBFeatures(normalise="lab")
