"""Check that `make test` and `make test-slow` split the core suite: every test in exactly one of them.

    .venv/bin/python scripts/ci/check_test_split.py          # exit 0: fast ∪ slow = all, fast ∩ slow = ∅

Collects the core suite (tests/ without tests/integration, which has its own target) three times, with the marker
expressions the two targets use and with none, and compares the node ids. Also fails on an entry of the slow list in
tests/conftest.py that no longer names any test (a renamed or deleted test would otherwise drop out of the list
silently and land in the fast target).
"""
import subprocess
import sys
from pathlib import Path
from typing import List, Set

REPO = Path(__file__).resolve().parents[2]
CORE = ["tests", "--ignore=tests/integration"]
FAST = "not slow"  # keep in step with the Makefile's `test` target
SLOW = "slow"  # ... and its `test-slow` target


def collect(marker: List[str]) -> Set[str]:
    """The node ids pytest selects for the core suite with these extra arguments."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *marker, *CORE]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 5):  # 5: nothing selected, judged below
        sys.exit(f"collection failed ({' '.join(command)}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {line.strip() for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")}


def main() -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import SLOW_MODULES, SLOW_TESTS

    everything, fast, slow = collect([]), collect(["-m", FAST]), collect(["-m", SLOW])
    problems = []
    if not everything:
        problems.append("no test collected at all")
    if fast & slow:
        problems.append(f"{len(fast & slow)} tests in both targets, e.g. {sorted(fast & slow)[:5]}")
    if everything - (fast | slow):
        problems.append(f"{len(everything - (fast | slow))} tests in neither target, e.g. "
                        f"{sorted(everything - (fast | slow))[:5]}")
    if (fast | slow) - everything:
        problems.append(f"{len((fast | slow) - everything)} tests selected but not in the whole suite")
    bases = {node.split("[")[0] for node in everything}
    modules = {node.split("::")[0] for node in everything}
    stale = [m for m in SLOW_MODULES if m not in modules] + [t for t in SLOW_TESTS if t not in bases]
    if stale:
        problems.append(f"entries of the slow list in tests/conftest.py name no test: {stale}")
    print(f"test split: {len(everything)} core tests = {len(fast)} fast (make test) + {len(slow)} slow "
          f"(make test-slow)" + ("" if not problems else "; PROBLEMS:\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
