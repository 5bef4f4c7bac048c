"""learned_embeds.safetensors: diffusers' format, bit-exact round trips, loadable by load_textual_inversion."""
import pytest
import torch
from safetensors import safe_open

from congeal.inversion.embedding_files import embeds_hash, load_learned_embeds, save_learned_embeds
from congeal.common.errors import InputError
from congeal.inversion.placeholder_tokens import install_embeds
from congeal.inversion.inversion_config import TextualInversionConfig
from congeal.inversion.trainer import TextualInversion

from helpers.textual_inversion import collection, fresh_text, one_thread, pipeline_dir, tiny_denoiser  # noqa: F401


def trained(n_vectors: int):
    tokenizer, text_encoder = fresh_text()
    config = TextualInversionConfig(init_word="toy", n_vectors=n_vectors, resolution=32, lr=0.05, steps=2)
    ti = TextualInversion(tokenizer, text_encoder, tiny_denoiser(), config)
    ti.set_images(collection(2))
    ti.train(progress=False)
    return ti


def test_file_layout_and_bit_exact_round_trip(tmp_path):
    rows = torch.randn(3, 32, dtype=torch.float64)
    path = save_learned_embeds(tmp_path, {"<congeal>": rows})
    assert path.name == "learned_embeds.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert list(f.keys()) == ["<congeal>"]
        stored = f.get_tensor("<congeal>")
    assert stored.dtype == torch.float32 and stored.shape == (3, 32)
    loaded = load_learned_embeds(path)
    assert torch.equal(loaded["<congeal>"], rows.float())
    save_learned_embeds(tmp_path / "again.safetensors", loaded)
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_hash_follows_values():
    rows = torch.zeros(2, 8)
    base = embeds_hash({"<t>": rows})
    assert embeds_hash({"<t>": rows.clone()}) == base
    changed = rows.clone()
    changed[1, 3] = 1e-6
    assert embeds_hash({"<t>": changed}) != base
    assert embeds_hash({"<u>": rows}) != base


@pytest.mark.parametrize("n_vectors", [1, 2])
def test_diffusers_load_textual_inversion_round_trip(tmp_path, n_vectors):
    from diffusers import StableDiffusionPipeline

    ti = trained(n_vectors)
    path = ti.save_embeds(tmp_path)
    pipe = StableDiffusionPipeline.from_pretrained(str(pipeline_dir()), safety_checker=None)
    pipe.load_textual_inversion(str(path))
    ids = pipe.tokenizer.convert_tokens_to_ids(ti.slots.tokens)
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(table[ids], ti.rows.rows.detach())
    # the same prompt gives the same text embedding in diffusers and in our trainer
    prompt = "a photo of a <congeal>"
    converted = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
    assert converted == ti.slots.expand(prompt)
    ours_ids = ti.tokenizer(converted, padding="max_length", max_length=77, return_tensors="pt").input_ids
    theirs_ids = pipe.tokenizer(converted, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ours_ids, theirs_ids)
    with torch.no_grad():
        assert torch.equal(ti.text_encoder(ours_ids)[0], pipe.text_encoder(theirs_ids)[0])


def test_install_embeds_matches_and_refreshes(tmp_path):
    ti = trained(2)
    tokenizer, text_encoder = fresh_text()
    (slots,) = install_embeds(tokenizer, text_encoder, ti.learned_embeds())
    assert slots.tokens == ti.slots.tokens
    table = text_encoder.get_input_embeddings().weight
    assert torch.equal(table[slots.ids], ti.rows.rows.detach())
    size = table.shape[0]
    newer = {"<congeal>": ti.rows.rows.detach() + 1.0}
    install_embeds(tokenizer, text_encoder, newer)  # same token again: rows replaced, nothing added
    table = text_encoder.get_input_embeddings().weight
    assert table.shape[0] == size and torch.equal(table[slots.ids], newer["<congeal>"])
    with pytest.raises(InputError, match="another number of vectors"):
        install_embeds(tokenizer, text_encoder, {"<congeal>": torch.zeros(1, 32)})
    with pytest.raises(InputError, match="has dim 16"):
        install_embeds(tokenizer, text_encoder, {"<other>": torch.zeros(1, 16)})


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_learned_embeds(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="cannot be read"):
        load_learned_embeds(junk)
    from safetensors.torch import save_file

    save_file({"<t>": torch.zeros(2, 3, 4)}, str(tmp_path / "cube.safetensors"))
    with pytest.raises(InputError, match="not a \\[n_vectors, dim\\] tensor"):
        load_learned_embeds(tmp_path / "cube.safetensors")
