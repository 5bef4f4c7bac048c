"""Shared set-up of the seam contract tests (renderer, feature extractor, denoiser).

    def test_x(device): ...                         # runs on cpu, and on cuda when a GPU is there (else skipped)
    def test_y(threestudio_for_contracts): ...      # the real threestudio from THREESTUDIO_ROOT, or a skip

Every seam's contract is one test module, parametrised over the seam's implementations (in the spirit of diffusers'
common model tester): the same assertions run for each, and an implementation whose dependencies are missing skips
with the reason. threestudio is imported only inside `threestudio_for_contracts`, which loads it the way
tests/integration/conftest.py does (THREESTUDIO_ROOT on sys.path, labelled stand-ins for its CUDA-only imports):
that file is executed, not copied, so the two cannot drift.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
INTEGRATION_DIR = HERE.parent / "integration"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Where a contract case runs: the CPU always, the GPU where there is one."""
    return torch.device(request.param)


def threestudio_missing_reason():
    """Why the threestudio-backed cases cannot run here, or None when they can."""
    if not os.environ.get("THREESTUDIO_ROOT"):
        return "THREESTUDIO_ROOT is not set (integration tests need a threestudio checkout)"
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
        return "Lightning is not installed in this environment (threestudio imports it): use a threestudio side env"
    return None


@pytest.fixture(scope="session")
def threestudio_for_contracts():
    """The real threestudio package (THREESTUDIO_ROOT), with the test-only CPU renderer registered."""
    reason = threestudio_missing_reason()
    if reason:
        pytest.skip(reason)
    # tests/integration/conftest.py puts THREESTUDIO_ROOT on sys.path and installs the stand-ins at import; running
    # it under another module name is idempotent with pytest's own import of it (stand-ins go in only once)
    spec = importlib.util.spec_from_file_location("congeal_contracts_integration_setup",
                                                  INTEGRATION_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if str(INTEGRATION_DIR) not in sys.path:
        sys.path.insert(0, str(INTEGRATION_DIR))
    import threestudio
    import tiny_modules  # noqa: F401  (registers congeal-test-dense-volume-renderer: nerfacc's kernels are CUDA-only)

    return threestudio


# toy-sized models: one thread (the textual-inversion tests' autouse fixture, one home)
from helpers.textual_inversion import one_thread  # noqa: E402,F401  (a fixture: pytest registers it by import)
