"""A run's bookkeeping across stages and resumes: y* and the generators survive a checkpoint exactly."""
import random

import numpy as np
import pytest
import torch

from congeal.common.errors import InputError
from congeal.inversion.embedding_files import save_learned_embeds
from congeal.shape.stage_schedule import StageSchedule
from congeal.shape.two_stage_run import TwoStageRun

CPU = torch.device("cpu")


class TIGuidance(torch.nn.Module):
    """The textual-inversion guidance's surface: y*'s rows, learned_embeds(), a trainer with a generator."""

    def __init__(self, n=2, dim=4):
        super().__init__()
        self.rows = torch.nn.Parameter(torch.zeros(n, dim))
        self.trainer = type("Trainer", (), {"generator": torch.Generator().manual_seed(0)})()

    def trainable_parameters(self):
        return [self.rows]

    def learned_embeds(self):
        return {"<congeal>": self.rows}


def test_resume_restores_y_star_the_ti_generator_and_every_generator(tmp_path):
    run = TwoStageRun(StageSchedule(3), TIGuidance())
    with torch.no_grad():
        run.ti_guidance.rows.add_(torch.arange(8.0).reshape(2, 4))
    torch.randn(3, generator=run.ti_guidance.trainer.generator)
    torch.manual_seed(11), random.seed(11), np.random.seed(11)
    checkpoint = {}
    run.write_checkpoint(checkpoint, CPU, world_size=1)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    expected = (torch.rand(2), random.random(), np.random.rand(),
                torch.randn(2, generator=run.ti_guidance.trainer.generator))

    resumed = TwoStageRun(StageSchedule(3), TIGuidance())
    assert resumed.read_checkpoint(torch.load(tmp_path / "c.ckpt", weights_only=True)) == []
    assert torch.equal(resumed.ti_guidance.rows, run.ti_guidance.rows)
    torch.manual_seed(0)  # what a fresh process (and starting its data loader) does before the first step
    assert resumed.restore_pending_generators(0, 1, CPU) is None
    got = (torch.rand(2), random.random(), np.random.rand(),
           torch.randn(2, generator=resumed.ti_guidance.trainer.generator))
    assert torch.equal(got[0], expected[0]) and got[1:3] == expected[1:3] and torch.equal(got[3], expected[3])
    assert resumed.pending_rng is None and resumed.restore_pending_generators(0, 1, CPU) is None  # once only


def test_a_run_without_stage_one_keeps_the_checkpoints_y_star_and_warns_on_another_ti_steps():
    checkpoint = {}
    TwoStageRun(StageSchedule(3), TIGuidance()).write_checkpoint(checkpoint, CPU, 1)
    run = TwoStageRun(StageSchedule(0))
    warnings = run.read_checkpoint(checkpoint)
    assert len(warnings) == 1 and "ti_steps=3, config says 0" in warnings[0]
    assert torch.equal(run.current_y_star()["<congeal>"], torch.zeros(2, 4))


def test_a_y_star_file_initialises_the_rows_or_is_refused(tmp_path):
    path = str(save_learned_embeds(tmp_path, {"<congeal>": torch.ones(2, 4)}))
    run = TwoStageRun(StageSchedule(3), TIGuidance())
    run.load_file(path)
    assert float(run.ti_guidance.rows.detach().sum()) == 8 and torch.equal(run.y_star["<congeal>"], torch.ones(2, 4))
    with pytest.raises(InputError, match="does not fit"):
        TwoStageRun(StageSchedule(3), TIGuidance(n=3)).load_file(path)


def test_hand_over_freezes_y_star_in_the_trial(tmp_path):
    run = TwoStageRun(StageSchedule(3), TIGuidance())
    path = run.hand_over(str(tmp_path), None, str(tmp_path), 0, lambda: None)
    assert path == str(tmp_path / "learned_embeds.safetensors")
    assert torch.equal(run.y_star["<congeal>"], torch.zeros(2, 4))


def test_gradients_are_averaged_in_stage_one_only():
    run = TwoStageRun(StageSchedule(3), TIGuidance())
    run.ti_guidance.rows.grad = torch.ones(2, 4)
    run.average_gradients(global_step=5, world_size=2)  # stage 2: no collective (none is set up here)
    run.average_gradients(global_step=0, world_size=1)
    assert torch.equal(run.ti_guidance.rows.grad, torch.ones(2, 4))


def test_warnings_go_to_the_hosts_logger_once():
    checkpoint = {}
    TwoStageRun(StageSchedule(3), TIGuidance()).write_checkpoint(checkpoint, CPU, 1)
    said = []
    run = TwoStageRun(StageSchedule(4), TIGuidance())
    run.read_checkpoint(checkpoint, said.append)
    assert len(said) == 1 and "ti_steps=3, config says 4" in said[0]
    assert run.restore_pending_generators(0, 2, CPU, said.append).startswith("congeal: the checkpoint holds")
    assert len(said) == 2 and run.restore_pending_generators(0, 2, CPU, said.append) is None


def test_the_ti_guidance_is_told_its_shard_when_it_can_shard():
    guidance = TIGuidance()
    shards = []
    guidance.set_shard = lambda rank, world: shards.append((rank, world))
    TwoStageRun(StageSchedule(3), guidance).shard(1, 4)
    TwoStageRun(StageSchedule(3), TIGuidance()).shard(1, 4)  # cannot shard: left alone
    TwoStageRun(StageSchedule(0)).shard(1, 4)
    assert shards == [(1, 4)]
