"""Read a pytest log (run with -q -rs) for .ci/run: its closing line, and skips a suite does not allow.

    python3 scripts/ci/pytest_log.py closing LOG              # "412 passed, 3 skipped in 171.20s" (or a note)
    python3 scripts/ci/pytest_log.py stray-skips LOG REGEX    # the skip reasons not matching REGEX, "; "-joined

Standard library only: it runs before and outside any venv.
"""
import re
import sys
from pathlib import Path
from typing import List

# pytest's last line: "N passed, M skipped in 1.23s" (-q) or "==== N passed in 1.23s ====" (default verbosity)
CLOSING = re.compile(r"^=*\s*((\d+ \w+|no tests ran)(, \d+ \w+)* in [\d.]+s( \([\d:]+\))?)\s*=*$")
# an -rs line: "SKIPPED [2] tests/x/test_y.py:12: reason"
SKIPPED = re.compile(r"^SKIPPED \[(\d+)\] ([^:]+:\d+): (.*)$")


def closing(text: str) -> str:
    """The suite's closing pytest line, or what went wrong instead."""
    for line in reversed(text.splitlines()):
        match = CLOSING.match(line.strip())
        if match:
            return match.group(1)
    return "(no closing pytest line: pytest did not finish; see the log)"


def stray_skips(text: str, allowed: str) -> List[str]:
    """Skip reasons (with count and place) that do not match `allowed` (an empty pattern allows none)."""
    stray = []
    for line in text.splitlines():
        match = SKIPPED.match(line.strip())
        if match and not (allowed and re.search(allowed, match.group(3), re.IGNORECASE)):
            stray.append(f"{match.group(1)}x {match.group(2)}: {match.group(3)}")
    return stray


def main(argv: List[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("closing", "stray-skips") or (argv[0] == "stray-skips" and len(argv) != 3):
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(argv[1]).read_text(errors="replace")
    if argv[0] == "closing":
        print(closing(text))
    else:
        print("; ".join(stray_skips(text, argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
