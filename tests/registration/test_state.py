"""congeal.registration.state: the per-image state file and the crop as an affine map."""
import pytest
import torch

from congeal.common.errors import InputError
from congeal.io.crop import Crop
from congeal.registration.state import crop_affine, load_image_state
from congeal.run.folder import RunFolder
from helpers.mini_run import make_mini_run


def test_missing_state_is_an_input_error(tmp_path):
    make_mini_run(tmp_path)
    with pytest.raises(InputError, match="zzz"):
        load_image_state(RunFolder(tmp_path).state_path("zzz"))


def test_state_round_trip_and_crop_affine(tmp_path):
    info = make_mini_run(tmp_path)
    for name, item in info.items():
        state = load_image_state(RunFolder(tmp_path).state_path(name))
        assert torch.equal(state.warp, item["warp"]) and torch.equal(state.image_mask, item["mask"])
        assert (state.width, state.height) == item["size"] and state.size == 64
        assert torch.tensor(state.camera["c2w"]).shape == (4, 4)  # the poses.json entry rides along
        p = torch.tensor([[31.0, 47.5]])
        assert torch.allclose(state.to_working(p), item["crop"].to_working(p), atol=1e-4)
        assert torch.allclose(state.to_original(state.to_working(p)), p, atol=1e-4)
    crop = Crop(x0=-10.0, y0=15.0, side=120.0, size=64)
    scale, offset = crop_affine(crop)
    assert scale.tolist() == [64 / 120.0] * 2 and offset.tolist() == [10.0 * 64 / 120.0, -15.0 * 64 / 120.0]
