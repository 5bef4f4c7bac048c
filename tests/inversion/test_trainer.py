"""The textual-inversion trainer on tiny models: the loss falls, only placeholder rows change, resume is exact."""
import copy

import pytest
import torch

from congeal.common.errors import InputError
from congeal.inversion.inversion_config import TextualInversionConfig
from congeal.inversion.trainer import TextualInversion, loss_summary

from helpers.textual_inversion import collection, fresh_text, one_thread, tiny_denoiser  # noqa: F401


def make(denoiser=None, **overrides):
    tokenizer, text_encoder = fresh_text()
    settings = dict(init_word="toy", resolution=32, batch_size=4, lr=0.05, steps=6)
    settings.update(overrides)
    ti = TextualInversion(tokenizer, text_encoder, denoiser or tiny_denoiser(), TextualInversionConfig(**settings))
    ti.set_images(collection())
    return ti


def test_loss_falls_on_a_fixed_collection():
    # a trained UNet's output depends strongly on the text; amplifying the random UNet's output does the same here
    ti = make(tiny_denoiser(output_gain=4.0), n_vectors=2, steps=60)
    before = ti.evaluate(32)
    ti.train(progress=False)
    after = ti.evaluate(32)
    assert after < before * 0.98, (before, after)
    assert len(ti.losses) == 60 and ti.step_count == 60


def test_only_placeholder_rows_change():
    ti = make(n_vectors=2)
    table = ti.text_encoder.get_input_embeddings().weight
    ids = ti.slots.ids
    table_before = table.detach().clone()
    others_before = {k: v.detach().clone() for k, v in ti.text_encoder.state_dict().items() if "token_embedding" not in k}
    unet_before = {k: v.detach().clone() for k, v in ti.denoiser.state_dict().items()}
    ti.train(progress=False)
    table_after = ti.text_encoder.get_input_embeddings().weight.detach()
    keep = torch.ones(table.shape[0], dtype=torch.bool)
    keep[ids] = False
    assert torch.equal(table_after[keep], table_before[keep])
    assert not torch.equal(table_after[ids], table_before[ids])
    assert torch.equal(table_after[ids], ti.rows.rows.detach())  # the table copy is kept in sync
    for key, value in ti.text_encoder.state_dict().items():
        if "token_embedding" not in key:
            assert torch.equal(value, others_before[key]), key
    for key, value in ti.denoiser.state_dict().items():
        assert torch.equal(value, unet_before[key]), key


def test_resume_continues_the_same_trajectory(tmp_path):
    straight = make(steps=6)
    straight.train(progress=False)
    first = make(steps=6)
    first.train(3, progress=False)
    first.save_checkpoint(tmp_path / "checkpoint.pt")
    resumed = make(steps=6)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed.step_count == 3
    resumed.train(progress=False)
    assert torch.equal(resumed.rows.rows, straight.rows.rows)
    assert resumed.losses == straight.losses


def test_checkpoint_of_another_token_is_refused(tmp_path):
    ti = make(n_vectors=1)
    ti.save_checkpoint(tmp_path / "c.pt")
    other = make(n_vectors=2)
    with pytest.raises(InputError, match="checkpoint is for tokens"):
        other.load_checkpoint(tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        other.load_checkpoint(tmp_path / "junk.pt")


def test_loss_on_images_accepts_channels_last_and_masks():
    ti = make(background="white")
    images = collection(2)
    masks = (images[:, 2:3] > 0.8).float()
    loss = ti.loss_on_images(images.permute(0, 2, 3, 1), masks)
    loss.backward()
    assert torch.isfinite(loss) and ti.rows.rows.grad is not None and ti.rows.rows.grad.abs().sum() > 0
    with pytest.raises(InputError, match="do not match images"):
        ti.loss_on_images(images, masks[:, :, :16])


@pytest.mark.parametrize("overrides, match", [
    (dict(init_word="teddybear"), "init word 'teddybear' is 2 tokens"),
    (dict(init_word=""), "init word '' is 0 tokens"),
    (dict(token="Dog"), "ordinary word"),
    (dict(token="<a b>"), "whitespace"),
    (dict(n_vectors=0), "n_vectors must be >= 1"),
    (dict(templates=("a photo",)), "exactly one"),
    (dict(resolution=30), "divisible by 8"),
])
def test_bad_settings_give_clear_errors(overrides, match):
    tokenizer, text_encoder = fresh_text()
    settings = dict(init_word="toy", resolution=32)
    settings.update(overrides)
    with pytest.raises(InputError, match=match):
        TextualInversion(tokenizer, text_encoder, tiny_denoiser(), TextualInversionConfig(**settings))


def test_existing_placeholder_is_refused():
    tokenizer, text_encoder = fresh_text()
    config = TextualInversionConfig(init_word="toy", resolution=32)
    TextualInversion(tokenizer, text_encoder, tiny_denoiser(), config)
    with pytest.raises(InputError, match="already exists"):
        TextualInversion(tokenizer, text_encoder, tiny_denoiser(), config)


def test_training_without_images_is_refused():
    tokenizer, text_encoder = fresh_text()
    ti = TextualInversion(tokenizer, text_encoder, tiny_denoiser(), TextualInversionConfig(init_word="toy", resolution=32))
    with pytest.raises(InputError, match="no images"):
        ti.step()
    with pytest.raises(InputError, match="no images"):
        ti.set_images(torch.zeros(0, 3, 32, 32))


def test_loss_summary_windows():
    summary = loss_summary([4.0] * 10 + [1.0] * 90)
    assert summary["window"] == 10 and summary["first_loss"] == 4.0 and summary["last_loss"] == 1.0


def test_bf16_weights_keep_float32_rows():
    # what mixed precision does on a GPU (frozen weights in bf16, y* and AdamW in float32), exercised on the CPU
    ti = make(copy.deepcopy(tiny_denoiser()), mixed_precision="bf16", steps=2)  # a copy: the cast is in place
    assert ti.text_encoder.dtype == torch.bfloat16 and next(ti.denoiser.parameters()).dtype == torch.bfloat16
    before = ti.rows.rows.detach().clone()
    ti.train(progress=False)
    assert ti.rows.rows.dtype == torch.float32 and not torch.equal(ti.rows.rows, before)
    assert all(torch.isfinite(torch.tensor(ti.losses)))
