"""The offline CLIP tokenizer is the real one; tiny SD parts build from config."""
from helpers.textual_inversion import fresh_text, one_thread  # noqa: F401


def test_offline_tokenizer_has_clip_ids():
    tokenizer, text_encoder = fresh_text()
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    # ids of the released CLIP BPE vocabulary
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert tokenizer.tokenize("teddybear") == ["teddy", "bear</w>"]
    assert text_encoder.get_input_embeddings().weight.shape == (49408, 32)
