"""y*'s rows: found in the TI guidance, overwritten from saved values of the right shape only, snapshotted as copies."""
import pytest
import torch

from congeal.common.errors import InputError
from congeal.shape.token_rows import copy_into_rows, current_y_star, snapshot_rows, trainable_rows


class WithOwnRows(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = torch.nn.Linear(2, 2).requires_grad_(False)
        self.rows = torch.nn.Parameter(torch.zeros(2, 4))
        self.extra = torch.nn.Parameter(torch.zeros(1))  # trainable, but not y*

    def trainable_parameters(self):
        return [self.rows]

    def learned_embeds(self):
        return {"<c>": self.rows}


def test_the_guidance_says_which_rows_train_else_those_needing_grad():
    guidance = WithOwnRows()
    assert trainable_rows(guidance) == [guidance.rows]
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2).requires_grad_(False), torch.nn.Linear(2, 1))
    assert trainable_rows(plain) == [plain[1].weight, plain[1].bias]
    assert trainable_rows(None) == []


def test_copy_keeps_dtype_and_rejects_other_shapes_naming_the_source():
    rows = [torch.zeros(2, 4, dtype=torch.float64)]
    copy_into_rows(rows, [torch.arange(8.0).reshape(2, 4)], "a.safetensors")
    assert rows[0].dtype == torch.float64 and rows[0][1, 3] == 7
    with pytest.raises(InputError, match=r"a\.safetensors: y\* of shape \[\(3, 4\)\] does not fit .*\[\(2, 4\)\]"):
        copy_into_rows(rows, [torch.ones(3, 4)], "a.safetensors")
    assert rows[0][1, 3] == 7  # nothing copied


def test_snapshots_are_float32_cpu_copies_not_aliases():
    guidance = WithOwnRows()
    snap = current_y_star(guidance, None)
    with torch.no_grad():
        guidance.rows.add_(1)
    assert snap["<c>"].dtype == torch.float32 and float(snap["<c>"].sum()) == 0
    assert not snap["<c>"].requires_grad
    assert snapshot_rows({"<c>": torch.ones(1, 2, dtype=torch.float16)})["<c>"].dtype == torch.float32


def test_without_a_guidance_the_snapshot_is_y_star():
    saved = {"<c>": torch.ones(1, 4)}
    assert current_y_star(None, saved) is saved
    with pytest.raises(AssertionError):
        current_y_star(None, None)
