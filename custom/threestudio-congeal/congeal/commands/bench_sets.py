"""`congeal bench-sets`: registration benchmark sets the project was not tuned on, and their harness.

    congeal bench-sets list
    congeal bench-sets write bench-sets/ --set chair-cross30-centred --seed 2
    congeal bench-sets run bench-sets/ --seeds held-out --preset fast            # every set, one JSON line each
    congeal bench-sets run bench-sets/ --sets creature-same-offcentre43,spot-same-centred --seeds tuning
    congeal bench-sets table bench-sets/results-fast-rgb.jsonl                   # re-summarise earlier runs
    congeal bench-sets calibrate tuning/results-fast-rgb.jsonl                   # fit the trust model (tuning seeds)
    congeal bench-sets flags held-out/results-fast-rgb.jsonl                     # how the statuses separate, per set

`run` writes (or re-uses) each collection under OUT/collections/, registers it under OUT/runs/<preset>/, prints one
JSON line per (set, seed) as it finishes (`"kind": "run"`), then one JSON line per set (`"kind": "set"`, pooled over
the seeds) and a markdown table; the same lines go to OUT/results-<preset>-<features>.jsonl and the table to
OUT/results-<preset>-<features>.md. Tune on the tuning seeds, report on the held-out ones (see
congeal.synthetic.benchmark_sets). The spot sets need spot's mesh files (--mesh-dir or CONGEAL_SPOT_DIR); without
them they are skipped and the reason printed.
"""
import argparse
import io
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from congeal.common.atomic import append_line, write_text
from congeal.common.errors import InputError

NAME = "bench-sets"
HELP = "write registration benchmark sets (families × framings × deformation) and score registration on them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the sets, their targets and the seeds")
    write = sub.add_parser("write", help="write one set's collection for one seed")
    write.add_argument("out", type=Path, metavar="OUT", help="root folder (the collection goes to OUT/<set>/seed<k>)")
    write.add_argument("--set", dest="set_name", required=True, help="set name (see `list`)")
    write.add_argument("--seed", type=int, default=0, help="the set's seed (default: 0)")
    write.add_argument("--mesh-dir", type=Path, default=None, help="spot's folder (spot sets)")
    run = sub.add_parser("run", help="register and score sets; JSON lines and a markdown table")
    run.add_argument("out", type=Path, metavar="OUT", help="root folder for collections, runs and results")
    run.add_argument("--sets", default="all", help="comma-separated set names, or 'all' (default)")
    run.add_argument("--seeds", default="held-out",
                     help="'held-out' (default), 'tuning', or comma-separated integers")
    run.add_argument("--preset", default="fast", help="registration preset (default: fast)")
    run.add_argument("--features", default="rgb", help="feature extractor (default: rgb)")
    run.add_argument("--device", default="cpu", help="cpu / cuda / auto (default: cpu)")
    run.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                     help="registration config override (repeatable)")
    run.add_argument("--mesh-dir", type=Path, default=None, help="spot's folder (spot sets)")
    table = sub.add_parser("table", help="summarise the per-run JSON lines of earlier `run`s (a .jsonl file)")
    table.add_argument("results", type=Path, metavar="RESULTS", help="a results-<preset>-<features>.jsonl file")
    calibrate = sub.add_parser("calibrate", help="fit the per-photo trust model on runs of the tuning seeds")
    calibrate.add_argument("results", type=Path, metavar="RESULTS", help="a results-<preset>-<features>.jsonl file")
    calibrate.add_argument("--target-recall", type=float, default=0.95,
                           help="share of cameras > 30° off that must be flagged on these runs (default 0.95)")
    flags = sub.add_parser("flags", help="per set: wrong cameras flagged and right ones flagged, with a trust model")
    flags.add_argument("results", type=Path, metavar="RESULTS", help="a results-<preset>-<features>.jsonl file")
    flags.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="trust.* override of the model (repeatable), e.g. trust.ok_below=0.6")


def _seeds(text: str) -> List[int]:
    from congeal.synthetic.benchmark_sets import HELD_OUT_SEEDS, TUNING_SEEDS

    if text == "held-out":
        return list(HELD_OUT_SEEDS)
    if text == "tuning":
        return list(TUNING_SEEDS)
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(None, f"--seeds {text!r} is not 'held-out', 'tuning' or a list of integers",
                         "pass e.g. --seeds 2,3,4") from None


def _sets(text: str) -> Sequence:
    from congeal.synthetic.benchmark_sets import BENCHMARK_SETS, get_set

    if text == "all":
        return list(BENCHMARK_SETS)
    return [get_set(name.strip()) for name in text.split(",") if name.strip()]


