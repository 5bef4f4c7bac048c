"""Registration in chunks: resumable after a kill, shardable across processes, merged into one run folder.

    register_in_chunks("canonical.safetensors", "photos/", "out/run", chunk_size=8)            # one process
    register_in_chunks(..., rank=r, world_size=w, merge=False); then on rank 0: merge_chunks("out/run")

Each chunk of photos is registered with `congeal.run.pipeline.register_collection` into a temporary folder that
is renamed to `OUT/chunks/chunk-XXXX` only when complete, so a chunk folder is either absent or whole. A relaunch
(after `kill -9`, or with more processes) registers only the chunks that are missing. Every stage of the engine is
per-photo independent (search scores, refinement and warps are batched but no photo's result depends on which
others share the batch), so chunked, sharded and one-shot runs give the same numbers up to float round-off.

Chunk `c` belongs to rank `c % world_size`. The candidate bank (renders + features of the pose grid) is built once
into `OUT/cache/` and linked into every chunk, so chunks do not re-render the grid.
"""
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from congeal.common.atomic import write_json
from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.folder import RunFolder

CHUNKS_DIR = "chunks"
MANIFEST = "chunks.json"
MANIFEST_FORMAT = "congeal-chunks-v1"


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
        doc = json.loads(path.read_text())
        if doc.get("names") != names or int(doc.get("chunk_size", -1)) != chunk_size:
            raise InputError(path, "this run folder was started with other photos or another chunk size",
                             "resume with the same photos and chunk size, or choose a new output folder")
        return ChunkPlan(names, chunk_size)
    if chunk_size < 1:
        raise InputError(None, f"chunk size must be >= 1, got {chunk_size}", "pass a positive chunk size")
    write_json(path, {"format": MANIFEST_FORMAT, "names": names, "chunk_size": chunk_size})
    return ChunkPlan(names, chunk_size)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def done_chunks(out_dir: PathLike) -> List[int]:
    """Indices of the chunks whose folders are complete."""
    folder = Path(out_dir) / CHUNKS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("chunk-[0-9][0-9][0-9][0-9]") if p.is_dir())


class ChunkedRegistration:
    """One process's share of a chunked run: which chunks are pending, and registering them one at a time.

    Args:
        canonical: canonical.safetensors path or `Canonical`.
        images: photo folder or `ImageCollection` (loaded once at the registration config's working size).
        out_dir: the run folder.
        chunk_size: photos per chunk (the unit of resumption).
        rank, world_size: this process's shard (chunk c belongs to rank c % world_size).
        **register_kwargs: passed to `register_collection` (preset, features, device, seed, overrides, ...).
    """

    def __init__(self, canonical: Any, images: Any, out_dir: PathLike, chunk_size: int = 8, rank: int = 0,
                 world_size: int = 1, **register_kwargs: Any):
        from congeal.registration.config import make_config
        from congeal.run.pipeline import load_images

        self.canonical, self.rank, self.world_size = canonical, rank, world_size
        self.register_kwargs = register_kwargs
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the same defaults as `register_collection` (which registers each chunk)
        cfg = make_config(register_kwargs.get("preset", "paper"), features=register_kwargs.get("features"),
                          dinov2=register_kwargs.get("dinov2"), mask=register_kwargs.get("mask"),
                          overrides=register_kwargs.get("overrides"))
        self.collection = load_images(images, cfg)
        self.plan = _plan(self.out_dir, list(self.collection.names), chunk_size)

    def mine(self) -> List[int]:
        """All chunk indices of this rank."""
        return [i for i in range(len(self.plan.chunks)) if i % self.world_size == self.rank]

    def pending(self) -> List[int]:
        """This rank's chunks that are not committed yet."""
        finished = set(done_chunks(self.out_dir))
        return [i for i in self.mine() if i not in finished]

    def run_chunk(self, index: int) -> Path:
        """Register chunk `index` into a staging folder and commit it by renaming; returns the chunk folder."""
        from congeal.run.pipeline import register_collection

        final = self.plan.chunk_dir(self.out_dir, index)
        if final.is_dir():
            return final
        staging = final.with_name(f".{final.name}.rank{self.rank}.tmp")
        shutil.rmtree(staging, ignore_errors=True)  # the leftovers of a killed attempt
        shared, staged = RunFolder(self.out_dir), RunFolder(staging)
        for bank in shared.candidate_banks():
            _link_or_copy(bank, staged.cache_dir / bank.name)
        names = self.plan.chunks[index]
        register_collection(self.canonical, self.collection.subset(names), staging, **self.register_kwargs)
        for bank in staged.candidate_banks():
            _link_or_copy(bank, shared.cache_dir / bank.name)
        os.replace(staging, final)  # the commit point: a chunk folder is whole or absent
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


def merge_chunks(out_dir: PathLike, pictures: bool = True) -> Dict[str, Any]:
    """Merge complete chunks into one run folder (poses.json, transforms.json, register.json, maps/, state/).

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
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise InputError(out_dir, "has no chunks.json", "run `register_in_chunks` into this folder first")
    doc = json.loads(manifest.read_text())
    plan = ChunkPlan(list(doc["names"]), int(doc["chunk_size"]))
    missing = [i for i in range(len(plan.chunks)) if not plan.chunk_dir(out_dir, i).is_dir()]
    if missing:
        raise InputError(out_dir, f"chunks {missing} are not finished", "relaunch to register the missing chunks")
    records: Dict[str, Dict[str, Any]] = {}
    entries: Dict[str, Dict[str, Any]] = {}
    merged: Dict[str, Any] = {}
    working_size = None
    for index in range(len(plan.chunks)):
        chunk = RunFolder(plan.chunk_dir(out_dir, index))
        register = chunk.read_register()
        if not merged:
            merged = {k: v for k, v in register.items() if k != "images"}
        records.update(chunk.read_poses())
        working_size = read_poses_document(chunk.poses).get("working_size", working_size)
        entries.update({e["name"]: e for e in register["images"]})
        for source, target in ((chunk.maps_dir, run.maps_dir), (chunk.state_dir, run.state_dir)):
            for path in sorted(source.glob("*")):
                _link_or_copy(path, target / path.name)
        for path in sorted(chunk.pictures_dir.glob("*.png")):
            _link_or_copy(path, run.pictures_dir / "chunks" / f"chunk-{index:04d}-{path.name}")
        _link_or_copy(chunk.canonical, run.canonical)
    names = plan.names
    ordered = [records[n] for n in names]
    write_poses(run.poses, ordered, extra={"working_size": working_size})
    write_transforms(run.transforms, ordered, [Path(entries[n]["path"]) for n in names])
    merged["images"] = [entries[n] for n in names]
    merged["chunks"] = {"chunk_size": plan.chunk_size, "count": len(plan.chunks)}
    write_json(run.register, merged)
    if pictures:
        write_map_pictures(out_dir)
    return merged
