"""The congeal part of a checkpoint: written, saved with torch.save, read back; what a checkpoint lacks stays None."""
import torch

from congeal.shape.checkpoint_state import read_resume_state, ti_generator, write_resume_state


def test_round_trip_through_a_file(tmp_path):
    checkpoint = {"state_dict": {}}
    generator = torch.Generator().manual_seed(4)
    write_resume_state(checkpoint, {"<c>": torch.ones(2, 3)}, 5, {"ranks": []}, generator.get_state())
    torch.save(checkpoint, tmp_path / "c.ckpt")
    state = read_resume_state(torch.load(tmp_path / "c.ckpt", weights_only=True))
    assert torch.equal(state.y_star["<c>"], torch.ones(2, 3)) and state.ti_steps == 5 and state.rng == {"ranks": []}
    assert torch.equal(state.ti_generator, generator.get_state())
    assert state.ti_steps_warning(5) is None
    assert "ti_steps=5, config says 7" in state.ti_steps_warning(7)


def test_y_star_is_read_as_float32_and_no_generator_is_written_without_one():
    checkpoint = {}
    write_resume_state(checkpoint, {"<c>": torch.ones(1, 2, dtype=torch.float16)}, 0, {"ranks": []}, None)
    assert "congeal_ti_generator" not in checkpoint
    assert read_resume_state(checkpoint).y_star["<c>"].dtype == torch.float32


def test_a_checkpoint_of_another_system_holds_nothing_of_ours():
    state = read_resume_state({"state_dict": {}, "congeal_ti_steps": 3})
    assert state.y_star is None and state.rng is None and state.ti_generator is None
    assert state.ti_steps_warning(7) is None  # no y* in it: nothing resumed from it to warn about


def test_ti_generator_is_the_trainers():
    generator = torch.Generator()
    guidance = type("G", (), {"trainer": type("T", (), {"generator": generator})()})()
    assert ti_generator(guidance) is generator and ti_generator(None) is None
