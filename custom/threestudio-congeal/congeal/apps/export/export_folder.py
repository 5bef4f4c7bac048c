"""One export folder, staged beside its destination and swapped in whole: a reader never sees half an export.

    with staged_folder(out / "colmap") as stage:     # out/.colmap.staging-<random>/
        write_text(stage / "sparse/0/cameras.txt", ...)
    # on success out/colmap is the new folder (an older one is replaced); on error nothing of it is left

Every file inside is still written through `congeal.common.atomic`; the folder itself is renamed into place
(atomic on POSIX), the previous one moved aside first and deleted after. A destination that cannot be created
(a file where a folder should be, a read-only disk, no permission) is a `WriteError` naming it, with the fix.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from congeal.common.errors import WriteError
from congeal.common.paths import PathLike

__all__ = ["staged_folder", "ensure_folder"]

_FOLDER_FIX = "choose an --out folder this user can write to (and not a file)"


def ensure_folder(path: PathLike) -> Path:
    """Create `path` (and its parents) as a folder, or raise WriteError naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(path, "is a file, not a folder", _FOLDER_FIX)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(path, f"cannot be created ({error.strerror or error})", _FOLDER_FIX) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise WriteError(path, "is not writable for this user", _FOLDER_FIX)
    return path


@contextlib.contextmanager
def staged_folder(destination: PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside `destination`; on success it becomes `destination`.

    Args:
        destination: the folder the export is published as (replaced whole when it exists).
    Raises:
        WriteError: the parent folder cannot be created or written, or `destination` is a file.
    """
    destination = Path(destination)
    parent = ensure_folder(destination.parent)
    if destination.exists() and not destination.is_dir():
        raise WriteError(destination, "is a file, not a folder", "remove it or choose another --out folder")
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=parent))
    except OSError as error:
        raise WriteError(parent, f"cannot hold a new folder ({error.strerror or error})", _FOLDER_FIX) from None
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; an export is for others to read
        old = None
        if destination.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=parent))
            os.replace(destination, old / destination.name)
        try:
            os.replace(stage, destination)
        except OSError:
            if old is not None:  # put the previous export back: the destination is never left empty
                os.replace(old / destination.name, destination)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
