"""No process-wide side effects and no leftovers: PIL's pixel limit is never switched off (other threads rely on it),
no temporary folder outlives the call that made it, no fixed /tmp path in the GPU script.

Before issue 31, `io/decode.py` set `Image.MAX_IMAGE_PIXELS = None` around every open and decode (so another
thread decoding at that moment had no bomb check), `build_sd_parts` left a `mkdtemp` folder per call, and
`scripts/gpu-check.sh` installed wheels into the fixed `/tmp/gpu-check-site`.
"""
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from congeal.common.errors import InputError
from congeal.io.decode import decode_image, decode_mask
from helpers.images import bomb_png, rgba_photo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pil_limit_seen(monkeypatch):
    """Every value of `Image.MAX_IMAGE_PIXELS` PIL's open and decode ran under."""
    seen = []
    real_open, real_load = Image.open, ImageFile.ImageFile.load

    def spying_open(*args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real_open(*args, **kwargs)

    def spying_load(self, *args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spying_open)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    return seen


def test_decoding_never_switches_off_pils_limit(tmp_path, pil_limit_seen):
    photo = rgba_photo(tmp_path / "a.png")
    decoded = decode_image(photo)
    mask_file = tmp_path / "a_mask.png"
    Image.fromarray(np.full(decoded.size, 255, np.uint8)).save(mask_file)
    decode_mask(mask_file, decoded)
    assert pil_limit_seen and all(limit == Image.MAX_IMAGE_PIXELS is not None for limit in pil_limit_seen)


def test_our_limit_still_decides_without_touching_pils(tmp_path, monkeypatch, pil_limit_seen):
    photo = rgba_photo(tmp_path / "a.png", height=64, width=80)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own limit far below the photo: ours decides
    assert decode_image(photo).size == (64, 80)
    assert set(pil_limit_seen) == {100}
    with pytest.raises(InputError, match="100000x100000"):  # a bomb is refused from its header, with its size
        decode_image(bomb_png(tmp_path / "bomb.png", 100_000, 100_000))
    assert Image.MAX_IMAGE_PIXELS == 100


def test_tiny_sd_parts_leave_no_temporary_folder(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    from congeal.inversion.tiny_diffusion import build_sd_parts

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        parts = build_sd_parts("tiny")
    except InputError as error:  # no CLIP vocabulary on this machine (open_clip missing)
        pytest.skip(str(error))
    assert parts["tokenizer"]("a photo").input_ids[0] == 49406  # the tokenizer works without its files
    assert list(scratch.iterdir()) == []


def test_gpu_check_script_uses_no_fixed_tmp_path():
    script = (REPO / "scripts" / "gpu-check.sh").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())  # comments may mention /tmp
    assert not re.search(r"(^|[\s=:\"'])/tmp/", code), "a fixed /tmp path in scripts/gpu-check.sh"
    assert "mktemp -d" in code and "trap" in code
