"""Registration in chunks: resumable after a kill, shardable across processes, merged into one run folder.

    register_in_chunks("canonical.safetensors", "photos/", "out/run", chunk_size=8)            # one process
    register_in_chunks(..., rank=r, world_size=w, merge=False); then on rank 0: merge_chunks("out/run")

Each chunk of photos is registered with `congeal.run.pipeline.register_collection` into a staging folder that is
renamed to `OUT/chunks/chunk-XXXX` only when complete, so a chunk folder is either absent or whole. A relaunch
(after `kill -9`, or with more or fewer processes) registers only the chunks that are missing. Search, refinement
and warps are per-photo independent (batched, but no photo's result depends on which others share the batch); the
joint choice of hypotheses (`registration.consensus`) and the polish's edge level (`refine.polish_edge_levels`) are
made by each chunk's photos, so a chunked run equals a one-shot run where neither changes with the chunk, and
otherwise depends on the chunk size. A resumed or sharded run equals an uninterrupted one with the same chunk size
bit for bit on CPU.

Who does what:
* **chunks**: chunk c belongs to rank `c % world_size`, or to the ranks in turn over the chunks still pending
  (`share_pending`: what a relaunched DDP run does after a barrier, so no rank is left with the others' leftovers).
* **feature extractor**: built once per process (`process_extractor`) and handed to every chunk: DINOv2-G is 4.5 GB.
* **candidate bank** (renders + features of the pose grid): shared in `OUT/cache/`. A chunk links the shared bank in
  when it is there; otherwise it builds one and the first process to finish publishes it (a hard link created only
  if absent, else an atomic copy), so the shared file is always whole and never written over.
* **merge** is versioned: each committed chunk carries a fresh `version` in its `chunk.json`, and its files are
  published into the run folder (maps/, state/, pictures/chunks/, canonical) by the process that registered it, right
  after the commit (a hard link renamed over the destination). `merge_chunks` republishes every chunk whose version
  differs from the one recorded at the last merge (`chunks/merged.json`) — a redone chunk replaces the old files —
  then writes poses.json, transforms.json, register.json and the (bounded) map pictures: its cost is a few JSON
  files per chunk, never a copy of the collection.
"""
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from congeal.common.atomic import publish, remove_temporaries, same_file, write_json
from congeal.common.device import resolve_device
from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.features.extractors import FeatureExtractor
from congeal.registration.registration_config import RegistrationConfig, build_configured_extractor, make_config
from congeal.run.folder import RunFolder

CHUNKS_DIR = "chunks"
MANIFEST = "chunks.json"
MANIFEST_FORMAT = "congeal-chunks-v1"
CHUNK_FILE = "chunk.json"
CHUNK_FORMAT = "congeal-chunk-v1"
MERGED = "merged.json"
MERGED_FORMAT = "congeal-chunks-merged-v1"


@dataclass
class ChunkPlan:
    """Which photos go in which chunk (fixed for a run: stored in OUT/chunks.json)."""

    names: List[str]
    chunk_size: int

    @property
    def chunks(self) -> List[List[str]]:
        return [self.names[i:i + self.chunk_size] for i in range(0, len(self.names), self.chunk_size)]

    def chunk_dir(self, out_dir: Path, index: int) -> Path:
        return out_dir / CHUNKS_DIR / f"chunk-{index:04d}"


def _plan(out_dir: Path, names: List[str], chunk_size: int) -> ChunkPlan:
    """The run's chunk plan; a relaunch must see the same photos, else the folder belongs to another run."""
    path = out_dir / MANIFEST
    if path.is_file():
        doc = _read_manifest(path)
        if doc["names"] != names or doc["chunk_size"] != chunk_size:
            raise InputError(path, "this run folder was started with other photos or another chunk size",
                             "resume with the same photos and chunk size, or choose a new output folder")
        return ChunkPlan(names, chunk_size)
    if chunk_size < 1:
        raise InputError(None, f"chunk size must be >= 1, got {chunk_size}", "pass a positive chunk size")
    write_json(path, {"format": MANIFEST_FORMAT, "names": names, "chunk_size": chunk_size})
    return ChunkPlan(names, chunk_size)


def _read_plan(out_dir: Path) -> ChunkPlan:
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise InputError(out_dir, "has no chunks.json", "run `register_in_chunks` into this folder first")
    doc = _read_manifest(manifest)
    return ChunkPlan(doc["names"], doc["chunk_size"])


