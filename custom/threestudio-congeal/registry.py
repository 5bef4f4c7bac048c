"""`register(name)`: threestudio's registration, tolerant of the extension being loaded twice.

    from .registry import register
    @register("congeal-system")
    class CongealSystem(BaseLift3DSystem): ...

threestudio's own `register` raises "Module ... already exists!" for any second registration. The extension can
legitimately be imported twice in one process: once as the pip-installed package `threestudio_congeal` and once by
`launch.py` from `custom/threestudio-congeal` (module name `threestudio-congeal`). Both copies define the *same*
class (same qualified name, same module path inside the extension), so the second registration is a no-op that
keeps the first class. A *different* class under a taken name still raises threestudio's error.
"""
from typing import Callable, Type, TypeVar

T = TypeVar("T", bound=type)


def _identity(cls: type) -> tuple:
    """(module path inside the extension, qualified name): equal for both loadings of one class.

    `threestudio-congeal.systems.congeal_system` and `threestudio_congeal.systems.congeal_system` share the tail
    `systems.congeal_system`; the top-level package name is what differs between the two loadings.
    """
    module = cls.__module__ or ""
    tail = module.split(".", 1)[1] if "." in module else module
    return tail, cls.__qualname__


def same_class(a: type, b: type) -> bool:
    """Whether `a` and `b` are the same class definition, possibly loaded under two package names.

    Args:
        a, b: classes.
    Returns:
        True when they are the same object, or both come from this extension with equal module tail and qualname.
    """
    if a is b:
        return True
    return _identity(a) == _identity(b) and _from_this_extension(a) and _from_this_extension(b)


def _from_this_extension(cls: type) -> bool:
    top = (cls.__module__ or "").split(".", 1)[0]
    # launch.py names the package after its folder; pip names it threestudio_congeal; users may rename the folder
    return top.replace("-", "_").startswith("threestudio_congeal") or top == _PACKAGE_TOP


_PACKAGE_TOP = (__name__ or "").split(".", 1)[0]


def register(name: str) -> Callable[[T], T]:
    """Decorator registering `cls` under `name` in threestudio's registry (same call as `threestudio.register`).

    Args:
        name: the registered name configs use (`system_type`, `data_type`, `guidance_type`, ...).
    Returns:
        a class decorator returning the class unchanged.
    Raises:
        ValueError: `name` is taken by a different class (threestudio's own message).
    """
    import threestudio

    def decorator(cls: T) -> T:
        existing = threestudio.__modules__.get(name)
        if existing is not None and same_class(existing, cls):
            # second loading of this extension: keep the first class so isinstance checks stay consistent
            return cls
        return threestudio.register(name)(cls)

    return decorator
