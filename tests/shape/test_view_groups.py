"""SDS by view group: one process with the whole batch draws exactly what N processes with its slices draw."""
import pytest
import torch

from congeal.shape.view_groups import (group_cameras, group_count, guidance_by_group, merge_group_outputs,
                                       run_guidance, step_timestep)

CPU = torch.device("cpu")


def noisy_guidance(calls):
    """A guidance whose loss depends on the noise it draws from torch's generator (as SDS's does)."""

    def guidance(rgb, timestep, cameras):
        noise = torch.randn(rgb.shape)
        calls.append({"timestep": timestep, "noise": noise, "rows": cameras["index"].tolist()})
        return {"loss_sds": ((rgb - noise) ** 2).mean(), "min_step": 20, "noise": noise}

    return guidance


def batch(n):
    rgb = torch.arange(n * 2 * 2 * 3, dtype=torch.float32).reshape(n, 2, 2, 3) / 100
    return rgb, {"index": torch.arange(n), "height": 2, "scalar": torch.tensor(3.0)}


def test_two_processes_draw_what_one_process_draws():
    rgb, cameras = batch(4)
    one, split = [], []
    whole = guidance_by_group(noisy_guidance(one), rgb, cameras, n_view=2, seed=0, step=7, rank=0, min_step=20,
                              max_step=980, device=CPU)
    for rank in (0, 1):
        rows = slice(2 * rank, 2 * rank + 2)
        guidance_by_group(noisy_guidance(split), rgb[rows], group_cameras(cameras, 4, rows), n_view=2, seed=0,
                          step=7, rank=rank, min_step=20, max_step=980, device=CPU)
    assert [c["rows"] for c in one] == [[0, 1], [2, 3]] == [c["rows"] for c in split]
    assert all(torch.equal(a["noise"], b["noise"]) for a, b in zip(one, split))
    assert len({c["timestep"] for c in one + split}) == 1  # one timestep per step, on every process
    assert not torch.equal(one[0]["noise"], one[1]["noise"])  # each group its own noise
    assert torch.allclose(whole["loss_sds"], ((rgb - torch.cat([c["noise"] for c in one])) ** 2).mean())


def test_the_run_generators_do_not_move_and_another_step_draws_anew():
    rgb, cameras = batch(2)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    calls = []
    guidance_by_group(noisy_guidance(calls), rgb, cameras, 2, 0, 7, 0, 20, 980, CPU)
    assert torch.equal(torch.rand(3), expected)
    guidance_by_group(noisy_guidance(calls), rgb, cameras, 2, 0, 8, 0, 20, 980, CPU)
    assert not torch.equal(calls[0]["noise"], calls[1]["noise"])
    assert 20 <= step_timestep(0, 7, 20, 980) <= 980 and step_timestep(0, 7, 20, 980) == calls[0]["timestep"]


def test_outputs_are_merged_scalars_averaged():
    merged = merge_group_outputs([{"loss": torch.tensor([1.0]), "n": 2, "img": "a"},
                                  {"loss": torch.tensor([3.0]), "n": 4, "img": "b"}])
    assert merged["loss"].item() == 2.0 and merged["loss"].shape == () and merged["n"] == 3 and merged["img"] == "a"


def test_group_slicing_and_bad_batches():
    _, cameras = batch(4)
    part = group_cameras(cameras, 4, slice(2, 4))
    assert part["index"].tolist() == [2, 3] and part["height"] == 2 and part["scalar"].item() == 3.0
    assert group_count(8, 4) == 2
    with pytest.raises(ValueError, match="camera batch 6 is not a multiple of n_view 4"):
        group_count(6, 4)


class Guidance:
    """An SDS guidance's calling convention: (rgb, prompt_utils, [timestep=], **cameras); n_view, step range."""

    def __init__(self):
        self.cfg = type("Cfg", (), {"n_view": 2})()
        self.min_step, self.max_step = 20, 980
        self.calls = []

    def __call__(self, rgb, prompt_utils, timestep=None, **cameras):
        self.calls.append((rgb.shape[0], prompt_utils, timestep, sorted(cameras)))
        return {"loss_sds": rgb.mean()}


def test_run_guidance_by_group_or_in_one_call():
    rgb, cameras = batch(4)
    guidance = Guidance()
    run_guidance(guidance, "prompts", rgb, cameras, by_group=False, seed=0, step=5, rank=0, device=CPU)
    assert guidance.calls == [(4, "prompts", None, ["height", "index", "scalar"])]
    out = run_guidance(guidance, "prompts", rgb, cameras, by_group=True, seed=0, step=5, rank=0, device=CPU)
    t = step_timestep(0, 5, 20, 980)
    assert guidance.calls[1:] == [(2, "prompts", t, ["height", "index", "scalar"])] * 2
    assert torch.allclose(out["loss_sds"], rgb.mean())
