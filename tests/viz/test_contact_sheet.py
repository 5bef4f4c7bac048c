"""Contact sheets: the mask overlay (tint outside, outline on the boundary) and the sheet's layout."""
import pytest
import torch
from PIL import Image

from congeal.viz.contact_sheet import contact_sheet, overlay_masks, save_contact_sheet


def test_overlay_masks_tints_outside_and_outlines_the_boundary():
    images = torch.zeros(1, 3, 6, 6)
    masks = torch.zeros(1, 1, 6, 6)
    masks[..., 1:5, 1:5] = 1.0
    out = overlay_masks(images, masks, strength=0.5)
    assert out[0, :, 0, 0].tolist() == [0.5, 0.0, 0.0]  # background: half red
    assert out[0, :, 1, 1].tolist() == [1.0, 1.0, 0.0]  # boundary pixel of the object: yellow outline
    assert out[0, :, 2, 2].tolist() == [0.0, 0.0, 0.0]  # inside: unchanged
    assert overlay_masks(images, masks, outline=None)[0, :, 1, 1].tolist() == [0.0, 0.0, 0.0]


def test_contact_sheet_layout_and_errors(tmp_path):
    sheet = contact_sheet(torch.rand(5, 3, 20, 30), None, [f"photo {i}" for i in range(5)], tile=32)
    assert isinstance(sheet, Image.Image) and sheet.mode == "RGB"
    assert sheet.width == 3 * (32 + 4) + 4  # 5 tiles -> 3 columns, 2 rows
    path = save_contact_sheet(tmp_path / "sheet.png", torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8), ["a", "b"],
                              tile=16, columns=1)
    assert Image.open(path).size[0] == 16 + 8
    with pytest.raises(ValueError):
        contact_sheet(torch.rand(2, 3, 8, 8), None, ["only one"])
