"""y* handed to stage 2 through one file: rank 0 writes, every rank reads the same bytes after the barrier."""
import os

import torch

from congeal.inversion.embedding_files import save_learned_embeds
from congeal.shape.y_star_handoff import hand_over, handoff_path, needs_writing, publish_y_star

Y = {"<c>": torch.arange(6.0).reshape(2, 3)}


def test_where_stage_two_reads_y_star():
    assert handoff_path("/t", "/given.safetensors", "/cwd") == "/t/learned_embeds.safetensors"
    assert handoff_path(None, None, "/cwd") == "/cwd/.congeal/learned_embeds.safetensors"
    assert handoff_path(None, "/given.safetensors", "/cwd") == "/given.safetensors"
    assert needs_writing("/t", None) and needs_writing(None, None) and not needs_writing(None, "/given.safetensors")


def test_rank_zero_writes_before_the_barrier(tmp_path):
    path = str(tmp_path / "learned_embeds.safetensors")
    at_barrier = []
    got = publish_y_star(path, Y, rank=0, barrier=lambda: at_barrier.append(os.path.exists(path)))
    assert at_barrier == [True] and torch.equal(got["<c>"], Y["<c>"])


def test_other_ranks_read_rank_zeros_file_after_the_barrier(tmp_path):
    path = str(tmp_path / "learned_embeds.safetensors")
    rank_zero = {"<c>": torch.full((2, 3), 9.0)}
    at_barrier = []

    def barrier():  # rank 0 writes while rank 1 waits
        at_barrier.append(os.path.exists(path))
        save_learned_embeds(path, rank_zero)

    got = publish_y_star(path, Y, rank=1, barrier=barrier)
    assert at_barrier == [False]  # rank 1 wrote nothing
    assert torch.equal(got["<c>"], rank_zero["<c>"])  # every rank conditions on rank 0's bytes


def test_a_given_file_outside_a_trial_is_read_as_it_is(tmp_path):
    given = str(tmp_path / "given.safetensors")
    path, y_star = hand_over(None, given, str(tmp_path), Y, rank=0, barrier=lambda: None)
    assert path == given and y_star is Y and not os.path.exists(given)
    path, y_star = hand_over(str(tmp_path / "trial"), given, str(tmp_path), Y, 0, lambda: None)
    assert path == str(tmp_path / "trial" / "learned_embeds.safetensors") and os.path.exists(path)
    assert torch.equal(y_star["<c>"], Y["<c>"]) and y_star is not Y
