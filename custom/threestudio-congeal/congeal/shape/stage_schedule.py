"""The stage switch: which stage a global step belongs to, and the step each stage's schedules see.

    schedule = StageSchedule(ti_steps=1000)
    schedule.stage_of(999), schedule.stage_of(1000)   # "ti", "sds"
    schedule.sds_step(1500)                           # 500: SDS schedules (threestudio-mvdream's numbers) count from 0

Steps [0, ti_steps) train y* by textual inversion on photos; steps [ti_steps, ...) train the NeRF by SDS. The global
step alone decides, so a checkpoint of either stage resumes in that stage with no extra bookkeeping.
"""
from dataclasses import dataclass

TI = "ti"
SDS = "sds"


@dataclass(frozen=True)
class StageSchedule:
    """Where stage 1 ends and stage 2 begins."""

    ti_steps: int
    """Global steps [0, ti_steps) train y*; 0 skips textual inversion."""

    def stage_of(self, global_step: int) -> str:
        """Args: global_step: Lightning's step. Returns: "ti" below `ti_steps`, else "sds"."""
        return TI if global_step < self.ti_steps else SDS

    def sds_step(self, global_step: int) -> int:
        """Args: global_step: Lightning's step. Returns: the SDS-local step (0 throughout textual inversion)."""
        return max(0, global_step - self.ti_steps)

    def trains_photos(self, global_step: int) -> bool:
        """Args: global_step: Lightning's step. Returns: whether this step's batch must carry photos (stage 1)."""
        return global_step < self.ti_steps

    def stage_flag(self, global_step: int) -> float:
        """Args: global_step: Lightning's step. Returns: 0.0 in stage 1, 1.0 in stage 2 (the `train/stage` value)."""
        return float(self.stage_of(global_step) == SDS)

    def number_batches(self, dataset: object) -> None:
        """Tell a data set that numbers its batches by stage where stage 2 begins (no-op for any other data set).

        Args:
            dataset: the training data set; the image-collection one has `first_sds_step`. Batch k's cameras are
                drawn at batch k's own SDS step: Lightning prefetches the next batch before the system's step
                hooks run, so the hooks alone would lag one batch behind, and differently right after a resume.
        """
        if hasattr(dataset, "first_sds_step"):
            dataset.first_sds_step = int(self.ti_steps)

    def show_photos(self, dataset: object, global_step: int) -> None:
        """Tell a data set that can add photos to its batches whether this step needs them (stage 1).

        Args:
            dataset: the training data set (the image-collection one has `include_images`; others are left alone).
            global_step: Lightning's step.
        """
        if hasattr(dataset, "include_images"):
            dataset.include_images = self.trains_photos(global_step)
