"""`congeal doctor`: check this machine's set-up for a congealing run; print one table with a fix per failing row.

    congeal doctor --threestudio ~/threestudio
    congeal doctor --config configs/congeal.yaml --json > doctor.json

Exit status 0 only when a `congeal.yaml` run can start (no FAIL row); 1 otherwise.
"""
import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Args: --threestudio PATH, --config PATH, --json."""
    parser.add_argument("--threestudio", metavar="PATH", default=None,
                        help="threestudio checkout (default: $THREESTUDIO_ROOT, else an importable threestudio)")
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="congealing config whose models are checked (default: configs/congeal.yaml)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the report. Returns 0 when a congeal.yaml run can start, else 1."""
    from congeal.setup.report import can_start, render_table, run_checks

    checks = run_checks(threestudio=args.threestudio, config=args.config)
    ok = can_start(checks)
    if args.json:
        json.dump({"ok": ok, "checks": [check.as_dict() for check in checks]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_table(checks))
    return 0 if ok else 1
