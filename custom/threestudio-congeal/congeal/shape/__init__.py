"""Stage 2, the canonical shape: the stage switch, y*'s rows, SDS view groups, regularisers, resume bookkeeping.

The threestudio system `congeal-system` (`systems/congeal_system.py`) trains textual inversion (stage 1) and then
MVDream SDS of the canonical NeRF (stage 2) in one Lightning run; it only translates configs and batches and calls
this package, which needs neither threestudio nor Lightning and is tested on the CPU.

How the two stages share one run (the design decision):
* One training loop, one optimizer. The global step alone decides the stage (`stage_schedule`): steps below
  `ti_steps` run the textual-inversion guidance on photos, the rest run SDS on camera batches. Lightning checkpoints
  the global step, so a checkpoint of either stage resumes in that stage.
* The optimizer has the NeRF's parameter groups plus one group `congeal_ti` holding y*'s rows (`token_rows`). A
  parameter without a gradient is skipped by torch's optimizers, so each stage updates only its own parameters.
* Schedules of the SDS part see the SDS-local step `global_step - ti_steps`, so threestudio-mvdream's numbers are
  reused unchanged.
* y* travels in every checkpoint (`checkpoint_state`); entering SDS writes `learned_embeds.safetensors` and builds
  the prompt processor from that file (`y_star_handoff`), so SDS never depends on the TI guidance's memory.

Several processes (DDP) and exact resume:
* y*'s rows stay out of the nn.Module (its frozen text encoder and UNet must not go into checkpoints), so DDP does
  not see them: during stage 1 DDP's own sync is off and y*'s gradient is averaged explicitly (`gradient_sync`).
* Stage 2's noise can be drawn per view group from (seed, step, group) (`view_groups`), so N processes train
  exactly what one process with N x the batch would.
* Checkpoints hold every rank's random generators (`generator_state`), restored at the first resumed step.
"""
