"""Reading JSON with an InputError that names the file and the fix; strict-JSON reports."""
import json

import pytest

from congeal.common.errors import InputError
from congeal.common.json_files import json_ready, read_json


def test_read_json_names_the_file_and_the_fix(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good, fix="re-run it") == {"a": [1, 2]}
    with pytest.raises(InputError, match="absent.json: poses.json not found. Fix: pass the run folder"):
        read_json(tmp_path / "absent.json", "re-run it", missing="poses.json not found",
                  missing_fix="pass the run folder")
    with pytest.raises(InputError, match="is missing. Fix: re-run it"):
        read_json(tmp_path / "absent.json", "re-run it")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad.json: is not valid JSON \(.*\). Fix: re-run it"):
        read_json(bad, "re-run it")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(InputError, match="is not valid JSON"):
        read_json(latin, "re-run it")


def test_json_ready_replaces_non_finite_floats():
    report = {"mean": float("nan"), "rows": [1.5, float("inf"), (2, -float("inf"))], "name": "x"}
    assert json_ready(report) == {"mean": None, "rows": [1.5, None, [2, None]], "name": "x"}
    json.dumps(json_ready(report), allow_nan=False)
