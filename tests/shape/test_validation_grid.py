"""Validation and test pictures: which images go into the grid, and when a test video is made."""
import torch

from congeal.shape.validation_grid import has_frames, image_grid, renders


def test_grid_entries_follow_what_was_rendered():
    out = {"comp_rgb": torch.rand(2, 4, 5, 3), "comp_normal": torch.rand(2, 4, 5, 3), "opacity": torch.rand(2, 4, 5, 1)}
    grid = image_grid(out)
    assert [g["type"] for g in grid] == ["rgb", "rgb", "grayscale"]
    assert torch.equal(grid[0]["img"], out["comp_rgb"][0]) and grid[2]["img"].shape == (4, 5)
    assert grid[1]["kwargs"] == {"data_format": "HWC", "data_range": (0, 1)}
    assert [g["type"] for g in image_grid({"opacity": out["opacity"]})] == ["grayscale"]


def test_frames_and_what_is_rendered(tmp_path):
    assert not has_frames(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("")
    assert not has_frames(str(tmp_path))
    (tmp_path / "0.png").write_bytes(b"")
    assert has_frames(str(tmp_path))
    assert renders({"rays_o": 1}, "sds") and not renders({"rays_o": 1}, "ti") and not renders({"images": 1}, "sds")
