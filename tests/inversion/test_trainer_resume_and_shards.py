"""Textual inversion under data parallelism (shards) and after a real `kill -9`: the same y* as one straight run.

* Two shards (rank 0 and 1 of 2), each on its half of the batch, with their rows' gradients averaged, give the
  rows of one process trained on the whole batch (the draws of both halves come from one generator stream).
* `congeal invert` killed with SIGKILL at a random step and resumed with --resume ends with the bytes of
  learned_embeds.safetensors and losses.json of an uninterrupted run.
* A resume with other settings or other photos is refused (it could not continue the same trajectory).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.common.errors import InputError
from congeal.inversion.inversion_config import TextualInversionConfig
from congeal.inversion.trainer import TextualInversion

from helpers.textual_inversion import collection, fresh_text, one_thread, pipeline_dir, tiny_denoiser  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def make(batch_size: int, shard=(0, 1), **overrides) -> TextualInversion:
    tokenizer, text_encoder = fresh_text()
    settings = dict(init_word="toy", resolution=32, batch_size=batch_size, lr=0.05, steps=4, n_vectors=2)
    settings.update(overrides)
    ti = TextualInversion(tokenizer, text_encoder, tiny_denoiser(output_gain=4.0), TextualInversionConfig(**settings))
    ti.set_shard(*shard)
    ti.set_images(collection())
    return ti


def average_rows_grads(shards) -> None:
    """What an all-reduce (mean) of the rows' gradients does across processes."""
    mean = torch.stack([s.rows.rows.grad for s in shards]).mean(0)
    for s in shards:
        s.rows.rows.grad = mean.clone()


def test_two_shards_with_averaged_gradients_equal_one_process_with_the_whole_batch():
    whole = make(batch_size=4)
    shards = [make(batch_size=2, shard=(rank, 2)) for rank in range(2)]
    images = collection(4, size=40)
    for step in range(4):
        # the cached-latent path (step) and the photo path of the threestudio guidance (loss_on_images)
        if step % 2 == 0:
            whole.loss_on_latents(whole.sample_latents(4)).backward()
            for s in shards:
                s.loss_on_latents(s.sample_latents(2)).backward()
        else:
            whole.loss_on_images(images).backward()
            for rank, s in enumerate(shards):
                s.loss_on_images(images[2 * rank:2 * rank + 2]).backward()
        average_rows_grads(shards)
        whole.optimizer_step()
        for s in shards:
            s.optimizer_step()
    assert not torch.equal(whole.rows.rows, make(batch_size=4).rows.rows)  # it trained
    for s in shards:
        assert torch.equal(s.rows.rows, shards[0].rows.rows)  # the shards agree exactly
        assert torch.equal(s.generator.get_state(), whole.generator.get_state())  # streams stay in step
    # mean of two half-batch means vs one whole-batch mean: float summation order only
    torch.testing.assert_close(shards[0].rows.rows, whole.rows.rows, rtol=0, atol=1e-5)


def test_a_shard_is_refused_outside_its_world():
    with pytest.raises(InputError, match="shard rank 2 of world size 2"):
        make(batch_size=2, shard=(2, 2))


def test_resume_with_other_settings_or_photos_is_refused(tmp_path):
    ti = make(batch_size=2)
    ti.train(2, progress=False)
    ti.save_checkpoint(tmp_path / "c.pt")
    other = make(batch_size=3)
    with pytest.raises(InputError, match="batch_size: 2 -> 3"):
        other.load_checkpoint(tmp_path / "c.pt")
    longer = make(batch_size=2, steps=10)  # more steps: fine
    longer.load_checkpoint(tmp_path / "c.pt")
    assert longer.step_count == 2
    tokenizer, text_encoder = fresh_text()
    fresh = TextualInversion(tokenizer, text_encoder, tiny_denoiser(output_gain=4.0),
                             TextualInversionConfig(init_word="toy", resolution=32, batch_size=2, lr=0.05, steps=4,
                                                    n_vectors=2))
    fresh.load_checkpoint(tmp_path / "c.pt")  # before set_images, as `congeal invert --resume` does
    with pytest.raises(InputError, match="not the ones the resumed checkpoint was trained on"):
        fresh.set_images(collection(3))


# ---- a real kill -9 of `congeal invert` -------------------------------------------------------------------------
STEPS = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(collection(3, size=40)):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{i}.png")
    return folder


def invert_command(photos: Path, out: Path, *extra: str):
    return [sys.executable, "-m", "congeal", "invert", "--images", str(photos), "--model", str(pipeline_dir()),
            "--init-word", "toy", "--resolution", "32", "--lr", "0.05", "--device", "cpu", "--no-progress",
            "--log-every", "0", "--steps", str(STEPS), "--save-every", "1", "--out", str(out), *extra]


def run_env():
    path = os.pathsep.join([str(REPO / "custom" / "threestudio-congeal"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def saved_step(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])
    except Exception:  # not there yet
        return -1


def test_invert_killed_at_a_random_step_then_resumed_equals_an_uninterrupted_run(photos, tmp_path):
    straight = subprocess.run(invert_command(photos, tmp_path / "straight"), env=run_env(), capture_output=True,
                              text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    kill_at = random.Random().randint(2, STEPS // 2)
    out = tmp_path / "killed"
    proc = subprocess.Popen(invert_command(photos, out), env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and saved_step(out / "checkpoint.pt") < kill_at:
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before step {kill_at}: " + proc.stderr.read().decode()[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = saved_step(out / "checkpoint.pt")
    assert kill_at <= killed_at < STEPS, (kill_at, killed_at)
    assert not (out / "learned_embeds.safetensors").exists()
    resumed = subprocess.run(invert_command(photos, out, "--resume"), env=run_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {killed_at}" in resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["steps"] == STEPS and summary["steps_this_run"] == STEPS - killed_at
    for name in ("learned_embeds.safetensors", "losses.json"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
