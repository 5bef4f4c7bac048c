"""Shared fixtures: synthetic collections and registration runs, each built once per test session; and which
tests are slow.

Integration tests (threestudio) have their own conftest in tests/integration/.

`make test` runs the core suite without the `slow` marker, `make test-slow` only those with it: a test is slow when
its module is in `SLOW_MODULES` or its id (without parameters) in `SLOW_TESTS`, or when it carries
`@pytest.mark.slow` itself. `scripts/ci/check_test_split.py` (`make test-split`) checks that the two targets cover
every test exactly once and that no entry below has gone stale.
"""
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# Chosen by cost (scripts/ci/timing_plugin.py + rank_durations.py; see docs/testing.md): whole registrations beyond
# the one shared `synthetic_run("same")`, processes killed and resumed, and headless-browser runs. Tests marked
# `@pytest.mark.slow` in their own file are slow too.
#: Modules (paths from the repository root) whose every test is slow.
SLOW_MODULES: Tuple[str, ...] = (
    "tests/fault_injection/test_registration_faults.py",  # registrations killed at random points, then rerun
    "tests/apps/export/test_model_viewer.py",  # headless Chromium drawing the exported GLBs
)
#: Single tests (node ids without parameters) that are slow where the rest of their module is not.
SLOW_TESTS: Tuple[str, ...] = (
    # `congeal invert` killed at a random step, resumed, compared with a straight run
    "tests/inversion/test_trainer_resume_and_shards.py::"
    "test_invert_killed_at_a_random_step_then_resumed_equals_an_uninterrupted_run",
    # two processes registering at once, then a merge
    "tests/run/test_chunked.py::test_two_processes_without_a_bank_then_merge_equal_one_process",
    # chunked runs registered in full (21 s, 15 s and 12 s of the fast suite's 267 s idle, 2026-12-07)
    "tests/run/test_chunked.py::test_the_feature_extractor_is_built_once_per_process",
    "tests/run/test_chunked.py::test_merge_replaces_the_files_of_a_redone_chunk",
    "tests/run/test_run_file_modes.py::test_every_file_of_a_chunked_run_folder_has_the_umasks_mode",
    # two full registrations each
    "tests/run/test_pipeline.py::test_undecided_photos_are_said_in_poses_summary_and_overlay",
    "tests/run/test_pipeline.py::test_failed_cameras_are_said_framed_red_and_left_out_of_transforms",
    "tests/run/test_pipeline.py::test_masks_only_refinement_runs_with_the_polish_colour_term",
    # the viewer in headless Chromium: live server and exported page
    "tests/apps/viewer/test_server.py::test_viewer_in_a_real_browser",
    "tests/apps/viewer/test_server.py::test_exported_page_opens_without_a_server_or_network",
    # a live `congeal view` CLI server asked for files outside its root, then stopped
    "tests/security/test_viewer_exposure.py::test_running_view_server_refuses_traversal_and_says_what_it_exposes",
    # a collection photographed from spot's mesh (needs CONGEAL_SPOT_DIR)
    "tests/synthetic/test_spot.py::test_spot_collection",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must be there when pytest reads it
def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        module, _, _ = item.nodeid.partition("::")
        if module in SLOW_MODULES or item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(slow)


@pytest.fixture(scope="session")
def synthetic_collection(tmp_path_factory) -> Callable[..., Path]:
    """`synthetic_collection(mode="same", n_images=8, seed=0)` -> folder with canonical, images/, ground_truth.json."""
    from congeal.synthetic.generator import make_synthetic_collection

    cache: Dict[Tuple, Path] = {}

    def get(mode: str = "same", n_images: int = 8, seed: int = 0) -> Path:
        key = (mode, n_images, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"synth-{mode}-{n_images}-{seed}")
            cache[key] = Path(make_synthetic_collection(out, mode=mode, n_images=n_images, seed=seed))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def synthetic_run(synthetic_collection, tmp_path_factory) -> Callable[..., Tuple[Path, Path]]:
    """`synthetic_run(mode="same")` -> (collection folder, registration run folder), fast preset, rgb features, CPU."""
    from congeal.run.pipeline import register_collection

    cache: Dict[Tuple, Tuple[Path, Path]] = {}

    def get(mode: str = "same", n_images: int = 8, seed: int = 0) -> Tuple[Path, Path]:
        key = (mode, n_images, seed)
        if key not in cache:
            collection = synthetic_collection(mode, n_images, seed)
            run = tmp_path_factory.mktemp(f"run-{mode}-{n_images}-{seed}")
            register_collection(
                collection / "canonical.safetensors", collection / "images", run,
                preset="fast", features="rgb", device="cpu", seed=seed, progress=False,
            )
            cache[key] = (collection, run)
        return cache[key]

    return get