def _read_manifest(path: Path) -> Dict[str, Any]:
    """chunks.json, checked: `names` a list of strings, `chunk_size` a positive integer (InputError otherwise)."""
    fix = "remove the chunks.json (and chunks/) of this folder and relaunch, or choose a new output folder"
    doc = read_json(path, fix, expect=dict)
    names, size = doc.get("names"), doc.get("chunk_size")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise InputError(path, "has no list of photo names (\"names\")", fix)
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise InputError(path, f"has chunk_size {size!r}, not a positive integer", fix)
    return {"names": list(names), "chunk_size": size}


def done_chunks(out_dir: PathLike) -> List[int]:
    """Indices of the chunks whose folders are complete."""
    folder = Path(out_dir) / CHUNKS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("chunk-[0-9][0-9][0-9][0-9]") if p.is_dir())


def share_pending(out_dir: PathLike, n_chunks: int, rank: int, world_size: int) -> List[int]:
    """This rank's share of the chunks still pending: every `world_size`-th of them, starting at `rank`.

    All ranks must call it on the same state of the folder (e.g. before a barrier, with nobody registering), so the
    shares are disjoint and cover every pending chunk; then a relaunch splits the leftovers evenly whichever ranks
    left them.
    """
    finished = set(done_chunks(out_dir))
    return [i for i in range(n_chunks) if i not in finished][rank::world_size]


# ---- one feature extractor per process -------------------------------------------------------------------------
_EXTRACTOR: Dict[str, Tuple[Tuple[str, str], FeatureExtractor]] = {}


def process_extractor(cfg: RegistrationConfig, device: torch.device) -> FeatureExtractor:
    """The feature extractor `cfg` names on `device`, built once per process and reused by every chunk.

    Only the latest one is kept (a process that switches models frees the previous one).
    """
    key = (json.dumps(_features_settings(cfg), sort_keys=True, default=str), str(device))
    held = _EXTRACTOR.get("latest")
    if held is not None and held[0] == key:
        return held[1]
    _EXTRACTOR.pop("latest", None)
    extractor = build_configured_extractor(cfg, device)
    _EXTRACTOR["latest"] = (key, extractor)
    return extractor


def release_process_extractor() -> None:
    """Drop the process's extractor (a notebook that is done registering gets its GPU memory back)."""
    _EXTRACTOR.clear()


def _features_settings(cfg: RegistrationConfig) -> Dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg.features)


# ---- publishing a chunk into the run folder --------------------------------------------------------------------
def _chunk_files(out_dir: Path, index: int) -> List[Tuple[Path, Path]]:
    """(file in the chunk folder, where it goes in the run folder) for everything a chunk contributes."""
    chunk = RunFolder(ChunkPlan([], 1).chunk_dir(out_dir, index))
    run = RunFolder(out_dir)
    pairs = [(p, run.maps_dir / p.name) for p in sorted(chunk.maps_dir.glob("*.npz"))]
    pairs += [(p, run.state_dir / p.name) for p in sorted(chunk.state_dir.glob("*.safetensors"))]
    pairs += [(p, _chunk_picture(run, index, p.name)) for p in sorted(chunk.pictures_dir.glob("*.png"))]
    if chunk.canonical.is_file():
        pairs.append((chunk.canonical, run.canonical))
    return pairs


def _chunk_picture(run: RunFolder, index: int, name: str) -> Path:
    return run.pictures_dir / "chunks" / f"chunk-{index:04d}-{name}"


def chunk_version(out_dir: PathLike, index: int) -> Optional[str]:
    """The version a committed chunk was given (None for a chunk folder written before versions existed)."""
    path = ChunkPlan([], 1).chunk_dir(Path(out_dir), index) / CHUNK_FILE
    if not path.is_file():
        return None
    try:
        doc = read_json(path, "relaunch to register this chunk again", expect=dict)
    except InputError:  # unreadable: treated like a chunk without a version (it is re-published)
        return None
    return str(doc["version"]) if isinstance(doc.get("version"), (str, int)) else None


def publish_chunk(out_dir: PathLike, index: int) -> int:
    """Make the run folder's maps/, state/, chunk pictures and canonical those of committed chunk `index`.

    Each destination is replaced atomically by a hard link of the chunk's file (a copy where links are not
    available) unless it already is that file; a file of an earlier version of the chunk that the new one lacks is
    removed. Returns the number of files replaced.
    """
    out_dir = Path(out_dir)
    pairs = _chunk_files(out_dir, index)
    changed = 0
    for src, dst in pairs:
        if not same_file(src, dst):
            publish(src, dst)
            changed += 1
    wanted = {dst.name for _src, dst in pairs}
    for stale in RunFolder(out_dir).pictures_dir.glob(f"chunks/chunk-{index:04d}-*.png"):
        if stale.name not in wanted:
            stale.unlink()
    return changed


