"""Placeholder tokens: diffusers' multi-vector naming, prompt expansion, the hook that trains only their rows."""
import torch

from congeal.inversion.placeholder_tokens import TrainableRows, add_placeholder_tokens, placeholder_names

from helpers.textual_inversion import fresh_text, one_thread  # noqa: F401


def test_names_and_expansion():
    tokenizer, text_encoder = fresh_text()
    slots = add_placeholder_tokens(tokenizer, text_encoder, "<congeal>", "toy", n_vectors=3)
    assert slots.tokens == placeholder_names("<congeal>", 3) == ["<congeal>", "<congeal>_1", "<congeal>_2"]
    assert slots.expand("a <congeal>, side view") == "a <congeal> <congeal>_1 <congeal>_2, side view"
    assert slots.expand(slots.expand("a <congeal>")) == slots.expand("a <congeal>")  # idempotent
    ids = tokenizer(slots.expand("a photo of a <congeal>")).input_ids
    assert ids[-4:-1] == slots.ids
    table = text_encoder.get_input_embeddings().weight
    toy = tokenizer.encode("toy", add_special_tokens=False)[0]
    assert all(torch.equal(table[i], table[toy]) for i in slots.ids)


def test_hook_routes_gradient_to_rows_only():
    tokenizer, text_encoder = fresh_text()
    slots = add_placeholder_tokens(tokenizer, text_encoder, "<congeal>", "toy", n_vectors=2)
    rows = TrainableRows(text_encoder, slots)
    ids = tokenizer([slots.expand("a photo of a <congeal>")], padding="max_length", max_length=77,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        rows.rows.add_(0.5)  # rows differ from the table until synced
    hooked = text_encoder(ids)[0]
    hooked.square().sum().backward()
    assert rows.rows.grad is not None and rows.rows.grad.abs().sum() > 0
    assert all(p.grad is None for p in text_encoder.parameters())
    rows.remove()  # syncs the table, then detaches the hook
    with torch.no_grad():
        assert torch.allclose(text_encoder(ids)[0], hooked.detach(), atol=1e-6)
