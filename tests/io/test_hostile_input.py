"""Hostile input: every bad file gives a documented fallback or an InputError naming the file and the fix."""
import io
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from congeal.common.errors import InputError
from congeal.io.collection import load_collection
from congeal.io.listing import list_images
from helpers.images import bomb_png, box_mask, object_array, photo_with_mask_file, png16_rgb, rgba_photo

BOX = (16, 48, 20, 60)  # rows 16:48, cols 20:60 of a 64x80 photo


def _folder(tmp_path: Path, extra: int = 1) -> Path:
    """A folder with `extra` good RGBA photos, so the case under test is the only problem."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(extra):
        rgba_photo(folder / f"good{i}.png")
    return folder


def _mask_for(folder: Path, stem: str, mask: np.ndarray) -> Path:
    (folder / "masks").mkdir(exist_ok=True)
    path = folder / "masks" / f"{stem}.png"
    Image.fromarray(mask.astype(np.uint8) * 255 if mask.dtype == bool else mask).save(path)
    return path


def _expect_error(folder: Path, bad: Path, *phrases: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        load_collection(folder, size=16, **kwargs)
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(bad) in str(error), f"the message must name {bad}: {error}"
    assert "Fix:" in str(error)
    for phrase in phrases:
        assert phrase in str(error), f"{phrase!r} not in {error}"
    return error


def _jpeg_bytes(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- broken files
def test_corrupt_jpeg(tmp_path):
    folder = _folder(tmp_path)
    bad = folder / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    _expect_error(folder, bad, "JPEG")


def test_truncated_jpeg(tmp_path):
    folder = _folder(tmp_path)
    noisy = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    data = _jpeg_bytes(noisy)
    bad = folder / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    _expect_error(folder, bad, "truncated")


def test_zero_byte_file(tmp_path):
    folder = _folder(tmp_path)
    bad = folder / "empty.jpg"
    bad.touch()
    _expect_error(folder, bad, "0-byte")


def test_png_named_jpg_is_decoded_by_content(tmp_path):
    folder = _folder(tmp_path)
    rgba_photo(folder / "actually_png.jpg")
    collection = load_collection(folder, size=16)
    assert collection.mask_sources[collection.names.index("actually_png")] == "alpha"
    assert any(w.startswith("actually_png: content is PNG") for w in collection.warnings)


def test_unsupported_heic_says_what_to_install(tmp_path):
    folder = _folder(tmp_path)
    bad = folder / "phone.heic"
    bad.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    _expect_error(folder, bad, "pillow-heif")


def test_corrupt_mask_file_is_named(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "m.png")
    (folder / "masks").mkdir()
    bad = folder / "masks" / "m.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    _expect_error(folder, bad, "mask file")


# ---------------------------------------------------------------------------------------------- pixel formats
def test_cmyk_jpeg_is_converted(tmp_path):
    folder = _folder(tmp_path)
    cmyk = Image.new("CMYK", (80, 64), (0, 0, 0, 0))  # white
    cmyk.paste((0, 255, 255, 0), (20, 16, 60, 48))  # magenta + yellow = red
    cmyk.save(folder / "print.jpg", quality=95)
    _mask_for(folder, "print", box_mask(64, 80, BOX))
    collection = load_collection(folder, size=16)
    i = collection.names.index("print")
    centre = collection.images[i, :, 8, 8]
    assert centre[0] > 0.9 and centre[1] < 0.1 and centre[2] < 0.1, centre
    assert any("CMYK converted" in w for w in collection.warnings)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    folder = _folder(tmp_path)
    grey = np.full((64, 80), 10000, np.uint16)
    grey[16:48, 20:60] = 40000
    Image.fromarray(grey).save(folder / "deep.png")
    assert Image.open(folder / "deep.png").mode.startswith("I")
    _mask_for(folder, "deep", box_mask(64, 80, BOX))
    collection = load_collection(folder, size=16)
    image = collection.images[collection.names.index("deep")]
    assert float(image[:, 8, 8].mean()) == pytest.approx(40000 / 65535, abs=1e-4)  # clipping would give 1.0
    assert float(image[:, 0, 0].mean()) == pytest.approx(10000 / 65535, abs=1e-4)


def test_48_bit_rgb_png(tmp_path):
    folder = _folder(tmp_path)
    array = np.full((64, 80, 3), 10000, np.uint16)
    array[16:48, 20:60] = (40000, 20000, 65535)
    png16_rgb(folder / "deep_rgb.png", array)
    _mask_for(folder, "deep_rgb", box_mask(64, 80, BOX))
    collection = load_collection(folder, size=16)
    centre = collection.images[collection.names.index("deep_rgb"), :, 8, 8]
    assert torch.allclose(centre, torch.tensor([40000, 20000, 65535]) / 65535.0, atol=1 / 255)


def test_palette_png_with_transparency_uses_alpha(tmp_path):
    folder = _folder(tmp_path)
    index = np.zeros((64, 80), np.uint8)
    index[16:48, 20:60] = 1
    palette = Image.fromarray(index, mode="P")
    palette.putpalette([0, 0, 0, 30, 200, 40] + [0] * (256 * 3 - 6))
    palette.save(folder / "pal.png", transparency=0)
    collection = load_collection(folder, size=16)
    i = collection.names.index("pal")
    assert collection.mask_sources[i] == "alpha"
    assert collection.coverages[i] == pytest.approx(BOX_AREA / (64 * 80))
    _, mask = collection.load_original(i)
    assert torch.equal(mask[0].bool(), torch.from_numpy(box_mask(64, 80, BOX)))


BOX_AREA = (BOX[1] - BOX[0]) * (BOX[3] - BOX[2])


def test_grayscale(tmp_path):
    folder = _folder(tmp_path)
    grey = np.full((64, 80), 250, np.uint8)
    grey[16:48, 20:60] = 60
    Image.fromarray(grey, mode="L").save(folder / "grey.jpg", quality=95)
    _mask_for(folder, "grey", box_mask(64, 80, BOX))
    collection = load_collection(folder, size=16)
    image = collection.images[collection.names.index("grey")]
    assert image.shape == (3, 16, 16)
    assert torch.allclose(image[0], image[1]) and torch.allclose(image[1], image[2])
    assert float(image[0, 8, 8]) == pytest.approx(60 / 255, abs=0.03)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_modes(tmp_path, mode):
    folder = _folder(tmp_path)
    alpha = box_mask(64, 80, BOX).astype(np.uint8) * 255
    colour = np.full((64, 80), 90, np.uint8)
    planes = [colour, alpha] if mode == "LA" else [colour, colour, colour, alpha]
    Image.fromarray(np.dstack(planes), mode=mode).save(folder / "cut.png")
    collection = load_collection(folder, size=16)
    i = collection.names.index("cut")
    assert collection.mask_sources[i] == "alpha"
    assert collection.coverages[i] == pytest.approx(BOX_AREA / (64 * 80))
    assert float(collection.images[i, 0, 8, 8]) == pytest.approx(90 / 255, abs=1e-3)


def test_fully_opaque_alpha_falls_back_to_mask_file(tmp_path):
    folder = _folder(tmp_path)
    rgba = np.dstack([object_array(64, 80, BOX), np.full((64, 80), 255, np.uint8)])
    Image.fromarray(rgba).save(folder / "opaque.png")
    _mask_for(folder, "opaque", box_mask(64, 80, BOX))
    collection = load_collection(folder, size=16)
    assert collection.mask_sources[collection.names.index("opaque")].startswith("file:")


# ---------------------------------------------------------------------------------------------- EXIF orientation
def _l_shape(height: int, width: int) -> np.ndarray:
    """An asymmetric object (an L), so any wrong flip or rotation shows."""
    mask = np.zeros((height, width), bool)
    mask[10:50, 8:18] = True
    mask[40:50, 8:40] = True
    return mask


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("mask_grid", ["upright", "stored"])
def test_exif_orientation_keeps_image_and_mask_aligned(tmp_path, orientation, mask_grid):
    folder = _folder(tmp_path)
    stored_mask = _l_shape(60, 90)  # stored 90 wide x 60 tall; shown 60 wide x 90 tall
    stored = np.where(stored_mask[..., None], np.uint8([220, 30, 30]), np.uint8([255, 255, 255]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = folder / "turned.png"
    Image.fromarray(stored.astype(np.uint8)).save(path, exif=exif.tobytes())
    upright_reference = np.asarray(ImageOps.exif_transpose(Image.open(path)))  # what a viewer shows
    upright_mask = upright_reference[..., 1] < 128
    _mask_for(folder, "turned", upright_mask if mask_grid == "upright" else stored_mask)
    collection = load_collection(folder, size=32)
    i = collection.names.index("turned")
    assert collection.original_sizes[i] == (90, 60)
    image, mask = collection.load_original(i)
    assert np.abs(image.permute(1, 2, 0).numpy() - upright_reference / 255.0).max() < 1e-6
    assert np.array_equal(mask[0].numpy().astype(bool), upright_mask)
    # and in the working crop: red exactly where the mask is
    work_mask = collection.masks[i, 0].bool()
    red = collection.images[i, 1] < 0.5
    assert (red == work_mask).float().mean() > 0.97
    if mask_grid == "stored":
        assert any("EXIF orientation" in w and "mask" in w for w in collection.warnings)


# ---------------------------------------------------------------------------------------------- size limits
def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    bad = bomb_png(folder / "bomb.png", 100_000, 100_000)
    assert bad.stat().st_size < 200

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    _expect_error(folder, bad, "decompression bomb", "100000x100000", "limit of 64 MP")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    folder = _folder(tmp_path, extra=2)
    _expect_error(folder, folder / "good0.png", "limit of 0.001 MP", "max_pixels", max_pixels=1000)
    # our limit decides, not PIL's global one: with PIL's limit far below the photo size, loading still works
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert len(load_collection(folder, size=16)) == 2
    assert Image.MAX_IMAGE_PIXELS == 100  # and PIL's setting is restored


def test_image_too_small_says_the_minimum(tmp_path):
    folder = _folder(tmp_path)
    bad = rgba_photo(folder / "tiny.png", 20, 30, box=(5, 15, 5, 25))
    _expect_error(folder, bad, "30x20 pixels", "minimum is 32")
    assert len(load_collection(folder, size=16, min_side=16)) == 2


# ---------------------------------------------------------------------------------------------- masks
def test_empty_mask(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "e.png")
    bad = _mask_for(folder, "e", np.zeros((64, 80), bool))
    _expect_error(folder, bad, "empty")


def test_mask_covering_the_whole_frame_warns(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "full.png")
    _mask_for(folder, "full", np.ones((64, 80), bool))
    collection = load_collection(folder, size=16)
    assert any(w.startswith("full: mask covers 100.0% of the frame") for w in collection.warnings)
    i = collection.names.index("full")
    assert collection.crops[i].side == pytest.approx(80 * 1.2)


def test_mask_size_mismatch_names_both(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "s.png")
    bad = _mask_for(folder, "s", np.ones((30, 40), bool))
    _expect_error(folder, bad, "40x30", "s.png is 80x64")


def test_non_binary_mask_thresholded_at_half(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "soft.png")
    ramp = np.tile(np.linspace(0, 255, 80).astype(np.uint8), (64, 1))
    _mask_for(folder, "soft", ramp)
    collection = load_collection(folder, size=16)
    i = collection.names.index("soft")
    _, mask = collection.load_original(i)
    assert np.array_equal(mask[0].numpy().astype(bool), np.tile(ramp[0] / 255.0 >= 0.5, (64, 1)))
    assert any("not binary" in w and "thresholded at 0.5" in w for w in collection.warnings)


def test_label_mask_with_values_0_and_1(tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(object_array(64, 80, BOX)).save(folder / "lab.png")
    _mask_for(folder, "lab", box_mask(64, 80, BOX).astype(np.uint8))  # 0/1, not 0/255
    collection = load_collection(folder, size=16)
    i = collection.names.index("lab")
    assert collection.coverages[i] == pytest.approx(BOX_AREA / (64 * 80))
    assert any("0/1 labels" in w for w in collection.warnings)


def test_missing_mask_says_how_to_get_one(tmp_path):
    folder = _folder(tmp_path)
    bad = folder / "plain.jpg"
    Image.fromarray(object_array(64, 80, BOX)).save(bad)
    _expect_error(folder, bad, "masks/plain.png", "white-background", "sam")


# ---------------------------------------------------------------------------------------------- the folder
def test_zero_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    _expect_error(folder, folder, "no photos")
    (folder / "images").mkdir()
    rgba_photo(folder / "images" / "a.png")
    _expect_error(folder, folder, "did you mean")


def test_one_image_needs_two(tmp_path):
    folder = _folder(tmp_path, extra=1)
    _expect_error(folder, folder / "good0.png", "at least 2")


def test_non_image_and_hidden_files_are_listed(tmp_path):
    folder = _folder(tmp_path, extra=2)
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "._good0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: hidden, not a photo
    (folder / "raw").mkdir()
    collection = load_collection(folder, size=16)
    assert collection.names == ["good0", "good1"]
    reasons = {p.name: why for p, why in collection.skipped}
    assert reasons == {".DS_Store": "hidden file", "._good0.png": "hidden file", "notes.txt": "not an image (.txt)",
                       "raw": "folder (not searched)"}


def test_unicode_file_names(tmp_path):
    folder = _folder(tmp_path, extra=0)
    decomposed = unicodedata.normalize("NFD", "stuhl_ü")  # as macOS writes it
    rgba_photo(folder / f"{decomposed}.png")
    photo_with_mask_file(folder, "椅子", suffix=".jpg")
    collection = load_collection(folder, size=16)
    assert collection.names == ["stuhl_ü", "椅子"]  # NFC names
    assert collection.paths[0].exists() and collection.paths[1].name == "椅子.jpg"


@pytest.mark.parametrize("other", ["a.png", "A.png"])
def test_same_stem_twice_names_both(tmp_path, other):
    folder = _folder(tmp_path)
    rgba_photo(folder / "a.jpg")
    rgba_photo(folder / other)
    with pytest.raises(InputError) as caught:
        list_images(folder)
    assert "a.jpg" in str(caught.value) and other in str(caught.value)
    with pytest.raises(InputError):
        load_collection(folder)


def test_unreadable_file(tmp_path):
    folder = _folder(tmp_path)
    bad = rgba_photo(folder / "locked.png")
    bad.chmod(0)
    try:
        if os.access(bad, os.R_OK):
            pytest.skip("running as root: chmod 000 does not make the file unreadable (see the next test)")
        _expect_error(folder, bad, "permission denied", "chmod")
    finally:
        bad.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """The same path as chmod 000, for runs as root: the open itself is refused."""
    folder = _folder(tmp_path)
    bad = rgba_photo(folder / "locked.png")
    real_open = Image.open

    def refuse(fp, *args, **kwargs):
        if Path(fp) == bad:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refuse)
    _expect_error(folder, bad, "permission denied", "chmod")


def test_every_bad_file_reported_at_once_and_nothing_returned(tmp_path):
    folder = _folder(tmp_path, extra=2)
    (folder / "zero.png").touch()
    (folder / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(InputError) as caught:
        load_collection(folder, size=16)
    message = str(caught.value)
    assert "2 of 4 photos cannot be used" in message and "zero.png" in message and "junk.jpg" in message
