"""congeal.canonical.grid: the baked grid, its file and its validation."""
import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from congeal.canonical.bake import canonical_from_sdf
from congeal.canonical.grid import FORMAT, Canonical, load_canonical, save_canonical
from congeal.common.errors import InputError


def _sphere(resolution=16, radius=1.0, centre=(0.0, 0.0, 0.0), size=0.5):
    c = torch.tensor(centre)
    return canonical_from_sdf(lambda p: (p - c).norm(dim=-1) - size, lambda p: (p * 0.5 + 0.5).clamp(0, 1),
                              resolution=resolution, radius=radius)


def test_round_trip_and_hash(tmp_path):
    canonical = _sphere()
    path = tmp_path / "canonical.safetensors"
    save_canonical(path, canonical)
    loaded = load_canonical(path)
    assert loaded.resolution == 16 and loaded.radius == 1.0
    assert torch.equal(loaded.density, canonical.density) and torch.equal(loaded.rgb, canonical.rgb)
    assert loaded.content_hash() == canonical.content_hash()
    assert Canonical(canonical.density, canonical.rgb, 1.5).content_hash() != canonical.content_hash()
    bumped = canonical.density.clone()
    bumped[3, 4, 5] += 1.0
    assert Canonical(bumped, canonical.rgb, 1.0).content_hash() != canonical.content_hash()
    # Header metadata is the documented one.
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["__metadata__"] == {"format": FORMAT, "radius": "1.0"}
    assert header["density"]["dtype"] == "F32" and header["rgb"]["shape"] == [16, 16, 16, 3]


def test_points_follow_the_documented_layout():
    canonical = _sphere(resolution=8, radius=2.0)
    points = canonical.points()
    assert points.shape == (8, 8, 8, 3)
    assert torch.allclose(points[3, 5, 6], torch.tensor([-2 + 3.5 * 0.5, -2 + 5.5 * 0.5, -2 + 6.5 * 0.5]))
    assert canonical.cell_size == 0.5


def _write(path, tensors, metadata):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


BAD_CASES = {
    "wrong format tag": (lambda d, c: {"density": d, "rgb": c}, {"format": "pt", "radius": "1.0"}, "format"),
    "missing tag": (lambda d, c: {"density": d, "rgb": c}, {"radius": "1.0"}, "format"),
    "missing radius": (lambda d, c: {"density": d, "rgb": c}, {"format": FORMAT}, "radius"),
    "bad radius": (lambda d, c: {"density": d, "rgb": c}, {"format": FORMAT, "radius": "-2"}, "radius"),
    "missing rgb": (lambda d, c: {"density": d}, {"format": FORMAT, "radius": "1.0"}, "rgb"),
    "non-cubic": (lambda d, c: {"density": d[:, :, :4], "rgb": c[:, :, :4]}, {"format": FORMAT, "radius": "1"},
                  "cubic"),
    "rgb shape": (lambda d, c: {"density": d, "rgb": c[..., :2]}, {"format": FORMAT, "radius": "1"}, "rgb"),
    "nan density": (lambda d, c: {"density": d.index_fill(0, torch.tensor([1]), float("nan")), "rgb": c},
                    {"format": FORMAT, "radius": "1"}, "NaN"),
    "negative density": (lambda d, c: {"density": d - 1.0, "rgb": c}, {"format": FORMAT, "radius": "1"},
                         "negative"),
    "rgb range": (lambda d, c: {"density": d, "rgb": c * 3.0}, {"format": FORMAT, "radius": "1"}, "[0,1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_files_raise_input_error_naming_the_file(tmp_path, case):
    make, metadata, words = BAD_CASES[case]
    density = torch.rand(8, 8, 8) + 0.1
    rgb = torch.rand(8, 8, 8, 3) * 0.9 + 0.05
    path = _write(tmp_path / "bad.safetensors", make(density, rgb), metadata)
    with pytest.raises(InputError) as info:
        load_canonical(path)
    assert info.value.path == path
    assert words in str(info.value) and "Fix:" in str(info.value)


def test_missing_and_junk_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_canonical(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(InputError, match="safetensors") as info:
        load_canonical(junk)
    assert info.value.path == junk


def test_save_refuses_bad_arrays(tmp_path):
    canonical = _sphere(resolution=8)
    bad = Canonical(canonical.density * -1 - 1, canonical.rgb, 1.0)
    with pytest.raises(InputError):
        save_canonical(tmp_path / "c.safetensors", bad)
    assert not (tmp_path / "c.safetensors").exists()
