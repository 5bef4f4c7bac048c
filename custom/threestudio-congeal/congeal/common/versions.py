"""The one version parser, and the oldest threestudio this extension runs on.

    version_tuple("2.0.0rc1+cu118")        # (2, 0, 0)
    at_least("0.2", MIN_THREESTUDIO)        # True: missing parts count as 0, so "0.2" == "0.2.0"

Used by `congeal doctor` (congeal.setup.environment_checks) and by the extension's `__init__` (the threestudio version gate).
Reads version strings only: nothing is imported.
"""
import re
from typing import Optional, Tuple

MIN_THREESTUDIO = (0, 2, 0)  # threestudio-mvdream refuses older versions


def version_tuple(text: Optional[str], width: int = 0) -> Tuple[int, ...]:
    """'2.0.0rc1+cu118' -> (2, 0, 0); '0.26' -> (0, 26); None/unparsable -> ().

    Args:
        text: a version string ("1.0rc1", "0.2.3.dev1", "2.1.0+cu118").
        width: pad with zeros to at least this many parts (compare "2.0" with (2, 0, 0) at width 3).
    Returns:
        The leading numeric parts, up to the first part that is not a plain number (its leading digits kept).
    """
    numbers = []
    for part in re.split(r"[.+-]", text or ""):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.group() != part:
            break
    if numbers:
        numbers += [0] * (width - len(numbers))
    return tuple(numbers)


def at_least(text: Optional[str], minimum: Tuple[int, ...]) -> bool:
    """True when `text` parses to a version >= `minimum` (missing parts count as 0); unparsable -> False."""
    version = version_tuple(text, width=len(minimum))
    return bool(version) and version >= tuple(minimum)
