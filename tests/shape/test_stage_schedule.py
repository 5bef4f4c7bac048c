"""The stage switch: the global step alone decides the stage; SDS schedules count from the switch."""
from types import SimpleNamespace

from congeal.shape.stage_schedule import SDS, TI, StageSchedule


def test_steps_below_ti_steps_are_stage_one_and_the_rest_stage_two():
    schedule = StageSchedule(ti_steps=3)
    assert [schedule.stage_of(s) for s in range(6)] == [TI, TI, TI, SDS, SDS, SDS]
    assert [schedule.sds_step(s) for s in range(6)] == [0, 0, 0, 0, 1, 2]
    assert [schedule.trains_photos(s) for s in range(5)] == [True, True, True, False, False]
    assert [schedule.stage_flag(s) for s in (2, 3)] == [0.0, 1.0]


def test_no_textual_inversion_starts_in_stage_two_at_sds_step_zero():
    schedule = StageSchedule(ti_steps=0)
    assert schedule.stage_of(0) == SDS and schedule.sds_step(0) == 0 and schedule.sds_step(7) == 7


def test_only_data_sets_that_know_the_stages_are_told():
    schedule = StageSchedule(ti_steps=5)
    numbered = SimpleNamespace(first_sds_step=0, include_images=False)
    plain = SimpleNamespace()
    schedule.number_batches(numbered)
    schedule.number_batches(plain)
    schedule.number_batches(None)
    assert numbered.first_sds_step == 5 and not hasattr(plain, "first_sds_step")
    schedule.show_photos(numbered, 4)
    assert numbered.include_images is True
    schedule.show_photos(numbered, 5)
    assert numbered.include_images is False
    schedule.show_photos(plain, 0)
    assert not hasattr(plain, "include_images")
