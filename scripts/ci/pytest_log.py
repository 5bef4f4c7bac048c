"""Read a pytest log (run with -q -rs) for .ci/run: its closing line, and skips a suite does not allow.

    python3 scripts/ci/pytest_log.py closing LOG                  # "412 passed, 3 skipped in 171.20s" (or a note)
    python3 scripts/ci/pytest_log.py stray-skips LOG only REGEX   # skips whose reason does not match REGEX
    python3 scripts/ci/pytest_log.py stray-skips LOG never REGEX  # skips whose reason matches REGEX

Skips are printed "; "-joined with their count and place (nothing when there are none).

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


def stray_skips(text: str, rule: str, pattern: str) -> List[str]:
    """Skip reasons (with count and place) that break the rule: `only` (every reason must match `pattern`; an empty
    pattern allows no skip) or `never` (no reason may match `pattern`)."""
    stray = []
    for line in text.splitlines():
        match = SKIPPED.match(line.strip())
        if not match:
            continue
        matches = bool(pattern) and re.search(pattern, match.group(3), re.IGNORECASE) is not None
        if matches != (rule == "only"):
            stray.append(f"{match.group(1)}x {match.group(2)}: {match.group(3)}")
    return stray


def main(argv: List[str]) -> int:
    usage = (len(argv) == 2 and argv[0] == "closing") or (
        len(argv) == 4 and argv[0] == "stray-skips" and argv[2] in ("only", "never"))
    if not usage:
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(argv[1]).read_text(errors="replace")
    if argv[0] == "closing":
        print(closing(text))
    else:
        print("; ".join(stray_skips(text, argv[2], argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
