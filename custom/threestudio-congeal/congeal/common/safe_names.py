"""File names made from names a stranger chose (labels, regions, edits), and output paths kept inside their folder.

    safe_file_name("left/wing")                    # 'left_wing-3f1c9a2b': changed, so the original's hash is added
    safe_file_name("left_wing")                    # 'left_wing': already safe, kept as it is
    unique_file_names(["Wing", "wing"])            # {'Wing': 'Wing', 'wing': 'wing-…'}: distinct on every disk
    folder_name("my edit", "--name")               # 'my edit'; '../x', '/tmp/x', '.', '' -> InputError
    ensure_inside(run_root, run_root / "edits" / name, "the edit folder")   # resolved, symlinks included

Rules of `safe_file_name`: letters, digits, `-` and `_` are kept (any script); every other character becomes `_`;
a name that had to change, or is longer than `MAX_NAME_BYTES` in UTF-8, gets `-<8 hex digits of its SHA-256>`, so
names that differ only in punctuation ("left wing", "left_wing", "left/wing") never share a file and a 240-character
name still fits the 255-byte limit of common file systems once `congeal.common.atomic` adds its temporary-file
decoration. `unique_file_names` also separates names that a case-insensitive or Unicode-normalising disk (macOS,
Windows) would store as one file.
"""
import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Dict, Iterable, Optional

from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["MAX_NAME_BYTES", "name_hash", "safe_file_name", "unique_file_names", "folder_name", "ensure_inside"]

MAX_NAME_BYTES = 96  # the stem; a suffix and atomic's ".<stem>.<8 chars>.tmp<suffix>" stay far below 255 bytes
_HASH_CHARS = 8
# names Windows refuses as files whatever their suffix
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}


def name_hash(name: str) -> str:
    """8 hex digits of the SHA-256 of `name` (UTF-8): what tells two shortened or cleaned names apart."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]


def _shorten(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits `max_bytes`."""
    encoded = text.encode("utf-8")[:max_bytes]
    return encoded.decode("utf-8", "ignore")


def safe_file_name(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A file-name stem made from `name` that is safe on every common file system (see the module docstring).

    Args:
        name: any string (a label, region or edit name from a file the user did not write).
        max_bytes: longest stem in UTF-8 bytes, hash included.
    Returns:
        The stem: never empty, never `.`/`..`, no path separator, no leading dot, no control character.
    """
    kept = "".join(ch if (ch.isalnum() or ch in "-_") else "_" for ch in name)
    changed = kept != name or not kept or kept.upper() in _RESERVED
    if not changed and len(kept.encode("utf-8")) <= max_bytes:
        return kept
    room = max_bytes - _HASH_CHARS - 1
    return f"{_shorten(kept, room).rstrip('_') or 'name'}-{name_hash(name)}"


def unique_file_names(names: Iterable[str], max_bytes: int = MAX_NAME_BYTES) -> Dict[str, str]:
    """{name: file stem} with every stem distinct, also on case-insensitive and Unicode-normalising disks.

    Args:
        names: the names, in a fixed order (the first of a clashing pair keeps its plain stem).
        max_bytes: see `safe_file_name`.
    Returns:
        one stem per distinct name.
    """
    stems: Dict[str, str] = {}
    taken = set()
    for name in names:
        if name in stems:
            continue
        stem = safe_file_name(name, max_bytes)
        salt = 0
        while unicodedata.normalize("NFC", stem).casefold() in taken:  # the same file on macOS / Windows
            salt += 1
            room = max_bytes - _HASH_CHARS - 1
            stem = f"{_shorten(safe_file_name(name, max_bytes), room)}-{name_hash(f'{salt}:{name}')}"
        taken.add(unicodedata.normalize("NFC", stem).casefold())
        stems[name] = stem
    return stems


def folder_name(name: str, option: str, example: Optional[str] = None) -> str:
    """A user-chosen folder name that is one plain path component, else InputError.

    Args:
        name: what the user typed (e.g. `congeal edit --name`).
        option: the option it came from, for the message.
        example: a safe name to suggest (default: `safe_file_name(name)`).
    Returns:
        `name` unchanged.
    Raises:
        InputError: empty, `.`/`..`, a path (separators, absolute, drive), a leading dot, control characters, or
            longer than `MAX_NAME_BYTES` bytes.
    """
    suggestion = example or safe_file_name(name.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".") or "edit")
    fix = f"give a plain folder name such as {suggestion!r} (letters, digits, '-', '_')"
    problem = None
    if not name.strip():
        problem = "is empty"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name) or Path(name).is_absolute():
        problem = "is a path, not a folder name (it could write outside the run folder)"
    elif name.startswith("."):
        problem = "starts with a dot (it would be hidden, or name the folder itself or the one above)"
    elif any(unicodedata.category(ch).startswith("C") for ch in name) or ":" in name:
        problem = "holds control characters or ':'"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise InputError(None, f"{option} {name[:120]!r} {problem}", fix)
    return name


def ensure_inside(root: PathLike, path: PathLike, what: str) -> Path:
    """`path` if it stays inside `root` once both are resolved (symlinks followed), else InputError.

    A run folder that came from someone else may hold a symlink (e.g. `edits -> ~/.ssh`); resolving first means
    such a link cannot carry a write outside the run.

    Args:
        root: the folder the output must stay in.
        path: the output file or folder (need not exist yet).
        what: what `path` is, for the message.
    Returns:
        `path` (as given, as a Path).
    """
    resolved_root = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise InputError(path, f"{what} would be written outside {root} (it resolves to {resolved})",
                         f"remove the symlink or '..' that leads out of {root}, or choose another name")
    return Path(path)
