"""The extension loads as launch.py loads it, as the pip-installed package, and both in one process."""
import importlib
import sys
import types

import pytest

OUR_NAMES = ["congeal-image-collection-datamodule", "congeal-system", "congeal-textual-inversion-guidance",
             "congeal-prompt-processor", "congeal-mvdream-guidance"]


def test_launch_py_loads_the_extension_and_registers_names(extension_via_launch, threestudio):
    assert extension_via_launch.__name__ == "threestudio-congeal"  # launch.py names it after the folder
    for name in OUR_NAMES:
        assert name in threestudio.__modules__, name
        cls = threestudio.find(name)
        assert cls.__module__.startswith("threestudio-congeal.") or cls.__module__.startswith("threestudio_congeal.")


def test_congeal_core_is_importable_after_loading(extension_via_launch):
    import congeal
    import congeal.common.errors

    assert issubclass(congeal.common.errors.InputError, ValueError)


def test_loading_twice_launch_then_pip_package_does_not_crash(extension_via_launch, extension_via_package, threestudio):
    assert extension_via_package is not extension_via_launch
    assert extension_via_package.__name__ == "threestudio_congeal"
    # both copies define the same classes; the registry keeps one per name
    from_launch = sys.modules["threestudio-congeal.systems.congeal_system"].CongealSystem
    from_package = sys.modules["threestudio_congeal.systems.congeal_system"].CongealSystem
    assert from_launch is not from_package
    assert threestudio.find("congeal-system") in (from_launch, from_package)


def test_a_different_class_under_a_taken_name_still_errors(extension_via_launch):
    registry = sys.modules["threestudio-congeal.registry"]

    class Impostor:  # defined here, not in the extension: a genuine name clash
        pass

    with pytest.raises(ValueError, match="already exists"):
        registry.register("congeal-system")(Impostor)


def test_same_class_registered_again_is_a_no_op(extension_via_launch, threestudio):
    registry = sys.modules["threestudio-congeal.registry"]
    before = threestudio.find("congeal-image-collection-datamodule")
    twin = type(before.__name__, (), {"__module__": "threestudio_congeal.data.image_collection"})
    twin.__qualname__ = before.__qualname__
    assert registry.register("congeal-image-collection-datamodule")(twin) is twin
    assert threestudio.find("congeal-image-collection-datamodule") is before


@pytest.mark.parametrize("version", ["0.1.9", "0.0.1", None])
def test_version_gate_refuses_old_threestudio(extension_via_launch, version):
    fake = types.ModuleType("threestudio")
    if version is not None:
        fake.__version__ = version
    with pytest.raises(ImportError, match=r"threestudio >= 0\.2\.0.*git pull"):
        extension_via_launch.check_threestudio_version(fake)


@pytest.mark.parametrize("version", ["0.2.0", "0.2.3", "1.0.0rc1"])
def test_version_gate_accepts_current_threestudio(extension_via_launch, version):
    fake = types.ModuleType("threestudio")
    fake.__version__ = version
    extension_via_launch.check_threestudio_version(fake)


def test_unknown_registered_name_is_explained(extension_via_launch):
    deps = sys.modules["threestudio-congeal.dependencies"]
    with pytest.raises(deps.MissingDependencyError, match="threestudio-mvdream"):
        deps.require_registered("mvdream-no-such-guidance", "system.guidance_type")


def test_adapter_with_a_missing_optional_package_is_skipped_and_listed(extension_via_launch, launch_module, tmp_path,
                                                                       recwarn):
    """A third copy of the extension (another folder name) with one adapter needing an absent package still loads."""
    from pathlib import Path

    source = Path(extension_via_launch.__file__).resolve().parent
    copy = tmp_path / "custom" / "threestudio-congeal-extra"
    copy.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name not in ("guidance", "__pycache__") and not entry.name.endswith(".egg-info"):
            (copy / entry.name).symlink_to(entry)
    (copy / "guidance").mkdir()
    for entry in (source / "guidance").glob("*.py"):
        (copy / "guidance" / entry.name).symlink_to(entry)
    (copy / "guidance" / "needs_missing.py").write_text("import congeal_no_such_package_xyz\n")
    try:
        assert launch_module.load_custom_module(str(copy))
        module = sys.modules["threestudio-congeal-extra"]
        assert "guidance.needs_missing" in module.UNAVAILABLE
        assert "congeal_no_such_package_xyz" in module.UNAVAILABLE["guidance.needs_missing"]
        assert any("needs_missing" in str(w.message) for w in recwarn)
    finally:
        prefix = "threestudio-congeal-extra"
        for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
            del sys.modules[name]


def test_pip_package_first_then_launch_py(threestudio_root, launch_custom_dir):
    """The other order, in a fresh process: `import threestudio_congeal`, then launch.py loads custom/."""
    import os
    import subprocess
    from pathlib import Path

    if __import__("importlib").util.find_spec("threestudio_congeal") is None:
        pytest.skip("threestudio_congeal is not pip-installed: run `pip install -e .` in the repository")
    here = Path(__file__).resolve().parent
    script = f"""
import importlib.util, os, sys
sys.path.insert(0, {str(here)!r})
import conftest  # installs the stand-ins for CUDA-only packages, as in this test session
import threestudio, threestudio_congeal
first = threestudio.find("congeal-system")
spec = importlib.util.spec_from_file_location("launch", {str(threestudio_root / "launch.py")!r})
launch = importlib.util.module_from_spec(spec); spec.loader.exec_module(launch)
os.chdir({str(launch_custom_dir)!r})
ok = [launch.load_custom_module(os.path.join("custom", n)) for n in sorted(os.listdir("custom"))]
assert all(ok), ok
assert threestudio.find("congeal-system") is first
print("OK", first.__module__)
"""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK threestudio_congeal.systems.congeal_system" in done.stdout
