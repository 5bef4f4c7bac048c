"""Say what to install when a config names something this process cannot build.

    require_registered("mvdream-multiview-diffusion-guidance", "system.guidance_type")
    # -> MissingDependencyError: system.guidance_type names 'mvdream-multiview-diffusion-guidance', which is not
    #    registered. It comes from threestudio-mvdream: ...

threestudio answers an unknown registered name with a bare `KeyError` (threestudio-4dfy#9); configs of this
extension call `require_registered` first so the message names the missing extension/package and the fix.
"""
import importlib.util
import sys
from typing import Optional

MVDREAM_EXTENSION_FIX = (
    "inside your threestudio checkout: `git clone https://github.com/DSaurus/threestudio-mvdream "
    "custom/threestudio-mvdream`"
)
MVDREAM_PACKAGE_FIX = "`pip install --no-deps git+https://github.com/bytedance/MVDream` (the `mvdream` package)"


class MissingDependencyError(RuntimeError):
    """A config needs an extension, package or file that is not installed / not there."""


def _unavailable_reason(name: str) -> Optional[str]:
    """Why one of our own adapters did not register (the extension's `__init__` records skipped modules)."""
    for module in list(sys.modules.values()):
        reasons = getattr(module, "UNAVAILABLE", None)
        if isinstance(reasons, dict) and getattr(module, "ADAPTER_PACKAGES", None) and reasons:
            return "; ".join(f"{k} {v}" for k, v in reasons.items())
    return None


def require_registered(name: str, field: str) -> None:
    """Raise MissingDependencyError unless threestudio knows `name`.

    Args:
        name: a registered threestudio name from the config.
        field: the config field naming it (for the message), e.g. "system.guidance_type".
    """
    import threestudio

    if name in threestudio.__modules__ or ":" in name:
        return
    message = f"{field} names '{name}', which is not registered in threestudio."
    if name.startswith("mvdream-"):
        message += f" It comes from the threestudio-mvdream extension; install it {MVDREAM_EXTENSION_FIX}."
        if importlib.util.find_spec("mvdream") is None:
            message += f" Its `mvdream` package is missing too: {MVDREAM_PACKAGE_FIX}."
    elif name.startswith("congeal-"):
        reason = _unavailable_reason(name)
        message += " It is one of threestudio-congeal's adapters"
        message += f", which were skipped at import: {reason}." if reason else "; is the extension loaded?"
    raise MissingDependencyError(message)


def require_mvdream_package() -> None:
    """Raise MissingDependencyError unless the `mvdream` package (bytedance/MVDream) is importable."""
    if importlib.util.find_spec("mvdream") is None:
        raise MissingDependencyError(f"the MVDream package is not installed: {MVDREAM_PACKAGE_FIX}.")


def require_file(path: Optional[str], field: str, what: str) -> None:
    """Raise MissingDependencyError when `path` is set but names no file."""
    import os

    if path and not os.path.isfile(path):
        raise MissingDependencyError(
            f"{field} = '{path}': no such file. It should be {what}; fix the path or set it to null to download it."
        )
