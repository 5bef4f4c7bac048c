"""`congeal-system` (stages 1+2) under 2-process DDP (gloo, CPU) equals one process with the same total batch.

Both runs go through tests/integration/launch_cpu.py in subprocesses (Lightning re-executes it for rank 1), with
the shipped TI guidance and prompt processor over tiny CLIP / MVDream models. The one-process run has twice the
per-process photo and camera batch. With `system.sds_noise_by_group` the SDS noise of each view group is seeded
by its number in the whole batch, so the two runs train on the same samples: y* must come out bit for bit equal
(every rank draws the whole batch's random numbers and the ranks' gradient means are averaged), and the NeRF equal
up to float summation order (DDP averages two 4-view gradients; one process differentiates one 8-view mean).
Also: a prompt-cache file that cannot be read (truncated by a kill) is encoded again, not used.
"""

import pytest
import torch

import congeal_runs as runs

TI_STEPS, SDS_STEPS = 3, 3


@pytest.fixture(scope="module")
def single_and_ddp(mvdream_world):
    same = {"system.sds_noise_by_group": True}
    world = mvdream_world
    one = runs.write_config(world, "single", TI_STEPS, SDS_STEPS, photos_per_batch=4, cameras_per_batch=8, **same)
    two = runs.write_config(world, "ddp", TI_STEPS, SDS_STEPS, photos_per_batch=2, cameras_per_batch=4, **same)
    runs.launch(one, world)
    ddp = runs.launch(two, world, devices=2)
    return runs.trial(world, "single"), runs.trial(world, "ddp"), ddp


def test_two_process_ddp_equals_one_process_with_the_same_total_batch(single_and_ddp):
    single, ddp, _ = single_and_ddp
    a, b = runs.final_state(single), runs.final_state(ddp)
    assert sorted(a) == sorted(b) and any(k.startswith("geometry.") for k in a)
    start = torch.load(ddp / "ckpts" / "epoch=0-step=1.ckpt", map_location="cpu", weights_only=False)
    assert not torch.equal(a["y*/<congeal>"], start["congeal_y_star"]["<congeal>"])  # y* trained after step 1
    assert torch.equal(a["y*/<congeal>"], b["y*/<congeal>"]), (a["y*/<congeal>"] - b["y*/<congeal>"]).abs().max()
    end_ti = torch.load(ddp / "ckpts" / f"epoch=0-step={TI_STEPS}.ckpt", map_location="cpu", weights_only=False)
    moved = 0
    for key, value in a.items():
        if key.startswith("geometry."):
            torch.testing.assert_close(b[key], value, rtol=0, atol=1e-5, msg=key)
            moved += int(not torch.equal(value, end_ti["state_dict"][key]))
    assert moved, "SDS did not move the NeRF: the comparison would prove nothing"


def test_ddp_run_writes_one_y_star_and_keeps_every_ranks_generators(single_and_ddp):
    from congeal.inversion.embedding_files import load_learned_embeds

    _, ddp, _ = single_and_ddp
    written = load_learned_embeds(ddp / "learned_embeds.safetensors")["<congeal>"]
    saved = torch.load(ddp / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)["congeal_y_star"]
    assert torch.equal(written, saved["<congeal>"])
    assert len(saved["<congeal>"]) == 1
    rng = torch.load(ddp / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)["congeal_rng"]
    assert len(rng["ranks"]) == 2  # both ranks' generators are in rank 0's checkpoint
    assert not torch.equal(rng["ranks"][0]["torch"], rng["ranks"][1]["torch"])  # launch seeds seed + rank
    leftovers = [p.name for p in ddp.rglob("*.tmp*")] + [p.name for p in (ddp.parent.parent).glob(".*.tmp*")]
    assert not leftovers, leftovers


def test_unreadable_prompt_cache_files_are_encoded_again(mvdream_world, single_and_ddp, monkeypatch):
    import threestudio

    from congeal.inversion.prompt_encoding import read_cached_embedding

    _, ddp, _ = single_and_ddp
    cache = mvdream_world.root / ".threestudio_cache" / "text_embeddings"
    files = sorted(cache.glob("*.pt"))
    assert files, "the runs wrote no prompt cache"
    monkeypatch.chdir(mvdream_world.root)
    config = {"pretrained_model_name_or_path": str(mvdream_world.tiny_sd), "prompt": "a photo of a <congeal>",
              "negative_prompt": "blurry", "spawn": False,
              "learned_embeds_path": str(ddp / "learned_embeds.safetensors")}
    import threestudio.utils.base as base

    monkeypatch.setattr(base, "get_device", lambda: torch.device("cpu"))
    good = threestudio.find("congeal-prompt-processor")(config)().text_embeddings.clone()
    used = [p for p in files if torch.equal(read_cached_embedding(str(p)), good[0])]
    assert used, "the prompt's cache file is not among the cache files"
    data = used[0].read_bytes()
    used[0].write_bytes(data[: len(data) // 3])  # what a kill in the middle of a plain torch.save leaves
    again = threestudio.find("congeal-prompt-processor")(config)().text_embeddings
    assert torch.equal(again, good)
    assert torch.equal(read_cached_embedding(str(used[0])), good[0])  # rewritten whole
