"""`congeal doctor` against the real threestudio checkout on THREESTUDIO_ROOT: its rows turn green."""
import pytest

from congeal.setup import report as doctor
from helpers.hub_cache import forbid_network

pytestmark = pytest.mark.integration


@pytest.fixture
def rows(threestudio_root, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    forbid_network(monkeypatch)
    return {check.name: check for check in doctor.run_checks()}  # found through THREESTUDIO_ROOT


def test_threestudio_rows_are_green(rows, threestudio_root):
    assert rows["threestudio"].status == "OK", rows["threestudio"]
    assert str(threestudio_root) in rows["threestudio"].detail and "THREESTUDIO_ROOT" in rows["threestudio"].detail
    mvdream = rows["threestudio-mvdream"]
    if (threestudio_root / "custom" / "threestudio-mvdream").is_dir():
        assert mvdream.status == "OK", mvdream
    else:  # CI's hosts have no threestudio-mvdream (no license): the row says how to get it
        assert mvdream.status == "FAIL" and "threestudio-mvdream" in mvdream.fix, mvdream
    assert rows["pytorch-lightning"].status == "OK", rows["pytorch-lightning"]
    assert rows["nerfacc"].status == "OK", rows["nerfacc"]


def test_extension_row_says_how_to_link_when_not_linked(rows, threestudio_root):
    row = rows["threestudio-congeal extension"]
    if (threestudio_root / "custom" / "threestudio-congeal" / "__init__.py").is_file():
        assert row.status == "OK"
    else:
        assert row.status == "FAIL" and row.fix.startswith("ln -s ") and str(threestudio_root) in row.fix


def test_stand_ins_and_missing_kernels_are_not_reported_as_installed(rows):
    import sys

    for name, row_name in (("tinycudann", "tiny-cuda-nn"), ("nvdiffrast", "nvdiffrast")):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None) is None:  # the conftest's stand-in
            assert rows[row_name].status == "FAIL" and "stand-in" in rows[row_name].detail
    if not doctor.can_start(list(rows.values())):
        failing = [r for r in rows.values() if r.status == "FAIL"]
        assert all(r.fix for r in failing)
