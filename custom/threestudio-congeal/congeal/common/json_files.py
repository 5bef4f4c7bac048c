"""Reading JSON files the user gave us, and making reports strict-JSON ready (writing is `congeal.common.atomic`).

    doc = read_json(path, fix="re-run `congeal register`", missing="poses.json not found", expect=dict)
    doc = parse_json(text, path, fix)                         # the same checks on text already read
    write_json(out, json_ready({"pck": float("nan")}))       # -> {"pck": null}

`read_json` turns every way a file from a stranger can be bad into one InputError naming the file and the fix:
missing, unreadable, not UTF-8, not JSON, and these limits (docs/security.md):

- larger than `max_bytes` (default `MAX_JSON_BYTES`, 64 MiB; the label file has its own, smaller cap);
- nested deeper than `max_depth` (default `MAX_JSON_DEPTH`, 64 levels of lists/objects): deep nesting otherwise
  ends in a RecursionError in the parser or in the code that walks the document;
- `NaN`, `Infinity`, a float that overflows (`1e400`) or an integer longer than `MAX_INT_DIGITS` digits: a
  400-digit coordinate otherwise ends in an OverflowError far from the file;
- a top level of another type than `expect` (e.g. a list where an object belongs).
"""
import json
import math
from pathlib import Path
from typing import Any, List, Optional, Tuple, Type, Union

from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_INT_DIGITS", "read_json", "parse_json", "json_depth",
           "json_ready"]

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 20  # beyond any count or index a run holds (2**64 has 20 digits)

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}


class _BadNumber(ValueError):
    """A number JSON allows but a run cannot hold (raised by the parse hooks, reported as InputError)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text[:40]}{'...' if len(text) > 40 else ''} is too large (overflows a float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadNumber(f"an integer of {len(text.lstrip('-'))} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a number a run can hold (NaN and Infinity are refused)")


def json_depth(doc: Any, limit: int) -> int:
    """Nesting depth of lists/objects in `doc` (a scalar is 0), counting no further than `limit` + 1.

    Iterative, so a document deeper than Python's recursion limit is measured without a RecursionError.
    """
    deepest = 0
    stack: List[Tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _type_name(kind: Union[Type, Tuple[Type, ...]]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def parse_json(text: str, path: Optional[PathLike], fix: str, max_depth: int = MAX_JSON_DEPTH,
               expect: Optional[Union[Type, Tuple[Type, ...]]] = None) -> Any:
    """Parse JSON text with the limits of `read_json` (no size check: the caller read the text).

    Args:
        text: the JSON text.
        path: the file it came from (named in the error), or None.
        fix: what to do when it is not acceptable.
        max_depth: deepest nesting of lists/objects accepted.
        expect: the type (or types) the top level must have, or None for any.
    Raises:
        InputError: naming `path`.
    """
    try:
        doc = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant)
    except _BadNumber as error:
        raise InputError(path, f"is not acceptable JSON: {error}", fix) from None
    except RecursionError:
        raise InputError(path, f"is nested deeper than {max_depth} levels", fix) from None
    except ValueError as error:  # JSONDecodeError, and int() past Python's own digit limit
        raise InputError(path, f"is not valid JSON ({str(error)[:200]})", fix) from None
    if json_depth(doc, max_depth) > max_depth:
        raise InputError(path, f"is nested deeper than {max_depth} levels", fix)
    kinds = expect if isinstance(expect, tuple) else (expect,)
    if expect is not None and (not isinstance(doc, kinds) or (isinstance(doc, bool) and bool not in kinds)):
        raise InputError(path, f"holds {_type_name(type(doc))} where {_type_name(expect)} belongs", fix)
    return doc


def read_json(path: PathLike, fix: str, missing: str = "is missing", missing_fix: Optional[str] = None,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH,
              expect: Optional[Union[Type, Tuple[Type, ...]]] = None) -> Any:
    """The parsed content of `path`, within the limits above.

    Args:
        path: the JSON file.
        fix: what to do when the file cannot be read, is not valid JSON or breaks a limit.
        missing: the problem stated when there is no such file.
        missing_fix: what to do then (default: `fix`).
        max_bytes: largest file accepted (checked before reading).
        max_depth: deepest nesting of lists/objects accepted.
        expect: the type (or types) the top level must have (e.g. `dict`), or None for any.
    Returns:
        The parsed document.
    Raises:
        InputError: naming `path`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing, missing_fix or fix)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(path, f"is {size / 2**20:.1f} MiB, over the limit of {max_bytes / 2**20:g} MiB for "
                                   "this kind of file", fix)
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat(): never read past the cap
    except OSError as error:
        raise InputError(path, f"cannot be read ({error.strerror or error})", fix) from None
    if len(data) > max_bytes:
        raise InputError(path, f"is over the limit of {max_bytes / 2**20:g} MiB for this kind of file", fix)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(path, f"is not valid JSON (not UTF-8 text: {error.reason} at byte {error.start})",
                         fix) from None
    return parse_json(text, path, fix, max_depth=max_depth, expect=expect)


def json_ready(obj: Any) -> Any:
    """Copy of a report with every non-finite float replaced by None (strict JSON: `null` = undefined)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj
