"""Read the Hugging Face hub cache on disk, without huggingface_hub and without the network.

    snapshot = snapshot_dir("facebook/dinov2-giant")   # <cache>/models--facebook--dinov2-giant/snapshots/<commit>
    path = cached_file("MVDream/MVDream", "sd-v2.1-base-4view.pt")   # None when not downloaded (completely)

The layout is `models--org--name/refs/<rev>` + `snapshots/<commit>/<file>` (symlinks into `blobs/`); the cache folder
honours HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME / XDG_CACHE_HOME at call time.
"""
import os
from pathlib import Path
from typing import Optional


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time (no huggingface_hub needed).

    Returns:
        HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
        else ~/.cache/huggingface/hub.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def snapshot_dir(repo_id: str, revision: str = "main", cache_dir: Optional[Path] = None) -> Optional[Path]:
    """The cached snapshot folder of `repo_id` at `revision` (a branch/tag in refs/ or a commit hash), or None.

    Args:
        repo_id: "org/name".
        revision: branch or tag name (resolved through `refs/<revision>`) or a full commit hash.
        cache_dir: hub cache folder; default `hub_cache_dir()`.
    """
    root = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    ref_file = repo_dir / "refs" / revision
    commit = ref_file.read_text().strip() if ref_file.is_file() else revision
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def cached_file(repo_id: str, filename: str, revision: str = "main", cache_dir: Optional[Path] = None
                ) -> Optional[Path]:
    """Path of `filename` from `repo_id` in the local hub cache, or None. Never opens a network connection."""
    snapshot = snapshot_dir(repo_id, revision, cache_dir)
    if snapshot is None:
        return None
    path = snapshot / filename
    # snapshot entries are symlinks into blobs/; a dangling link (interrupted download) is not a hit
    return path if path.is_file() else None
