"""`congeal doctor`: every row printed with its verdict and fix, the JSON output, the exit code, the table."""
import json

import pytest
import torch

from congeal.cli import main
from congeal.setup import report as doctor
from congeal.setup.environment_checks import Check
from helpers.hub_cache import offline  # noqa: F401

ROWS = ["Python", "torch", "CUDA GPU", "GPU memory", "threestudio", "threestudio-mvdream",
        "threestudio-congeal extension", "MVDream package", "MVDream text encoder (open_clip)", "tiny-cuda-nn",
        "nerfacc", "nerfacc CUDA kernels", "nvdiffrast", "huggingface_hub", "diffusers", "transformers",
        "pytorch-lightning", "config", "model sd21-base", "model mvdream", "model dinov2", "model sam"]
NO_GPU = not (torch.version.cuda and torch.cuda.is_available())


def _rows(checks):
    return {check.name: check for check in checks}


def test_every_row_is_printed_with_a_verdict_and_failures_say_the_fix(offline, capsys):
    code = main(["doctor", "--threestudio", str(offline / "no-threestudio"),
                 "--config", str(offline / "absent.yaml")])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    names = [line.split(" | ")[0][2:] for line in lines]
    assert names == ROWS
    for line in lines:
        name, status, detail, fix = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert status in ("OK", "WARN", "FAIL"), line
        assert detail, line
        assert (fix != "") == (status != "OK"), line  # every non-OK row says what to do, OK rows do not
    rows = {line.split(" | ")[0][2:]: line for line in lines}
    assert "| FAIL |" in rows["threestudio"] and "THREESTUDIO_ROOT" in rows["threestudio"]
    assert "| FAIL |" in rows["threestudio-mvdream"]
    # offline with an empty cache: the two stage-1/2 models cannot be fetched, stage-3 models only warn
    assert "| FAIL |" in rows["model mvdream"] and "HF_HUB_OFFLINE" in rows["model mvdream"]
    assert "download MVDream/MVDream sd-v2.1-base-4view.pt" in rows["model mvdream"]
    assert "| FAIL |" in rows["model sd21-base"]
    assert "| WARN |" in rows["model dinov2"] and "congeal register" in rows["model dinov2"]
    assert "a congeal.yaml run cannot start" in out
    assert code == 1


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_cpu_machine_rows(offline):
    rows = _rows(doctor.run_checks(threestudio=offline / "none", config=offline / "absent.yaml"))
    assert rows["torch"].status == "FAIL" and "CUDA build" in rows["torch"].fix
    assert rows["CUDA GPU"].status == "FAIL"
    assert rows["GPU memory"].status == "FAIL" and "20 GB" in rows["GPU memory"].detail
    assert rows["nerfacc CUDA kernels"].status == "FAIL"
    assert rows["Python"].status == "OK"
    assert rows["config"].status == "WARN"
    assert not doctor.can_start(list(rows.values()))


def test_json_output(offline, capsys):
    code = main(["doctor", "--threestudio", str(offline / "none"), "--config", str(offline / "absent.yaml"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["checks"]] == ROWS
    assert report["ok"] is (code == 0)
    assert set(report["checks"][0]) == {"name", "status", "detail", "fix"}


def test_can_start_only_without_fail_rows():
    assert doctor.can_start([Check("a", "OK", "x"), Check("b", "WARN", "y", "z")])
    assert not doctor.can_start([Check("a", "OK", "x"), Check("b", "FAIL", "y", "z")])
    table = doctor.render_table([Check("a|b", "OK", "x")])
    assert "| a\\|b | OK | x |  |" in table and "can start" in table