def _latest_runs(results: Path) -> List[dict]:
    """The last record of every (set, seed, preset, features) of a results file: re-runs replace earlier ones."""
    if not results.is_file():
        raise InputError(results, "no such file", "pass the .jsonl written by `congeal bench-sets run`")
    latest = {}
    for number, line in enumerate(results.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:  # our own log: NaN is allowed in it (a set without wrong cameras has no recall)
            record = json.loads(line)
        except ValueError:
            raise InputError(results, f"line {number} is not JSON", "pass the .jsonl written by `congeal bench-sets run`"
                             ) from None
        if isinstance(record, dict) and record.get("kind") == "run" and all(
                k in record for k in ("set", "seed", "preset", "features")):
            latest[(record["set"], record["seed"], record["preset"], record["features"])] = record
    return list(latest.values())


def _trust(args: argparse.Namespace, records: List[dict], out: io.TextIOBase) -> int:
    """`calibrate`: fit and print the trust model; `flags`: the statuses' recall and false alarms per set."""
    from congeal.registration.registration_config import make_config
    from congeal.synthetic.trust_calibration import calibrate, flag_table, photos_of

    if args.action == "calibrate":
        fitted = calibrate(photos_of(records), target_recall=args.target_recall)
        cfg = fitted.config
        print(f"fitted on {fitted.n_photos} photos of {len(records)} runs ({fitted.n_wrong} > 30° off, "
              f"{fitted.n_right} < 10° off)", file=out)
        print(f"  --set trust.bias={cfg.bias} --set 'trust.weights=[{','.join(map(str, cfg.weights))}]' "
              f"--set trust.ok_below={cfg.ok_below} --set trust.failed_below={cfg.failed_below} "
              f"--set trust.verdict_flags={cfg.verdict_flags}", file=out)
        print(json.dumps({"kind": "trust", "all": flag_table(photos_of(records), cfg)}), file=out)
        return 0
    cfg = make_config("fast", overrides=args.override).trust
    by_set: dict = {}
    for record in records:
        by_set.setdefault(record["set"], []).append(record)
    print("| set | photos | > 30° off | flagged | < 10° off | flagged (false alarms) | worst unflagged ° |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for name, group in list(by_set.items()) + [("all", records)]:
        row = flag_table(photos_of(group), cfg)
        print(f"| {name} | {row['n_photos']} | {row['n_wrong']} | {row['wrong_flagged']} | {row['n_right']} "
              f"| {row['right_flagged']} ({100 * row['false_alarm_rate']:.1f} %) | {row['unflagged_max_deg']:.1f} |",
              file=out)
    return 0


def run(args: argparse.Namespace, out: Optional[io.TextIOBase] = None) -> int:
    out = sys.stdout if out is None else out
    from congeal.synthetic.benchmark_sets import BENCHMARK_SETS, HELD_OUT_SEEDS, TUNING_SEEDS, write_benchmark_set
    from congeal.synthetic.spot import spot_dir

    if args.action == "list":
        print(f"tuning seeds {list(TUNING_SEEDS)}, held-out seeds {list(HELD_OUT_SEEDS)}; 8 photos per set", file=out)
        for spec in BENCHMARK_SETS:
            targets = ", ".join(f"{metric} {cmp} {bound:g}" for metric, (cmp, bound) in spec.targets.items())
            print(f"  {spec.name:30s} {spec.describe():45s} [{spec.category}: {targets}]", file=out)
        return 0
    if args.action == "write":
        folder = write_benchmark_set(args.set_name, args.seed, args.out, mesh_dir=args.mesh_dir)
        print(f"wrote {folder}/ (set {args.set_name}, seed {args.seed})", file=out)
        return 0

    from congeal.synthetic.benchmark_runs import markdown_table, run_one, summarise

    if args.action in ("calibrate", "flags"):
        return _trust(args, _latest_runs(args.results), out)
    if args.action == "table":
        latest = {(r["set"], r["seed"], r["preset"], r["features"]): r for r in _latest_runs(args.results)}
        for summary in summarise(list(latest.values())):
            print(json.dumps({"kind": "set", **summary}), file=out)
        print(markdown_table(summarise(list(latest.values()))), file=out)
        return 0
    sets, seeds = _sets(args.sets), _seeds(args.seeds)
    if any(spec.family == "spot" for spec in sets) and spot_dir(args.mesh_dir) is None:
        skipped = [spec.name for spec in sets if spec.family == "spot"]
        print(f"skipping {', '.join(skipped)}: spot's mesh files are not in --mesh-dir or CONGEAL_SPOT_DIR, or "
              "neither is given (get spot.zip from alecjacobson/common-3d-test-models)", file=out)
        sets = [spec for spec in sets if spec.family != "spot"]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"results-{args.preset}-{args.features}"
    records = []
    log = Path(f"{stem}.jsonl")  # one line per record, each added atomically: a kill keeps the finished runs
    for spec in sets:
        for seed in seeds:
            record = run_one(spec, seed, args.out, preset=args.preset, features=args.features,
                             device=args.device, overrides=args.override, mesh_dir=args.mesh_dir)
            records.append(record)
            line = json.dumps({"kind": "run", **record})
            print(line, file=out, flush=True)
            append_line(log, line)
    summaries = summarise(records)
    for summary in summaries:
        line = json.dumps({"kind": "set", **summary})
        print(line, file=out)
        append_line(log, line)
    table = markdown_table(summaries)
    write_text(Path(f"{stem}.md"), table + "\n")
    print(table, file=out)
    return 0
