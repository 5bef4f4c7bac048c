"""Torch checkpoint files (.pt/.ckpt/.bin) read without running their code: `torch.load(..., weights_only=True)`.

    checkpoint = load_torch_file("outputs/congeal/cats@…/ckpts/last.ckpt", fix="point system.canonical_ckpt at …")
    state = checkpoint["state_dict"]                         # a Lightning checkpoint's weights

A torch file is a pickle, and a full unpickle runs whatever the file asks for: opening a checkpoint someone else
wrote must never do that. Every torch file the project reads goes through `load_torch_file`, which

- always passes `weights_only=True` (tensors, containers and numbers only), and refuses to load at all on a torch
  without that option (< 1.13) instead of falling back to a full unpickle;
- allow-lists only `ALLOWED_GLOBALS`, the few harmless types Lightning may put into a checkpoint beside the weights
  (paths), through `torch.serialization.safe_globals` where the torch has it (>= 2.5);
- turns a file that needs anything else into one InputError naming the file and the Python objects it holds (read by
  torch's static scan, `get_unsafe_globals_in_checkpoint`, which runs nothing), and every other failure (truncated,
  not a torch file) into an InputError too.
"""
import inspect
import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any, List

import torch

from congeal.common.errors import InputError
from congeal.common.paths import PathLike

__all__ = ["ALLOWED_GLOBALS", "supports_weights_only", "load_torch_file", "unsafe_globals"]

# Beside tensors and plain containers a Lightning checkpoint may hold paths (ModelCheckpoint's dirpath when a Path
# was passed); building a path object runs no code of the file's choosing.
ALLOWED_GLOBALS = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def _load_parameters() -> set:
    try:
        return set(inspect.signature(torch.load).parameters)
    except (TypeError, ValueError):  # a wrapped torch.load without a signature: assume a current torch
        return {"weights_only", "mmap"}


def _is_zip(path: Path) -> bool:
    """Is this a zip-format torch file? (A damaged zip directory makes `is_zipfile` itself raise.)"""
    try:
        return zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001 - BadZipFile, OSError, ...: the load reports the damage
        return False


def supports_weights_only() -> bool:
    """Does this torch's `torch.load` take `weights_only` (torch >= 1.13)?"""
    return "weights_only" in _load_parameters()


def unsafe_globals(path: PathLike) -> List[str]:
    """The Python types/functions a torch file would have to import to load (empty when none or unknown).

    Uses torch's static scan of the pickle (nothing in the file runs); [] on a torch without it (< 2.5).
    """
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None:
        return []
    try:
        return sorted(set(scan(str(path))))
    except Exception:  # noqa: BLE001 - a file too broken to scan is reported by the load itself
        return []


def load_torch_file(path: PathLike, fix: str, what: str = "checkpoint") -> Any:
    """The content of a torch file, loaded with `weights_only=True` on the CPU (memory-mapped where possible).

    Args:
        path: the .pt/.ckpt/.bin file.
        fix: what to do when it cannot be read (e.g. which setting to point at another file).
        what: what the file is, for messages.
    Returns:
        The loaded object (dicts, lists, tensors, numbers, strings).
    Raises:
        InputError: missing file; a torch without `weights_only`; a file that holds Python objects beyond
            tensors and plain data (named); a truncated or foreign file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, f"{what} not found", fix)
    params = _load_parameters()
    if "weights_only" not in params:
        raise InputError(path, f"cannot be loaded safely: this torch ({torch.__version__}) has no "
                               "torch.load(weights_only=True), and a full load would run any code the file holds",
                         "install torch >= 1.13 (>= 2.4 recommended), or convert the file to .safetensors")
    kwargs = {"map_location": "cpu", "weights_only": True}
    if "mmap" in params and _is_zip(path):  # legacy (non-zip) torch files cannot be memory-mapped
        kwargs["mmap"] = True
    allowed = getattr(torch.serialization, "safe_globals", None)
    try:
        if allowed is not None:
            with allowed(ALLOWED_GLOBALS):
                return torch.load(str(path), **kwargs)
        return torch.load(str(path), **kwargs)
    except pickle.UnpicklingError as error:
        held = unsafe_globals(path)
        if held or "weights_only" in str(error) or "Unsupported global" in str(error):
            shown = ", ".join(held[:6]) + (", ..." if len(held) > 6 else "") if held else "types beyond tensors"
            raise InputError(
                path, f"holds Python objects ({shown}) that loading would have to import and run; congeal loads "
                      "only tensors and plain data from a torch file, so it was not loaded",
                "if you trust the file, re-save its weights alone, e.g. torch.save({'state_dict': "
                "torch.load(f, weights_only=False)['state_dict']}, 'weights.ckpt'), or use .safetensors; "
                f"otherwise: {fix}") from None
        raise InputError(path, f"is not a readable torch {what} ({str(error).splitlines()[0][:200]})", fix) from None
    except Exception as error:  # noqa: BLE001 - truncated zip, not a torch file, bad storage ... : one line
        message = (str(error).splitlines() or [""])[0][:200]
        raise InputError(path, f"cannot be read as a torch {what} ({type(error).__name__}: {message})", fix) from None
