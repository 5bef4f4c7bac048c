"""The feature-extractor seam's contract, run by every implementation (`congeal.features.extractors`).

    implementations (`CASES`): rgb; DINOv2 through transformers (final layer, an intermediate layer, with register
    tokens, loaded from a folder by `build_extractor`) and through timm (skipped where timm is not installed), each
    built at a toy size from its config with random weights (nothing downloads)

What each promises for images [B,3,H,W] in [0,1] of any size: features [B,C,h,w] in float32 on the images' device,
finite and of unit length over C (also for all-black and all-white images); h×w fixed by the extractor, not by the
input size; the same features every call and from a second extractor built the same way (with the same `identity`,
which is part of the search cache key, and a different identity for a different configuration); differentiable
w.r.t. the images (refinement's feature term); and a batch, however it is chunked by `batch_size`, extracting each
image exactly as it would alone (within BATCH_ATOL).
"""
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import pytest
import torch

from congeal.features.extractors import DINOv2Features, FeatureExtractor, RGBFeatures, build_extractor

# fp32; a transformer's matmuls may block differently for 1 and 3 images, so not bit-exact
BATCH_ATOL = 1e-5
NORM_ATOL = 1e-4
INPUT = 28  # DINOv2 input side: two 14-px patches


@dataclass
class Case:
    """One extractor configuration: `build(device, **overrides)` -> a new extractor, `get` the same but built once
    per case; `grid` its h = w; `variant` an override that changes what the features mean (so it must change
    `identity`)."""

    build: Callable[..., Any]
    grid: int
    variant: Dict[str, Any]
    built: Dict[Any, Any] = field(default_factory=dict)

    def get(self, device="cpu", **overrides) -> Any:
        key = (str(device), tuple(sorted(overrides.items())))
        if key not in self.built:
            self.built[key] = self.build(device, **overrides)
        return self.built[key]


def _tiny_dinov2(registers: int = 0):
    """A transformers DINOv2 of toy size with random weights (seed 0); with `registers`, the register variant."""
    import transformers

    torch.manual_seed(0)
    sizes = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14,
                 image_size=INPUT)
    if registers:
        if not hasattr(transformers, "Dinov2WithRegistersModel"):
            pytest.skip(f"transformers {transformers.__version__} has no Dinov2WithRegistersModel")
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **sizes)
        return transformers.Dinov2WithRegistersModel(config)
    if not hasattr(transformers, "Dinov2Model"):
        pytest.skip(f"transformers {transformers.__version__} has no Dinov2Model (needs >= 4.31)")
    return transformers.Dinov2Model(transformers.Dinov2Config(**sizes))


def _tiny_timm():
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (the DINOv2 backend for transformers < 4.31)")
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=INPUT, embed_dim=32, depth=1,
                             num_heads=2, dynamic_img_size=True)


def _dinov2(model_factory: Callable[[], Any], **fixed) -> Callable[..., Any]:
    def build(device="cpu", **overrides):
        kwargs = dict(input_size=INPUT, batch_size=32, **fixed)
        kwargs.update(overrides)
        return DINOv2Features(model_factory(), device=device, **kwargs)

    return build


def _dinov2_folder(tmp_path_factory) -> Callable[..., Any]:
    from helpers.tiny_dinov2 import save_tiny_dinov2

    if not hasattr(importlib.import_module("transformers"), "Dinov2Model"):
        pytest.skip("transformers has no Dinov2Model (needs >= 4.31)")
    folder = save_tiny_dinov2(tmp_path_factory.mktemp("dinov2") / "dinov2")

    def build(device="cpu", **overrides):
        kwargs = dict(model=str(folder), input_size=INPUT, batch_size=32)
        kwargs.update(overrides)
        return build_extractor("dinov2", device=device, **kwargs)

    return build


CASES = ["rgb", "dinov2", "dinov2.layer1", "dinov2.registers", "dinov2.folder", "dinov2.timm"]


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory) -> Case:
    """One implementation, its models built once for the module."""
    name = request.param
    if name == "rgb":
        return Case(lambda device="cpu", **kw: RGBFeatures(**{"grid": 4, **kw}), 4, {"grid": 5})
    if name == "dinov2":
        return Case(_dinov2(_tiny_dinov2), 2, {"layer": 1})
    if name == "dinov2.layer1":
        return Case(_dinov2(_tiny_dinov2, layer=1), 2, {"layer": 0})
    if name == "dinov2.registers":
        return Case(_dinov2(lambda: _tiny_dinov2(registers=2)), 2, {"input_size": 2 * INPUT})
    if name == "dinov2.folder":
        return Case(_dinov2_folder(tmp_path_factory), 2, {"input_size": 2 * INPUT})
    return Case(_dinov2(_tiny_timm), 2, {"layer": 1})


def _images(device, n: int = 3, height: int = 20, width: int = 30) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, height, width, generator=generator).to(device)


def test_is_a_feature_extractor_with_an_identity(case):
    extractor = case.get()
    assert isinstance(extractor, FeatureExtractor)
    assert isinstance(extractor.identity, str) and extractor.identity
    assert case.build().identity == extractor.identity, "identity is not stable across builds"
    assert case.build(**case.variant).identity != extractor.identity, f"identity ignores {case.variant}"


def test_features_have_the_promised_shape_dtype_and_device(case, device):
    extractor = case.get(device)
    for height, width in ((20, 30), (33, 17)):
        features = extractor.extract(_images(device, 3, height, width))
        assert features.shape[:1] == (3,) and features.shape[2:] == (case.grid, case.grid), (height, width)
        assert features.dtype == torch.float32
        assert features.device.type == device.type


def test_features_are_finite_and_unit_length(case, device):
    images = torch.cat([_images(device, 2), torch.zeros(1, 3, 20, 30, device=device),
                        torch.ones(1, 3, 20, 30, device=device)])
    features = case.get(device).extract(images)
    assert torch.isfinite(features).all()
    norms = features.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=NORM_ATOL), (norms.min(), norms.max())


def test_extraction_is_deterministic(case, device):
    images = _images(device)
    first = case.get(device).extract(images)
    again = case.build(device)  # a second extractor built the same way
    torch.manual_seed(123)  # no randomness is used: a different global seed changes nothing
    assert torch.equal(again.extract(images), first)
    assert torch.equal(again.extract(images), first)


def test_gradients_reach_the_images(case, device):
    images = _images(device).requires_grad_(True)
    features = case.get(device).extract(images)
    weights = torch.rand(features.shape, generator=torch.Generator().manual_seed(1)).to(device)
    (features * weights).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert float(images.grad.abs().sum()) > 0


def test_a_batch_extracts_each_image_as_it_would_alone(case, device):
    images = _images(device)
    extractor = case.get(device)
    whole = extractor.extract(images)
    chunked = case.get(device, batch_size=2).extract(images)  # chunks of 2 and 1
    assert torch.allclose(chunked, whole, atol=BATCH_ATOL)
    for i in range(len(images)):
        assert torch.allclose(extractor.extract(images[i:i + 1]), whole[i:i + 1], atol=BATCH_ATOL), i