class ChunkedRegistration:
    """One process's share of a chunked run: which chunks are pending, and registering them one at a time.

    Args:
        canonical: canonical.safetensors path or `Canonical`.
        images: photo folder or `ImageCollection` (loaded once at the registration config's working size).
        out_dir: the run folder.
        chunk_size: photos per chunk (the unit of resumption).
        rank, world_size: this process's shard (chunk c belongs to rank c % world_size).
        chunks: the chunk indices of this process instead (e.g. `share_pending`'s; `rank`/`world_size` then only
            name the staging folders).
        **register_kwargs: passed to `register_collection` (preset, features, device, seed, overrides, ...); an
            `extractor` given here is used as is, else the process's one (`process_extractor`).
    """

    def __init__(self, canonical: Any, images: Any, out_dir: PathLike, chunk_size: int = 8, rank: int = 0,
                 world_size: int = 1, chunks: Optional[Sequence[int]] = None, **register_kwargs: Any):
        from congeal.run.pipeline import _load_canonical, load_images

        self.rank, self.world_size = rank, world_size
        self.register_kwargs = register_kwargs
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the same defaults as `register_collection` (which registers each chunk)
        self.cfg = make_config(register_kwargs.get("preset", "paper"), features=register_kwargs.get("features"),
                               dinov2=register_kwargs.get("dinov2"), mask=register_kwargs.get("mask"),
                               overrides=register_kwargs.get("overrides"))
        self.device = resolve_device(register_kwargs.get("device", "auto"))
        self.canonical = _load_canonical(canonical)  # once, not per chunk
        self.collection = load_images(images, self.cfg)
        self.plan = _plan(self.out_dir, list(self.collection.names), chunk_size)
        self.assigned = None if chunks is None else [int(c) for c in chunks]

    def extractor(self) -> FeatureExtractor:
        """The extractor every chunk of this process uses (built on first use, once per process)."""
        given = self.register_kwargs.get("extractor")
        return given if given is not None else process_extractor(self.cfg, self.device)

    def mine(self) -> List[int]:
        """All chunk indices of this rank."""
        if self.assigned is not None:
            return list(self.assigned)
        return [i for i in range(len(self.plan.chunks)) if i % self.world_size == self.rank]

    def pending(self) -> List[int]:
        """This rank's chunks that are not committed yet."""
        finished = set(done_chunks(self.out_dir))
        return [i for i in self.mine() if i not in finished]

    def run_chunk(self, index: int) -> Path:
        """Register chunk `index` into a staging folder, commit it by renaming, publish its files; returns the chunk
        folder."""
        import os

        from congeal.run.pipeline import register_collection

        final = self.plan.chunk_dir(self.out_dir, index)
        if final.is_dir():
            return final
        staging = final.with_name(f".{final.name}.rank{self.rank}.tmp")
        shutil.rmtree(staging, ignore_errors=True)  # the leftovers of a killed attempt
        shared, staged = RunFolder(self.out_dir), RunFolder(staging)
        names = self.plan.chunks[index]
        try:
            for bank in shared.candidate_banks():  # read the shared bank (a link: no copy of GBs)
                publish(bank, staged.cache_dir / bank.name)
            kwargs = dict(self.register_kwargs, extractor=self.extractor())
            register_collection(self.canonical, self.collection.subset(names), staging, **kwargs)
            for bank in staged.candidate_banks():  # first finisher wins; never written over
                publish(bank, shared.cache_dir / bank.name, only_if_absent=True)
            write_json(staging / CHUNK_FILE, {"format": CHUNK_FORMAT, "index": index, "names": names,
                                              "version": uuid.uuid4().hex})
        except BaseException:
            # a failure (a full disk, a bad photo, Ctrl-C) leaves no half chunk behind; a kill leaves the staging
            # folder, which the next attempt or the merge removes
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.replace(staging, final)  # the commit point: a chunk folder is whole or absent
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another process committed this chunk first
        publish_chunk(self.out_dir, index)
        return final

    def run(self, on_chunk: Optional[Callable[[int, Path], None]] = None) -> List[int]:
        """Register every pending chunk of this rank; returns their indices."""
        registered = []
        for index in self.pending():
            folder = self.run_chunk(index)
            registered.append(index)
            if on_chunk is not None:
                on_chunk(index, folder)
        return registered


