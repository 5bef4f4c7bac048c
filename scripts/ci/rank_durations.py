"""Rank tests by cost from timing_plugin's records, and estimate each target's time on an idle 2-core machine.

    python3 scripts/ci/rank_durations.py times.jsonl [--top 40]

Prints modules by CPU seconds (with their slow share), the most expensive single tests, and per target (`slow`
marker or not, as the run that wrote the records saw it) the CPU and wall seconds. The idle estimate of a target is
its CPU seconds: an idle 2-core machine runs a test at least as fast as its CPU time (torch may use both cores), so
the estimate errs long. Collection and start-up are not in the records; measure them with `pytest --collect-only`.
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    records = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    modules = defaultdict(lambda: {"cpu": 0.0, "wall": 0.0, "n": 0, "slow_cpu": 0.0})
    totals = defaultdict(lambda: {"cpu": 0.0, "wall": 0.0, "n": 0})
    for record in records:
        target = "slow" if "slow" in record["markers"] else "fast"
        entry = modules[record["module"]]
        entry["cpu"] += record["cpu"]
        entry["wall"] += record["wall"]
        entry["n"] += 1
        if target == "slow":
            entry["slow_cpu"] += record["cpu"]
        for key in ("cpu", "wall"):
            totals[target][key] += record[key]
        totals[target]["n"] += 1
    print(f"{'cpu s':>8} {'wall s':>8} {'slow cpu':>8} {'tests':>5}  module")
    for name, entry in sorted(modules.items(), key=lambda kv: -kv[1]["cpu"])[: args.top]:
        print(f"{entry['cpu']:8.1f} {entry['wall']:8.1f} {entry['slow_cpu']:8.1f} {entry['n']:5d}  {name}")
    print(f"\n{'cpu s':>8} {'wall s':>8}  test (most expensive)")
    for record in sorted(records, key=lambda r: -r["cpu"])[: args.top]:
        flag = " [slow]" if "slow" in record["markers"] else ""
        print(f"{record['cpu']:8.1f} {record['wall']:8.1f}  {record['nodeid']}{flag}")
    print()
    for target, entry in sorted(totals.items()):
        print(f"{target}: {entry['n']} tests, {entry['cpu']:.0f} CPU s (idle estimate {entry['cpu'] / 60:.1f} min), "
              f"{entry['wall']:.0f} wall s on this run")


if __name__ == "__main__":
    main()
