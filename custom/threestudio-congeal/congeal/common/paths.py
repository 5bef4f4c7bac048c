"""The path type every `congeal` function accepts: a `str` or any `os.PathLike` (e.g. `pathlib.Path`)."""
import os
from typing import Union

PathLike = Union[str, os.PathLike]
