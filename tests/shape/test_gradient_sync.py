"""y*'s gradient is averaged over processes (DDP does not hold it); DDP's own sync is off in stage 1."""
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from congeal.shape.gradient_sync import average_row_gradients, ddp_module, ddp_syncs, set_ddp_sync, world_size


def test_one_process_leaves_gradients_alone():
    row = torch.nn.Parameter(torch.zeros(2))
    row.grad = torch.tensor([1.0, 3.0])
    average_row_gradients([row], 1, all_reduce=lambda t: (_ for _ in ()).throw(AssertionError("no collective")))
    assert row.grad.tolist() == [1.0, 3.0]
    assert world_size() == 1


def test_the_mean_over_a_fake_group_and_a_missing_gradient_joins_as_zeros():
    # a fake group of 3 processes: the others' gradients are [2, 2] and [0, 6]
    others = torch.tensor([2.0, 8.0])
    calls = []

    def all_reduce(t):
        calls.append(t.clone())
        t.add_(others)

    row, silent = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    row.grad = torch.tensor([1.0, 1.0])
    average_row_gradients([row, silent], 3, all_reduce=all_reduce)
    assert row.grad.tolist() == [1.0, 3.0]
    assert torch.allclose(silent.grad, torch.tensor([2 / 3, 8 / 3]))
    assert len(calls) == 2 and calls[1].tolist() == [0.0, 0.0]  # a row without gradient still joins


def test_ddp_sync_is_off_in_stage_one_only():
    assert not ddp_syncs("ti") and ddp_syncs("sds")
    plain = SimpleNamespace(strategy=SimpleNamespace(model=torch.nn.Linear(1, 1)))
    assert ddp_module(None) is None and ddp_module(plain) is None
    set_ddp_sync(SimpleNamespace(strategy=SimpleNamespace(model=torch.nn.Linear(1, 1))), "ti")  # no DDP: no-op


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        row = torch.nn.Parameter(torch.zeros(2))
        row.grad = torch.tensor([1.0, 2.0]) * (rank + 1)  # rank 0: [1, 2], rank 1: [2, 4]
        average_row_gradients([row], world_size())
        results[rank] = row.grad.tolist()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes start torch: ~15 s on the 2-core machine
def test_two_real_processes_average_with_gloo():
    results = mp.Manager().dict()
    mp.spawn(_two_ranks, args=(_free_port(), results), nprocs=2, join=True)
    assert dict(results) == {0: [1.5, 3.0], 1: [1.5, 3.0]}
