"""Fault injection for stage 3: kill chunked registration at N points, rerun, compare with an uninterrupted run.

    python tests/fault_injection/registration_faults.py --kills 10 --work /tmp/faults        # one JSON line per trial
    python tests/fault_injection/registration_faults.py --kills 3 --modes maps,pictures      # only those points

Every trial registers the same small synthetic collection (4 photos, chunks of 1, CPU, rgb features, small grid)
into a fresh folder in a child process, kills that child with SIGKILL at one point, reruns the same command until it
finishes, and compares the folder with an uninterrupted run's, file by file, byte for byte (only the per-commit
`version` files chunk.json / merged.json are left out), and checks that no staging folder or temporary file is
left. Kill points (`--modes`, cycled over the trials):
  time       after a random delay within the uninterrupted run's duration (anywhere: search, refinement, writes)
  maps       inside the atomic writer, while a map (maps/*.npz) is written: its temporary file is complete, not
             yet renamed
  pictures   the same while a picture (*.png) is written
  bank       the same while the candidate bank is written
  merge      the same while the merge writes poses.json
  publish    between a chunk's commit (folder rename) and the publication of its files into the run folder
Exit status 0 when every trial matched; the last line is a summary.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

SMALL = {"grid": {"n_azimuth": 8, "n_elevation": 6}, "search": {"render_size": 48, "render_samples": 16},
         "refine": {"steps": 20}, "mapping": {"steps": 10}}
KW = dict(preset="fast", features="rgb", device="cpu", seed=0, progress=False, overrides=SMALL)
MODES = ("time", "maps", "pictures", "bank", "merge", "publish")
# files whose content is a fresh version id per commit (everything else must be byte-identical)
VERSION_FILES = ("chunk.json", "merged.json")


# ---- the child: a chunked registration, optionally killing itself at a chosen write ------------------------------
def _arm(fault: str, out: Path) -> None:
    """Make this process SIGKILL itself at the chosen point (the `nth` matching event, 1-based)."""
    import congeal.common.atomic as atomic
    import congeal.run.chunked as chunked

    kind, _, nth = fault.partition(":")
    count = {"n": 0, "nth": int(nth or 1)}

    def hit() -> None:
        count["n"] += 1
        if count["n"] == count["nth"]:
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "publish":
        real_publish_chunk = chunked.publish_chunk

        def publish_chunk(out_dir, index):
            hit()
            return real_publish_chunk(out_dir, index)

        chunked.publish_chunk = publish_chunk
        return
    match = {"maps": lambda p: p.parent.name == "maps" and p.suffix == ".npz",
             "pictures": lambda p: p.suffix == ".png",
             "bank": lambda p: p.name.startswith("candidates-"),
             "merge": lambda p: p.name == "poses.json" and p.parent.resolve() == out.resolve()}[kind]
    real_commit = atomic._commit

    def commit(tmp: Path, path: Path) -> None:
        if match(path):
            hit()  # the temporary file is whole, the destination not yet replaced
        real_commit(tmp, path)

    atomic._commit = commit


def child(collection: Path, out: Path, fault: Optional[str]) -> None:
    from congeal.run.chunked import register_in_chunks

    if fault:
        _arm(fault, out)
    register_in_chunks(collection / "canonical.safetensors", collection / "images", out, chunk_size=1, **KW)


# ---- the parent -----------------------------------------------------------------------------------------------
def _command(collection: Path, out: Path, fault: Optional[str] = None) -> List[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--collection", str(collection), "--out", str(out)]
    return cmd + (["--fault", fault] if fault else [])


def _env() -> Dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _run(cmd: List[str], timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def files(folder: Path) -> Dict[str, bytes]:
    """{relative path: bytes} of every file under `folder` except the version files."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in VERSION_FILES}


def leftovers(folder: Path) -> List[str]:
    """Staging folders and temporary files under `folder` (what a kill leaves until the next run cleans up)."""
    from congeal.common.atomic import is_temporary

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if is_temporary(p) or (p.is_dir() and p.name.startswith(".chunk-")))


