"""Every generator of a process round-trips through a checkpoint: a resumed run draws what the first run drew."""
import random

import numpy as np
import torch

from congeal.shape.generator_state import (capture_generators, gather_generators, preserved_generators,
                                           restore_generators)

CPU = torch.device("cpu")


def draws():
    return torch.rand(4).tolist(), [random.random() for _ in range(3)], np.random.rand(3).tolist(), random.gauss(0, 1)


def test_restore_puts_back_torch_python_and_numpy(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    random.gauss(0, 1)  # python's gauss keeps a spare value: part of the state
    saved = gather_generators(CPU, world_size=1)
    torch.save(saved, tmp_path / "rng.pt")
    expected = draws()
    draws()  # move everything on
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)  # tensors, numbers and strings only
    assert restore_generators(loaded, rank=0, world_size=1, device=CPU) is None
    assert draws() == expected


def test_another_number_of_processes_restores_nothing_and_says_why():
    saved = gather_generators(CPU, world_size=1)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    warning = restore_generators(saved, rank=0, world_size=2, device=CPU)
    assert "1 processes" in warning and "this run has 2" in warning
    assert torch.equal(torch.get_rng_state(), before)


def test_cuda_state_is_captured_only_on_a_cuda_device():
    assert set(capture_generators(CPU)) == {"torch", "python", "numpy"}


def test_preserved_generators_leave_no_trace():
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = draws()
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    with preserved_generators(CPU):
        draws()
        torch.manual_seed(99)
    assert draws() == expected
