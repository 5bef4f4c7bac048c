"""Fuzzing the readers of outside data: malformed JSON trees and truncated / bit-flipped files.

Asserted for every generated input: the reader returns or raises `InputError` (one line naming the file), nothing
else escapes; nothing is written anywhere (the folder holding the input is unchanged but for the input itself); a
previous output beside it is not damaged. Fixed budget: derandomized (the same inputs on every run, no example
database), `max_examples` per reader chosen so the file runs in well under 40 s on an idle 2-core machine.
"""
import functools
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from congeal.apps.labels.label_file import read_labels
from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.inversion.embedding_files import load_learned_embeds
from congeal.io.decode import decode_image, decode_mask
from congeal.run import chunked
from congeal.run.folder import RunFolder
from congeal.weights.torch_files import load_torch_file

BUDGET = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BINARY_BUDGET = settings(BUDGET, max_examples=100)

# JSON trees: scalars of every kind (NaN, inf, huge ints, odd strings) nested in lists and objects, with the keys
# the readers look for so that the generated documents get past the first checks
KEYS = ["photos", "img_000", "points", "polygons", "masks", "format", "names", "chunk_size", "images", "name",
        "c2w", "frames", "version", "nose"]
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["congeal-labels-v1", "congeal-register-v1", "../../x", "", "a\x00b"]))
TREES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=4),
                     max_leaves=24)
LABEL_DOCS = st.fixed_dictionaries({"photos": st.dictionaries(
    st.sampled_from(["img_000", "other"]),
    st.dictionaries(st.sampled_from(["points", "polygons", "masks", "extra"]),
                    st.dictionaries(st.text(max_size=8), TREES, max_size=3) | TREES, max_size=3), max_size=2)})
# raw JSON text: valid documents with a few characters replaced, inserted or cut
TEXTS = st.builds(lambda doc, cut, junk: json.dumps(doc, allow_nan=True)[:cut] + junk,
                  TREES, st.integers(0, 400), st.sampled_from(["", "[", "{", "]]", "1e999", "NaN", "\udcff", "\x00"]))


class _Folder:
    """A folder holding one input file and a previous output; checks nothing else appears or changes."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.previous = root / "previous-output.json"
        self.previous.write_text('{"kept": true}')
        self.digest = hashlib.sha256(self.previous.read_bytes()).hexdigest()

    def snapshot(self, ignore: Path) -> Dict[Path, str]:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.root.parent.rglob("*")
                if p.is_file() and p != ignore}

    def check(self, read: Callable[[], object], path: Path) -> None:
        before = self.snapshot(path)
        try:
            read()
        except InputError as error:
            assert "\n" not in str(error), str(error)
        after = self.snapshot(path)
        assert after == before, "a reader wrote or changed a file"
        assert hashlib.sha256(self.previous.read_bytes()).hexdigest() == self.digest


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> _Folder:
    return _Folder(tmp_path_factory.mktemp("fuzz") / "run")


def _stub_run():
    size = SimpleNamespace(height=48, width=64)
    photo = SimpleNamespace(rgb=np.zeros((48, 64, 3), np.float32), path=Path("img_000.png"))
    return SimpleNamespace(names=["img_000"], root=Path("run"), object_map=lambda name: size,
                           photo=lambda name, required=True: photo)


def _json_readers(folder: _Folder, path: Path):
    run_folder = RunFolder(folder.root)
    return [
        lambda: read_json(path, "fix", expect=dict),
        lambda: read_labels(path, _stub_run()),
        lambda: chunked._read_plan(folder.root),
        lambda: run_folder.read_register(),
        lambda: run_folder.read_register_json(),
    ]


@BUDGET
@given(doc=TREES | LABEL_DOCS)
def test_json_trees(folder, doc):
    for name in ("labels.json", chunked.MANIFEST, "register.json"):
        path = folder.root / name
        path.write_text(json.dumps(doc, allow_nan=True))
    for read in _json_readers(folder, folder.root / "labels.json"):
        folder.check(read, folder.root / "labels.json")


@BUDGET
@given(text=TEXTS)
def test_json_text(folder, text):
    for name in ("labels.json", chunked.MANIFEST, "register.json"):
        (folder.root / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    for read in _json_readers(folder, folder.root / "labels.json"):
        folder.check(read, folder.root / "labels.json")


# ------------------------------------------------------------------------------------------- binary files
def _png(mode: str) -> bytes:
    rng = np.random.default_rng(0)
    array = (rng.random((24, 32, 4 if mode == "RGBA" else 1)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array if mode == "RGBA" else array[..., 0], mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _embeds(suffix: str) -> bytes:
    rows = {"<congeal>": torch.randn(2, 8, generator=torch.Generator().manual_seed(0))}
    if suffix == ".safetensors":  # the bytes save_learned_embeds writes (metadata {"format": "pt"})
        from safetensors.torch import save

        return save(rows, metadata={"format": "pt"})
    buffer = io.BytesIO()
    torch.save(rows, buffer)
    return buffer.getvalue()


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=4)),
)


def _mutate(data: bytes, mutation) -> bytes:
    kind, how = mutation
    if kind == "truncate":
        return data[:int(how * len(data))]
    flipped = bytearray(data)
    for where, bit in how:
        flipped[min(len(data) - 1, int(where * len(data)))] ^= 1 << bit
    return bytes(flipped)


@functools.lru_cache(maxsize=None)
def _seed(which: str) -> bytes:
    """The intact file each mutation starts from."""
    made = {"photo.png": lambda: _png("RGBA"), "mask.png": lambda: _png("L"),
            "embeds.safetensors": lambda: _embeds(".safetensors"), "embeds.pt": lambda: _embeds(".pt")}
    return made[which]()


def _photo():
    from congeal.io.decode import DecodedImage

    return DecodedImage(np.zeros((24, 32, 3), np.float32), None, (24, 32))


BINARY_READERS = {
    "photo.png": lambda path: decode_image(path),
    "mask.png": lambda path: decode_mask(path, _photo()),
    "embeds.safetensors": lambda path: load_learned_embeds(path),
    "embeds.pt": lambda path: load_learned_embeds(path),
}


@BINARY_BUDGET
@given(mutation=MUTATIONS, which=st.sampled_from(sorted(BINARY_READERS)))
def test_truncated_and_bit_flipped_files(folder, mutation, which):
    path = folder.root / which
    path.write_bytes(_mutate(_seed(which), mutation))
    folder.check(lambda: BINARY_READERS[which](path), path)
    if which.endswith(".pt"):
        folder.check(lambda: load_torch_file(path, "fix"), path)
