"""Which attributes of a system take part in the per-step update walk, found once instead of at every step.

    names = updateable_names(system, lambda v: isinstance(v, Updateable))   # e.g. ["geometry", "guidance", ...]

threestudio's generic walk reads every attribute of the LightningModule twice a step; the SDS overhead budget is
2 %, so the system walks a cached list of names (reset when an updateable attribute is added).
"""
from typing import Any, Callable, List, Sequence


def updateable_names(obj: Any, is_updateable: Callable[[Any], bool], skip: Sequence[str] = ("dataset",)) -> List[str]:
    """The public, non-property attributes of `obj` whose value is updateable.

    Args:
        obj: the system.
        is_updateable: the test for a value (threestudio's `Updateable`).
        skip: names left out (`dataset`, train/val/test in turn, is updated directly by the batch hooks).
    Returns:
        the names, in `dir()` order; attributes that cannot be read (outside a trainer) are left out.
    """
    found = []
    for name in obj.__dir__():
        if name.startswith("_") or name in skip or isinstance(getattr(type(obj), name, None), property):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # attributes that cannot be read outside a trainer, as threestudio tolerates
            continue
        if is_updateable(value):
            found.append(name)
    return found
