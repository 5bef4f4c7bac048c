"""Is model X on this machine? A local path, a complete hub-cache snapshot, a needed download, or a gone id.

    from congeal.weights.locate import locate
    hit = locate("mvdream")                       # default MVDream checkpoint, looked up in the local HF cache
    print(hit.status, hit.path)                   # "cached" /root/.cache/huggingface/hub/models--MVDream--MVDream/...

Never opens a network connection; a miss comes with the command that downloads exactly what is needed.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from congeal.weights.hub_cache import cached_file, hub_cache_dir, snapshot_dir
from congeal.weights.table import GB, KNOWN_GONE, SOURCES, ModelSource


@dataclass
class Located:
    """Where a model reference points on this machine.

    status: "local" (an existing file/directory path), "cached" (complete in the HF cache), "missing" (not on this
    machine: needs a download), "incomplete" (local dir or cache snapshot lacks files), "gone" (a known-gone id).
    """

    key: str
    ref: str
    status: str
    path: Optional[Path]
    detail: str
    fix: str = ""

    @property
    def present(self) -> bool:
        return self.status in ("local", "cached")


def _missing_files(folder: Path, files: Sequence[Tuple[str, ...]]) -> List[str]:
    return [" or ".join(options) for options in files if not any((folder / name).is_file() for name in options)]


def _split_ref(source: ModelSource, ref: str) -> Tuple[str, Optional[str]]:
    """'org/name:file' or 'org/name' -> (repo_id, filename); the table's filename is the default."""
    if ":" in ref and not re.match(r"^[A-Za-z]:[\\/]", ref):
        repo_id, filename = ref.split(":", 1)
        return repo_id, filename
    return ref, source.filename


def looks_like_repo_id(ref: str) -> bool:
    """True for 'org/name' (optionally ':file'); False for paths such as '/abs', './rel', '~/x' or 'a/b/c'."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w./-]+)?", ref)) and not ref.startswith(".")


def locate(key: str, ref: Optional[str] = None, cache_dir: Optional[Path] = None) -> Located:
    """Find model `key` (as named by `ref`, default the table's default) on this machine, without network.

    Args:
        key: a `SOURCES` key.
        ref: a hub id ("org/name", "org/name:file") or a local path; None = the default.
        cache_dir: hub cache folder; default `hub_cache_dir()`.

    Returns:
        `Located` with status local / cached / missing / incomplete / gone, the path when present, and a fix.
    """
    source = SOURCES[key]
    ref = str(ref) if ref not in (None, "") else (
        f"{source.default}:{source.filename}" if source.filename else source.default)
    repo_like = looks_like_repo_id(ref)
    repo_id, filename = _split_ref(source, ref) if repo_like else (ref, None)
    if repo_like and repo_id in KNOWN_GONE:
        replacement = KNOWN_GONE[repo_id] or source.default
        return Located(key, ref, "gone", None, f"{repo_id} no longer exists on the Hugging Face hub",
                       f"use {replacement} (or a local copy: {source.local})")
    local = Path(ref).expanduser()
    if not repo_like or local.exists():
        if not local.exists():
            return Located(key, ref, "missing", None, f"local path {local} does not exist",
                           f"fix the path, or use the hub id {source.default}")
        if local.is_dir() and source.filename is None:
            missing = _missing_files(local, source.files)
            if missing:
                return Located(key, ref, "incomplete", local, f"{local} lacks {', '.join(missing)}",
                               f"point at {source.local}")
        return Located(key, ref, "local", local, f"local {'directory' if local.is_dir() else 'file'} {local}")
    root = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    size = f"{source.download_bytes / GB:.2f} GB"
    download_fix = (f"run once online, or `{download_command(key, repo_id, filename)}` ({size}); "
                    f"or a local copy: {source.local}")
    if filename is not None:
        path = cached_file(repo_id, filename, cache_dir=root)
        if path is None:
            return Located(key, ref, "missing", None, f"{repo_id}/{filename} not in the cache {root}", download_fix)
        return Located(key, ref, "cached", path, f"in cache: {path}")
    snapshot = snapshot_dir(repo_id, cache_dir=root)
    if snapshot is None:
        return Located(key, ref, "missing", None, f"{repo_id} not in the cache {root}", download_fix)
    missing = _missing_files(snapshot, source.files)
    if missing:
        return Located(key, ref, "incomplete", snapshot, f"cached {repo_id} lacks {', '.join(missing)}",
                       download_fix)
    return Located(key, ref, "cached", snapshot, f"in cache: {snapshot}")


def download_command(key: str, repo_id: Optional[str] = None, filename: Optional[str] = None) -> str:
    """The shell command that fills the cache with exactly what model `key` needs (`hf` or `huggingface-cli`)."""
    source = SOURCES[key]
    repo_id = repo_id or source.default
    try:
        from importlib.metadata import version

        new_cli = int(version("huggingface_hub").split(".")[0]) >= 1
    except Exception:  # noqa: BLE001 - not installed: name the current CLI
        new_cli = True
    cli = "hf download" if new_cli else "huggingface-cli download"
    if filename or source.filename:
        return f"{cli} {repo_id} {filename or source.filename}"
    patterns = " ".join(f'"{p}"' for p in source.include)
    return f"{cli} {repo_id} --include {patterns}"