def register_in_chunks(canonical: Any, images: Any, out_dir: PathLike, chunk_size: int = 8, rank: int = 0,
                       world_size: int = 1, merge: bool = True,
                       on_chunk: Optional[Callable[[int, Path], None]] = None, **register_kwargs: Any) -> List[int]:
    """Register this rank's missing chunks, then (optionally) merge all chunks into `out_dir`.

    Args:
        canonical, images, out_dir, chunk_size, rank, world_size, **register_kwargs: see `ChunkedRegistration`.
        merge: merge every chunk into `out_dir` at the end (set False on ranks > 0, merge on rank 0 after a barrier).
        on_chunk: called with (chunk index, chunk folder) after each chunk is committed (progress, tests).
    Returns:
        the chunk indices this call registered (empty when everything was already done).
    """
    runner = ChunkedRegistration(canonical, images, out_dir, chunk_size, rank, world_size, **register_kwargs)
    registered = runner.run(on_chunk)
    if merge:
        merge_chunks(out_dir)
    return registered


def _clean_leftovers(out_dir: Path) -> None:
    """What killed processes left: staging folders of chunks and temporary files of the atomic writer."""
    for staging in (out_dir / CHUNKS_DIR).glob(".chunk-*.tmp"):
        shutil.rmtree(staging, ignore_errors=True)
    remove_temporaries(out_dir)


def merge_chunks(out_dir: PathLike, pictures: bool = True) -> Dict[str, Any]:
    """Merge complete chunks into one run folder (poses.json, transforms.json, register.json, maps/, state/).

    Call it when no process registers into `out_dir` any more (after the ranks' barrier): it also removes what
    killed processes left behind (staging folders, temporary files).

    Args:
        out_dir: the run folder holding chunks.json and chunks/.
        pictures: also write the map pictures of the merged run (overlays stay per chunk under pictures/chunks/).
    Returns:
        the merged register.json document.
    Raises:
        InputError: a chunk is missing (some rank has not finished) — nothing is written then.
    """
    from congeal.run.map_pictures import write_map_pictures
    from congeal.run.outputs import read_poses_document, write_poses, write_transforms

    out_dir = Path(out_dir)
    run = RunFolder(out_dir)
    plan = _read_plan(out_dir)
    missing = [i for i in range(len(plan.chunks)) if not plan.chunk_dir(out_dir, i).is_dir()]
    if missing:
        raise InputError(out_dir, f"chunks {missing} are not finished", "relaunch to register the missing chunks")
    _clean_leftovers(out_dir)
    merged_path = out_dir / CHUNKS_DIR / MERGED
    try:
        merged_doc = read_json(merged_path, "it is rewritten by this merge", expect=dict) \
            if merged_path.is_file() else {}
    except InputError:  # unreadable: every chunk counts as not merged yet
        merged_doc = {}
    merged_versions = merged_doc.get("versions") if isinstance(merged_doc.get("versions"), dict) else {}
    versions: Dict[str, Optional[str]] = {}
    records: Dict[str, Dict[str, Any]] = {}
    entries: Dict[str, Dict[str, Any]] = {}
    merged: Dict[str, Any] = {}
    working_size = None
    for index in range(len(plan.chunks)):
        key = f"{index:04d}"
        versions[key] = chunk_version(out_dir, index)
        if versions[key] is None or merged_versions.get(key) != versions[key]:
            publish_chunk(out_dir, index)  # new or redone since the last merge (a no-op where already published)
        chunk = RunFolder(plan.chunk_dir(out_dir, index))
        register = chunk.read_register()
        if not merged:
            merged = {k: v for k, v in register.items() if k != "images"}
        records.update(chunk.read_poses())
        working_size = read_poses_document(chunk.poses).get("working_size", working_size)
        entries.update({e["name"]: e for e in register["images"]})
    names = plan.names
    ordered = [records[n] for n in names]
    write_poses(run.poses, ordered, extra={"working_size": working_size})
    write_transforms(run.transforms, ordered, [Path(entries[n]["path"]) for n in names])
    merged["images"] = [entries[n] for n in names]
    merged["chunks"] = {"chunk_size": plan.chunk_size, "count": len(plan.chunks)}
    write_json(run.register, merged)
    if pictures:
        write_map_pictures(out_dir)
    # last: a merge killed before this line is redone in full by the next one
    write_json(merged_path, {"format": MERGED_FORMAT, "versions": versions})
    return merged
