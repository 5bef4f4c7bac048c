"""Atomic file writes: a reader never sees a half-written output, a failed write leaves nothing behind.

    with atomic_path("out/poses.json") as tmp:
        tmp.write_text(json.dumps(poses))
    write_json("out/poses.json", poses)
    publish("out/chunks/chunk-0000/maps/a.npz", "out/maps/a.npz")          # hard link (or copy), then rename
    publish("out/.stage/cache/bank.safetensors", "out/cache/bank.safetensors", only_if_absent=True)

Everything is written to a temporary file in the destination folder (`.<name>.<8 random>.tmp<suffix>`), flushed,
fsync'ed, given the mode a plain `open()` would give (0666 masked by the umask), then renamed over the destination
(rename is atomic on POSIX and on Windows for files on one volume). Every file the project writes goes through this
module. A write that fails because the disk is full (or read-only, or over quota) raises `WriteError` naming the
destination; the temporary file is removed and the previous file, if any, is left as it was.
"""
import contextlib
import errno
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
from congeal.common.errors import WriteError
from congeal.common.paths import PathLike

# what the storage, not the program, got wrong: reported as WriteError with the destination's name
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
# creating the temporary file also fails for a folder this user may not write to
_CREATE_ERRNOS = _STORAGE_ERRNOS | {errno.EACCES, errno.EPERM}
# libraries that write files themselves (safetensors' Rust writer, torch's zip writer) report a full disk only in
# their message
_STORAGE_MESSAGES = ("no space left on device", "storagefull", "os error 28", "disk quota exceeded")
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]*)?$")


def _umask() -> int:
    """The process umask: from /proc (thread-safe) where there is one, else by setting and restoring it."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _storage_error(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        return True
    return not isinstance(error, OSError) and any(m in str(error).lower() for m in _STORAGE_MESSAGES)


def _write_error(path: Path, error: BaseException) -> WriteError:
    reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error).splitlines()[0]
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space on that disk (or choose another output folder) and run the same command again"
    elif isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make the folder writable for this user (or choose another output folder)"
    else:
        fix = "check the disk (space, quota, health) and run the same command again"
    return WriteError(path, f"could not be written ({reason}); the previous file, if any, is unchanged", fix)


def is_temporary(path: PathLike) -> bool:
    """Whether `path` is one of this module's temporary files (what a killed writer leaves behind)."""
    return bool(_TEMPORARY.match(Path(path).name))


def remove_temporaries(folder: PathLike, recursive: bool = True) -> List[Path]:
    """Delete the temporary files a killed writer left under `folder`; returns them.

    Only call this when no other process writes into `folder` (a live writer's temporary file would go too).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in (folder.rglob(".*") if recursive else folder.glob(".*")) if p.is_file() and is_temporary(p)]
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return found


def _temporary(path: Path) -> Path:
    """A fresh, empty temporary file beside `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as error:
        if error.errno in _CREATE_ERRNOS:
            raise _write_error(path, error) from error
        raise
    os.close(fd)
    return Path(tmp_name)


def _commit(tmp: Path, path: Path) -> None:
    """fsync, umask mode, rename over `path`."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    # mkstemp creates 0600 files; outputs get the mode a plain open() would give (0666 minus the umask), so a
    # lab's shared run folder or a web server can read them
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    Raises:
        WriteError: the disk is full / read-only / over quota (the message names `path`; nothing is left behind).
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        _commit(tmp, path)
    except Exception as error:
        if _storage_error(error) and not isinstance(error, WriteError):
            raise _write_error(path, error) from error
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def append_line(path: PathLike, line: str) -> None:
    """Add one line to a small log file (the whole file is rewritten atomically: a kill never leaves half a line)."""
    path = Path(path)
    before = path.read_bytes() if path.is_file() else b""
    if before and not before.endswith(b"\n"):
        before += b"\n"
    write_bytes(path, before + line.rstrip("\n").encode("utf-8") + b"\n")


def write_json(path: PathLike, obj: Any, indent: Optional[int] = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, allow_nan=True) + "\n")


def write_npz(path: PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def write_safetensors(path: PathLike, tensors: Dict[str, Any], metadata: Optional[Dict[str, str]] = None) -> None:
    from safetensors.torch import save_file

    # written by safetensors itself (no second copy in memory: a DINOv2-G bank is GBs); a full disk is recognised
    # by its message
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        _sort_safetensors_header(tmp)


def _sort_safetensors_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys sorted, in place (same length, data untouched).

    safetensors writes the metadata from a Rust hash map, whose order changes from process to process: the same
    tensors gave different bytes in every run. Sorted, equal content means equal files (checksums, rsync, the
    fault-injection comparisons).
    """
    import struct

    with open(path, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = handle.read(length)
        doc = json.loads(header)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > length:
            return  # another encoding of the same header: leave the file as safetensors wrote it
        handle.seek(8)
        handle.write(text + b" " * (length - len(text)))  # safetensors pads its header with spaces


def save_torch(path: PathLike, obj: Any) -> None:
    """`torch.save(obj, path)`, atomically (serialised in memory first: a full disk is reported with its errno)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def save_image(path: PathLike, image: Any, quality: Optional[int] = None) -> None:
    """Save a PIL image or an HxWx3 / HxW array (uint8, or float in [0,1]) atomically; format from the suffix
    (`quality`: JPEG quality, 1-95; None = PIL's default)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(array)
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    options = {"quality": int(quality)} if quality is not None and fmt == "JPEG" else {}
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **options)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` are the same file on disk (one a hard link of the other)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def copy_file(src: PathLike, dst: PathLike) -> None:
    """Copy `src` to `dst` atomically (contents only; the copy gets the umask's mode)."""
    import shutil

    with atomic_path(dst) as tmp:
        with open(src, "rb") as source, open(tmp, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)


def publish(src: PathLike, dst: PathLike, only_if_absent: bool = False) -> bool:
    """Make `dst` the file `src` is, atomically: a hard link where the file system allows one, else a copy.

    A reader of `dst` sees the old file or the new one, never a mixture; `src` is never written to (a hard link
    shares its inode, so writing "over" a linked destination would change the source too — hence link-then-rename).

    Args:
        src: an existing, complete file.
        dst: the destination (replaced unless `only_if_absent`).
        only_if_absent: first writer wins: when `dst` exists it is left as it is (for files whose every version is
            equally good, e.g. a cache keyed by content).
    Returns:
        whether `dst` now is (a link of, or a copy of) `src`; False only when `only_if_absent` found another file.
    """
    src, dst = Path(src), Path(dst)
    if same_file(src, dst):
        return True
    if only_if_absent and dst.exists():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if only_if_absent:
        try:
            os.link(src, dst)  # fails with EEXIST when another writer got there first: never overwrites
            return True
        except FileExistsError:
            return False
        except OSError as error:
            if _storage_error(error):
                raise _write_error(dst, error) from error
        # no hard links here: an atomic copy (a concurrent winner is replaced by an equally whole file)
        copy_file(src, dst)
        return True
    tmp = _temporary(dst)
    try:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError as error:
            if _storage_error(error):
                raise _write_error(dst, error) from error
            copy_file(src, dst)  # no hard links on this file system
            return True
        try:
            os.replace(tmp, dst)
        except OSError as error:
            if _storage_error(error):
                raise _write_error(dst, error) from error
            raise
        return True
    finally:
        if tmp.exists():
            tmp.unlink()
