"""Hostile JSON (labels, run files) ends in one InputError naming the file, never a RecursionError/OverflowError.

Each case failed before issue 31: `read_json` caught only ValueError/OSError, so deep nesting raised RecursionError,
a 400-digit coordinate an OverflowError in the label reader, NaN/1e400 passed as floats, a 1-GB file was read whole
and a list where an object belongs went on to an AttributeError; the label file had no caps.
"""
from pathlib import Path
from types import SimpleNamespace

import pytest

from congeal.apps.labels import label_file
from congeal.apps.labels.label_file import MAX_POLYGON_VERTICES, parse_labels, read_labels
from congeal.common.errors import InputError
from congeal.common.json_files import MAX_JSON_DEPTH, read_json
from congeal.run import chunked
from congeal.run.folder import RunFolder


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _one_line(error: InputError, path: Path) -> str:
    message = str(error)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("text, phrase", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),          # RecursionError in json before
    ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
    ('{"x": 1e400}', "too large"),                              # parsed as inf before
    ('{"x": NaN}', "NaN"),
    ('{"x": -Infinity}', "Infinity"),
    ('{"x": ' + "9" * 400 + "}", "400 digits"),                # a huge int: OverflowError at float() before
    ('{"x": ' + "9" * 5000 + "}", "5000 digits"),              # past Python's int-string limit
])
def test_hostile_json_is_one_input_error(tmp_path, text, phrase):
    path = _write(tmp_path / "doc.json", text)
    with pytest.raises(InputError) as caught:
        read_json(path, "fix it")
    assert phrase in _one_line(caught.value, path)


def test_size_cap_and_expected_type(tmp_path):
    big = _write(tmp_path / "big.json", '{"pad": "' + "x" * 2000 + '"}')
    with pytest.raises(InputError, match="over the limit of"):
        read_json(big, "fix it", max_bytes=1000)
    assert read_json(big, "fix it", max_bytes=4000)["pad"] == "x" * 2000
    listed = _write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(InputError, match="holds a list where an object belongs"):
        read_json(listed, "fix it", expect=dict)
    truth = _write(tmp_path / "true.json", "true")
    with pytest.raises(InputError, match="holds true/false where an integer belongs"):
        read_json(truth, "fix it", expect=int)  # bool is an int to Python, not to a reader of counts
    assert read_json(_write(tmp_path / "ok.json", '{"a": [1.5, -2, "x", null]}'), "fix", expect=dict) == \
        {"a": [1.5, -2, "x", None]}


def _run(names=("img_000",), height=60, width=80):
    """What parse_labels asks of a run: its photo names and each photo's size."""
    size = SimpleNamespace(height=height, width=width)
    return SimpleNamespace(names=list(names), root=Path("run"), object_map=lambda name: size)


def test_label_file_huge_coordinate_and_deep_nesting(tmp_path):
    run = _run()
    huge = _write(tmp_path / "huge.json", '{"photos": {"img_000": {"points": {"nose": [' + "1" * 400 + ", 5]}}}}")
    with pytest.raises(InputError) as caught:
        read_labels(huge, run)
    assert "400 digits" in _one_line(caught.value, huge)
    deep = _write(tmp_path / "deep.json", '{"photos": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(InputError, match="nested deeper"):
        read_labels(deep, run)
    listed = _write(tmp_path / "listed.json", "[]")
    with pytest.raises(InputError, match="object belongs"):
        read_labels(listed, run)


def test_label_file_caps(tmp_path, monkeypatch):
    run = _run()
    square = [[10, 10], [20, 10], [20, 20], [10, 20]]
    too_many = (square * (MAX_POLYGON_VERTICES // 4 + 1))[:MAX_POLYGON_VERTICES + 1]
    with pytest.raises(InputError, match=f"{MAX_POLYGON_VERTICES + 1} vertices, over the limit"):
        parse_labels({"photos": {"img_000": {"polygons": {"wing": too_many}}}}, tmp_path / "l.json", run)
    long_name = "w" * (label_file.MAX_LABEL_NAME_CHARS + 1)
    with pytest.raises(InputError, match="over the limit"):
        parse_labels({"photos": {"img_000": {"points": {long_name: [1, 1]}}}}, tmp_path / "l.json", run)
    monkeypatch.setattr(label_file, "MAX_LABEL_FILE_BYTES", 100)
    big = _write(tmp_path / "big.json", '{"photos": {"img_000": {"points": {"' + "n" * 200 + '": [1, 1]}}}}')
    with pytest.raises(InputError, match="over the limit of"):
        read_labels(big, run)
    mask_path = {"photos": {"img_000": {"masks": {"body": "a\x00b.png"}}}}
    with pytest.raises(InputError, match="must be a file path"):
        parse_labels(mask_path, tmp_path / "l.json", run)  # a NUL byte: ValueError from os.stat before


def test_label_names_get_distinct_safe_file_names(tmp_path):
    run = _run()
    regions = {name: [[10, 10], [30, 10], [30, 30]] for name in ("left wing", "left_wing", "left/wing")}
    long_name = "x" * 240
    doc = {"photos": {"img_000": {"polygons": regions, "points": {long_name: [5, 5], "../../../etc": [6, 6]}}}}
    labels = parse_labels(doc, tmp_path / "l.json", run)
    stems = labels.file_names
    assert len(set(stems.values())) == len(stems) == 5
    for stem in stems.values():
        assert "/" not in stem and not stem.startswith(".") and len(stem.encode()) <= 96
        target = tmp_path / "masks" / f"{stem}.png"
        assert target.resolve().parent == (tmp_path / "masks").resolve()
    assert stems["left_wing"] == "left_wing"  # an already safe name keeps its plain file name


def test_run_files_with_wrong_types(tmp_path):
    run = RunFolder(tmp_path)
    _write(run.register, "[" * 100_000 + "]" * 100_000)
    assert run.read_register_json() is None  # RecursionError escaped before
    with pytest.raises(InputError, match="nested deeper"):
        run.read_register()
    _write(run.register, "[1, 2]")
    with pytest.raises(InputError, match="object belongs"):
        run.read_register()
    manifest = tmp_path / chunked.MANIFEST
    for text, phrase in (('{"names": 5, "chunk_size": 2}', "no list of photo names"),
                         ('{"names": ["a"], "chunk_size": "2"}', "not a positive integer"),
                         ('{"names": ["a"], "chunk_size": 0}', "not a positive integer"),
                         ('{"names": ["a"], "chunk_size": 1e400}', "too large"),
                         ("[" * 5000 + "]" * 5000, "nested deeper")):
        _write(manifest, text)
        with pytest.raises(InputError) as caught:  # int("2")/TypeError/RecursionError escaped before
            chunked._read_plan(tmp_path)
        assert phrase in _one_line(caught.value, manifest)
    chunk = chunked.ChunkPlan([], 1).chunk_dir(tmp_path, 0)
    chunk.mkdir(parents=True)
    _write(chunk / chunked.CHUNK_FILE, "[" * 100_000 + "]" * 100_000)
    assert chunked.chunk_version(tmp_path, 0) is None  # unreadable: re-published, not a crash
