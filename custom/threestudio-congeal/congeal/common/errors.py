"""The error types users see: bad input, and outputs that cannot be written.

    raise InputError(path, "is a 0-byte file", "re-download it or remove it from the folder")
    # -> ValueError: photos/a.jpg: is a 0-byte file. Fix: re-download it or remove it from the folder
    raise WriteError(path, "could not be written (No space left on device)", "free space ...")
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


class WriteError(InputError):
    """An output could not be written (disk full, read-only, over quota). The message names the file and says what
    to do; the previous file, if any, is unchanged and no temporary file is left behind (`congeal.common.atomic`).

    A subclass of `InputError` because the fix is the user's (the output folder they chose), and so that every
    command reports it as one line instead of a traceback.
    """
