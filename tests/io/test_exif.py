"""EXIF focal lengths: the 35 mm-equivalent tag first, then FocalLength with the focal-plane resolution."""
import math

import pytest
from PIL import Image

from congeal.io.exif import FULL_FRAME_DIAGONAL_MM, KnownFocal, exif_focal


def _photo(path, size, tags):
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd.update(tags)
    Image.new("RGB", size, (90, 120, 200)).save(path, exif=exif)
    return path


def test_35mm_equivalent_focal_length(tmp_path):
    path = _photo(tmp_path / "a.jpg", (400, 300), {0xA405: 28})
    known = exif_focal(path)
    assert known.source == "exif-35mm"
    assert known.focal_px == pytest.approx(28 * 500 / FULL_FRAME_DIAGONAL_MM)
    # a 28 mm lens on full frame: 75.4° diagonal field of view, here over the 500 px diagonal
    assert 2 * math.degrees(math.atan(250 / known.focal_px)) == pytest.approx(75.4, abs=0.1)


def test_focal_length_with_the_focal_plane_resolution(tmp_path):
    # 4.2 mm lens, 1000 pixels per cm on the sensor, the file recorded at 800 px wide and saved at 400
    path = _photo(tmp_path / "b.jpg", (400, 300), {0x920A: 4.2, 0xA20E: 1000.0, 0xA210: 3, 0xA002: 800})
    known = exif_focal(path)
    assert known.source == "exif-focal-plane"
    assert known.focal_px == pytest.approx(4.2 * 100.0 * 400 / 800)


def test_photos_without_focal_tags_are_estimated(tmp_path):
    assert exif_focal(_photo(tmp_path / "c.jpg", (64, 48), {})) is None
    assert exif_focal(_photo(tmp_path / "d.jpg", (64, 48), {0x920A: 4.2})) is None  # no sensor size
    (tmp_path / "e.jpg").write_bytes(b"not an image")
    assert exif_focal(tmp_path / "e.jpg") is None


def test_fovy_of_a_known_focal():
    assert KnownFocal(100.0, "given").fovy(200) == pytest.approx(math.pi / 2)
