"""threestudio-congeal: 3D Congealing (Zhang et al., ECCV 2024) as a threestudio extension.

    ln -s /path/to/threestudio-congeal/custom/threestudio-congeal threestudio/custom/   # launch.py loads it
    python launch.py --config custom/threestudio-congeal/../../configs/congeal.yaml --train data.image_dir=photos/
    import threestudio_congeal  # or as the pip-installed package; loading both ways in one process is fine

On import: makes the core package `congeal` importable (it lives in this folder), checks threestudio >= 0.2.0,
then imports every module in `guidance/`, `prompt_processors/`, `data/` and `systems/` so their registered names
(`congeal-system`, `congeal-image-collection-datamodule`, ...) exist. A module whose optional third-party
dependency is missing (e.g. the MVDream package) is skipped with a warning and listed in `UNAVAILABLE`; the
system names the missing piece when a config actually needs it.
"""
import importlib
import importlib.util
import os
import pkgutil
import sys
import warnings
from typing import Dict

ADAPTER_PACKAGES = ("guidance", "prompt_processors", "data", "systems")
HERE = os.path.dirname(os.path.abspath(__file__))

# registered-module path -> why it could not be imported (a missing optional dependency)
UNAVAILABLE: Dict[str, str] = {}


def check_threestudio_version(threestudio_module) -> None:
    """Raise ImportError with what to do unless threestudio >= 0.2.0 (`congeal.common.versions.MIN_THREESTUDIO`)."""
    from congeal.common.versions import MIN_THREESTUDIO, at_least  # the core's parser, shared with `congeal doctor`

    version = getattr(threestudio_module, "__version__", None)
    if not at_least(version, MIN_THREESTUDIO):
        found = "a threestudio without __version__ (older than 0.2.0)" if version is None else f"threestudio {version}"
        raise ImportError(
            f"threestudio-congeal needs threestudio >= {'.'.join(map(str, MIN_THREESTUDIO))}, found {found}. "
            "Update it: `cd threestudio && git pull` (then `pip install -r requirements.txt`)."
        )


def _ensure_core_importable() -> None:
    """Put this folder on sys.path when the core `congeal` is not pip-installed (launch.py loads us by path)."""
    if importlib.util.find_spec("congeal") is None and HERE not in sys.path:
        sys.path.insert(0, HERE)


def _import_adapters(package_name: str) -> None:
    """Import every module of every adapter sub-package so their @register decorators run."""
    own_tops = {package_name.split(".")[0], "congeal", "threestudio"}
    for sub in ADAPTER_PACKAGES:
        sub_name = f"{package_name}.{sub}"
        sub_pkg = importlib.import_module(sub_name)
        for info in sorted(pkgutil.iter_modules(sub_pkg.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            full = f"{sub_name}.{info.name}"
            try:
                importlib.import_module(full)
            except ModuleNotFoundError as exc:
                missing = (exc.name or "").split(".")[0]
                if not missing or missing in own_tops:
                    raise  # our own code is broken: never hide that
                UNAVAILABLE[f"{sub}.{info.name}"] = f"needs the Python package '{exc.name}', which is not installed"
                warnings.warn(f"threestudio-congeal: skipped {sub}/{info.name}.py: {UNAVAILABLE[f'{sub}.{info.name}']}")


import threestudio as _threestudio  # noqa: E402  (imported after the helpers so the gate's message is ours)

_ensure_core_importable()  # first: the version gate uses the core's version parser
check_threestudio_version(_threestudio)
_import_adapters(__name__)
