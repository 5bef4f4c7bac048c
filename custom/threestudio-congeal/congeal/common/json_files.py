"""Reading JSON files the user gave us, and making reports strict-JSON ready (writing is `congeal.common.atomic`).

    doc = read_json(path, fix="re-run `congeal register`", missing="poses.json not found")
    write_json(out, json_ready({"pck": float("nan")}))       # -> {"pck": null}

`read_json` turns a missing, unreadable or malformed file into an InputError naming the file and the fix.
"""
import json
import math
from pathlib import Path
from typing import Any, Optional

from congeal.common.errors import InputError
from congeal.common.paths import PathLike


def read_json(path: PathLike, fix: str, missing: str = "is missing", missing_fix: Optional[str] = None) -> Any:
    """The parsed content of `path`.

    Args:
        path: the JSON file.
        fix: what to do when the file cannot be read or is not valid JSON.
        missing: the problem stated when there is no such file.
        missing_fix: what to do then (default: `fix`).
    Raises:
        InputError: naming `path`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing, missing_fix or fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InputError(path, f"is not valid JSON ({error})", fix) from error
    except OSError as error:
        raise InputError(path, f"cannot be read ({error.strerror or error})", fix) from error


def json_ready(obj: Any) -> Any:
    """Copy of a report with every non-finite float replaced by None (strict JSON: `null` = undefined)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj
