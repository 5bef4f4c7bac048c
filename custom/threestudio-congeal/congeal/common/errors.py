"""The one error type users see for bad input.

    raise InputError(path, "is a 0-byte file", "re-download it or remove it from the folder")
    # -> ValueError: photos/a.jpg: is a 0-byte file. Fix: re-download it or remove it from the folder
"""
from pathlib import Path
from typing import Optional, Union


class InputError(ValueError):
    """Bad user input. The message names the offending file (when there is one) and says what to do."""

    def __init__(self, path: Optional[Union[str, Path]], problem: str, fix: Optional[str] = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{path}: " if path is not None else ""
        message = f"{where}{problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)