def differences(a: Path, b: Path) -> List[str]:
    fa, fb = files(a), files(b)
    missing = sorted(set(fa) ^ set(fb))
    return missing + sorted(k for k in set(fa) & set(fb) if fa[k] != fb[k])


def make_collection(work: Path, n_images: int = 4, seed: int = 3) -> Path:
    from congeal.synthetic.generator import make_synthetic_collection

    folder = work / "collection"
    if not (folder / "canonical.safetensors").is_file():
        make_synthetic_collection(folder, mode="same", n_images=n_images, seed=seed)
    return folder


def reference(work: Path, collection: Path) -> Dict[str, Any]:
    """The uninterrupted run (made once per work folder) and how long it took."""
    out = work / "reference"
    meta = work / "reference.json"
    if meta.is_file() and (out / "chunks" / "merged.json").is_file():
        return json.loads(meta.read_text())
    started = time.perf_counter()
    done = _run(_command(collection, out))
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    info = {"out": str(out), "seconds": time.perf_counter() - started}
    meta.write_text(json.dumps(info))
    return info


def trial(work: Path, collection: Path, ref: Dict[str, Any], index: int, mode: str,
          rng: random.Random) -> Dict[str, Any]:
    """One kill + rerun; returns its record (`equal` and `clean` must both be true)."""
    out = work / f"trial-{index:03d}-{mode}"
    record: Dict[str, Any] = {"trial": index, "mode": mode}
    if mode == "time":
        delay = rng.uniform(0.05, 0.95) * float(ref["seconds"])
        proc = subprocess.Popen(_command(collection, out), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        record["killed_after_s"] = round(delay, 2)
        record["exit"] = proc.wait()
    else:
        nth = {"maps": rng.randint(1, 4), "pictures": rng.randint(1, 6), "bank": 1, "merge": 1,
               "publish": rng.randint(1, 4)}[mode]
        record["nth"] = nth
        record["exit"] = _run(_command(collection, out, f"{mode}:{nth}")).returncode
    record["killed"] = record["exit"] == -signal.SIGKILL
    from congeal.run.chunked import done_chunks

    record["chunks_done_at_kill"] = len(done_chunks(out))
    record["left_by_kill"] = leftovers(out)
    done = _run(_command(collection, out))
    record["rerun_exit"] = done.returncode
    if done.returncode != 0:
        record["rerun_error"] = (done.stderr or done.stdout)[-2000:]
    record["differences"] = differences(Path(ref["out"]), out)[:10]
    record["leftovers"] = leftovers(out)
    record["equal"] = done.returncode == 0 and not record["differences"]
    record["clean"] = not record["leftovers"]
    return record


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    kid = sub.add_parser("child")
    kid.add_argument("--collection", type=Path, required=True)
    kid.add_argument("--out", type=Path, required=True)
    kid.add_argument("--fault")
    parser.add_argument("--kills", type=int, default=6, help="trials (one kill + rerun each)")
    parser.add_argument("--modes", default=",".join(MODES), help="kill points, cycled: " + ", ".join(MODES))
    parser.add_argument("--work", type=Path, default=Path("fault-injection"), help="work folder (kept)")
    parser.add_argument("--seed", type=int, default=0, help="random kill times and write counts")
    args = parser.parse_args(argv)
    if args.command == "child":
        child(args.collection, args.out, args.fault)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    collection = make_collection(args.work)
    ref = reference(args.work, collection)
    records = []
    for index in range(args.kills):
        record = trial(args.work, collection, ref, index, modes[index % len(modes)], rng)
        records.append(record)
        print(json.dumps(record), flush=True)
    ok = all(r["equal"] and r["clean"] for r in records)
    print(json.dumps({"summary": True, "trials": len(records), "killed": sum(r["killed"] for r in records),
                      "equal": sum(r["equal"] for r in records), "clean": sum(r["clean"] for r in records),
                      "reference_seconds": round(float(ref["seconds"]), 1), "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
