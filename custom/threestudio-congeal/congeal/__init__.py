"""3D Congealing core: pure PyTorch, no threestudio import.

    import congeal
    collection = congeal.load_collection("photos/", size=256)
    congeal.Correspondence("out/run").transfer("a", "b", [(120, 80)])

Submodules are imported lazily so `import congeal` stays cheap (no transformers/diffusers at import time).
"""
from importlib import import_module
from typing import Any

from congeal.common.errors import InputError

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "ImageCollection": "io.collection",
    "load_collection": "io.collection",
    "Correspondence": "run.correspondence",
    "GridRenderer": "canonical.render",
    "Canonical": "canonical.grid",
}

__all__ = ["InputError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'congeal' has no attribute {name!r}")
