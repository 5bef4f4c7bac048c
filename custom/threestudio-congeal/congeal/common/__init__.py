"""Foundations every stage uses: InputError, PathLike, the atomic writer, JSON reading, device resolution, version
parsing, the stage timer."""
