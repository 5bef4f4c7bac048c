"""Photo folders for `--add` tests: the first photos of a collection in one folder, the rest in another.

    first, later = split_into_folders(images, tmp_path, 5)            # copies
    first, later = split_into_folders(images, tmp_path, 2, link=True)  # hard links
"""
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple


def split_into_folders(images: Sequence[Path], root: Path, count: int, later: Optional[Sequence[Path]] = None,
                       link: bool = False) -> Tuple[Path, Path]:
    """root/first holds images[:count]; root/later holds `later` (default images[count:])."""
    put = os.link if link else shutil.copy
    folders = root / "first", root / "later"
    for folder, members in zip(folders, (images[:count], images[count:] if later is None else later)):
        folder.mkdir(parents=True)
        for path in members:
            put(path, folder / path.name)
    return folders
