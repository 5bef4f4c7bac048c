"""Shared fixtures: synthetic collections and registration runs, each built once per test session.

Integration tests (threestudio) have their own conftest in tests/integration/.
"""
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


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
