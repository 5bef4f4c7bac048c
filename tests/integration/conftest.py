"""Integration-test set-up: a real threestudio checkout named by THREESTUDIO_ROOT, loaded on CPU.

    THREESTUDIO_ROOT=/path/to/threestudio python -m pytest tests/integration -q
    # without THREESTUDIO_ROOT every test here is skipped, with that reason

On a machine without tiny-cuda-nn / nvdiffrast (CUDA-only builds), clearly-labelled stand-in modules are put in
`sys.modules` *only when the real package is missing*; touching anything in them raises
"STAND-IN ... (tests/integration/conftest.py)". The same is done for threestudio's other import-time-only
dependencies that cannot be installed on a CPU test machine: `envlight` (a git-only, nvdiffrast-based package),
`torchvision` (this project never installs it: it drags in a CUDA torch; threestudio imports it only for CO3D /
zero123 / perceptual loss) and `controlnet_aux` (needs timm → torchvision). Configs used here stay on pure-torch
parts (ProgressiveBandFrequency, VanillaMLP, no-material, solid-color-background).
"""
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXTENSION_DIR = REPO / "custom" / "threestudio-congeal"
THREESTUDIO_ROOT = os.environ.get("THREESTUDIO_ROOT")
SKIP_REASON = "THREESTUDIO_ROOT is not set (integration tests need a threestudio checkout)"

STAND_IN_PACKAGES = {
    "tinycudann": ["tinycudann"],
    "nvdiffrast": ["nvdiffrast", "nvdiffrast.torch"],
    "envlight": ["envlight"],
    "torchvision": ["torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.models"],
    "controlnet_aux": ["controlnet_aux"],
}
STAND_INS_INSTALLED = []


class StandInModule(types.ModuleType):
    """A module that imports fine and fails loudly when used: any attribute is a class that raises on use."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        owner = self.__name__

        def refuse(*_args, **_kwargs):
            raise RuntimeError(
                f"STAND-IN {owner}.{name} (tests/integration/conftest.py): the real '{owner}' is not installed; "
                "this test must not need it"
            )

        stand_in = type(name, (), {"__init__": refuse, "__call__": refuse, "__doc__": f"STAND-IN for {owner}.{name}"})
        setattr(self, name, stand_in)
        return stand_in


def _install_stand_ins() -> None:
    # import the libraries that *probe* for torchvision first, so they see it missing and keep their fallbacks
    for probe in ("pytorch_lightning", "torchmetrics", "transformers", "diffusers"):
        try:
            importlib.import_module(probe)
        except ImportError:
            pass
    for top, names in STAND_IN_PACKAGES.items():
        if top in sys.modules or importlib.util.find_spec(top) is not None:
            continue  # the real package is there: use it
        for name in names:
            module = StandInModule(name, f"STAND-IN for '{name}' (tests/integration/conftest.py)")
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            module.__file__ = None
            sys.modules[name] = module
            if "." in name:
                parent, child = name.rsplit(".", 1)
                setattr(sys.modules[parent], child, module)
        STAND_INS_INSTALLED.append(top)


if THREESTUDIO_ROOT:
    if str(Path(THREESTUDIO_ROOT).resolve()) not in sys.path:
        sys.path.insert(0, str(Path(THREESTUDIO_ROOT).resolve()))
    _install_stand_ins()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.integration)
        if not THREESTUDIO_ROOT:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def pytest_report_header(config):
    if not THREESTUDIO_ROOT:
        return f"integration: skipped ({SKIP_REASON})"
    stand_ins = ", ".join(STAND_INS_INSTALLED) or "none"
    return [f"integration: THREESTUDIO_ROOT={THREESTUDIO_ROOT}; stand-in modules: {stand_ins}",
            f"integration stack: {_stack_versions()}"]


def _stack_versions() -> str:
    """The versions that tell threestudio's pinned stack from today's releases (README "Testing")."""
    from importlib import metadata

    names = ("torch", "pytorch-lightning", "diffusers", "transformers", "huggingface-hub", "omegaconf", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


@pytest.fixture(scope="session")
def threestudio_root() -> Path:
    return Path(THREESTUDIO_ROOT).resolve()


@pytest.fixture(scope="session")
def threestudio(threestudio_root):
    """The real threestudio package from THREESTUDIO_ROOT."""
    import threestudio as ts

    assert Path(ts.__file__).resolve().is_relative_to(threestudio_root), ts.__file__
    return ts


@pytest.fixture(scope="session")
def launch_custom_dir(threestudio_root, tmp_path_factory) -> Iterator[Path]:
    """A scratch `custom/` folder as launch.py sees it: symlinks to threestudio's own extensions + ours.

    The real checkout is not touched (nothing to clean up there); the scratch folder is removed at the end.
    """
    root = tmp_path_factory.mktemp("launch-cwd")
    custom = root / "custom"
    custom.mkdir()
    # a checkout without custom/ (e.g. CI's copy of ../shared/hosts: threestudio-mvdream has no license to be there)
    # has no extension of its own to load
    host_custom = threestudio_root / "custom"
    for entry in sorted(host_custom.iterdir()) if host_custom.is_dir() else []:
        if entry.is_dir() and entry.name != "threestudio-congeal" and (entry / "__init__.py").exists():
            (custom / entry.name).symlink_to(entry, target_is_directory=True)
    (custom / "threestudio-congeal").symlink_to(EXTENSION_DIR, target_is_directory=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def launch_module(threestudio_root):
    """threestudio's launch.py imported as a module (its work is guarded by `if __name__ == "__main__"`)."""
    spec = importlib.util.spec_from_file_location("threestudio_launch", threestudio_root / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def extension_via_launch(threestudio, launch_module, launch_custom_dir):
    """Load every extension under the scratch `custom/` with launch.py's own `load_custom_modules()`.

    Returns the extension module as launch.py registered it (`sys.modules["threestudio-congeal"]`).
    """
    cwd = os.getcwd()
    os.chdir(launch_custom_dir)
    try:
        loaded = {}
        for entry in sorted(os.listdir("custom")):
            path = os.path.join("custom", entry)
            if entry in sys.modules:  # loaded earlier in this session: loading again would re-register mvdream
                loaded[entry] = True
                continue
            loaded[entry] = launch_module.load_custom_module(path)
    finally:
        os.chdir(cwd)
    assert loaded.get("threestudio-congeal"), f"launch.py failed to load the extension: {loaded}"
    return sys.modules["threestudio-congeal"]


@pytest.fixture(scope="session")
def extension_via_package(threestudio, extension_via_launch):
    """The same extension imported as the pip-installed package `threestudio_congeal` (after launch.py loaded it)."""
    if importlib.util.find_spec("threestudio_congeal") is None:
        pytest.skip("threestudio_congeal is not pip-installed: run `pip install -e .` in the repository")
    return importlib.import_module("threestudio_congeal")


@pytest.fixture(scope="session")
def mvdream_available(extension_via_launch) -> bool:
    """Whether threestudio-mvdream registered its names and the MVDream package imports."""
    import threestudio as ts

    return "mvdream-multiview-diffusion-guidance" in ts.__modules__ and importlib.util.find_spec("mvdream") is not None


@pytest.fixture(scope="module")
def mvdream_world(request, tmp_path_factory, threestudio, extension_via_launch, mvdream_available):
    """Photos, a tiny MVDream checkpoint and a tiny SD folder for `congeal-system` runs (`congeal_runs.make_world`),
    one per test module."""
    if not mvdream_available:
        pytest.skip("threestudio-mvdream (custom/threestudio-mvdream + the mvdream package) is not available")
    import congeal_runs

    return congeal_runs.make_world(tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
