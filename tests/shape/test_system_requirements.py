"""A config's requirements are checked in order, each by the host's check; a run without y* says how to get one."""
from types import SimpleNamespace

import pytest

from congeal.common.errors import InputError
from congeal.shape.system_requirements import Checks, check_requirements


def config(**changes):
    values = dict(geometry_type="g", material_type="m", background_type="b", renderer_type="r",
                  guidance_type="congeal-mvdream-guidance", prompt_processor_type="p", ti_steps=10,
                  ti_guidance_type="ti", learned_embeds_path=None, guidance={"ckpt_path": "/m.pt"})
    values.update(changes)
    return SimpleNamespace(**values)


def recording():
    seen = []
    return seen, Checks(registered=lambda name, where: seen.append(("registered", name, where)),
                        mvdream_package=lambda: seen.append(("package",)),
                        file=lambda path, where, what: seen.append(("file", path, where)))


def test_an_mvdream_config_needs_every_type_the_parent_class_the_package_and_files():
    seen, checks = recording()
    check_requirements(config(), checks)
    assert [s[1] for s in seen[:6]] == ["g", "m", "b", "r", "congeal-mvdream-guidance", "p"]
    assert seen[6:] == [("registered", "ti", "system.ti_guidance_type"),
                        ("registered", "mvdream-multiview-diffusion-guidance",
                         "system.guidance_type (its parent class)"),
                        ("package",), ("file", "/m.pt", "system.guidance.ckpt_path"),
                        ("file", None, "system.learned_embeds_path")]


def test_without_stage_one_a_y_star_file_is_required():
    seen, checks = recording()
    with pytest.raises(InputError, match="ti_steps is 0 and system.learned_embeds_path is not set"):
        check_requirements(config(ti_steps=0), checks)
    seen, checks = recording()
    check_requirements(config(ti_steps=0, learned_embeds_path="/y.safetensors", guidance_type="other"), checks)
    assert ("registered", "ti", "system.ti_guidance_type") not in seen and ("package",) not in seen
    assert seen[-1] == ("file", "/y.safetensors", "system.learned_embeds_path")


def test_a_failing_check_stops_the_rest():
    def registered(name, where):
        if name == "r":
            raise RuntimeError(f"{where} names {name}")

    with pytest.raises(RuntimeError, match="system.renderer_type names r"):
        check_requirements(config(), Checks(registered, lambda: pytest.fail("checked after"), lambda *a: None))
