"""The prompt-embedding cache: keys carry y*'s hash, files are written atomically, unreadable files read as None."""
import os

import pytest
import torch

from congeal.inversion import prompt_encoding
from congeal.inversion.embedding_files import embeds_hash
from congeal.inversion.prompt_encoding import cache_key, encode_prompts, read_cached_embedding

from helpers.textual_inversion import one_thread, pipeline_dir  # noqa: F401

PROMPTS = ["a photo of a <congeal>", "blurry"]


def encode(cache, embeds):
    keys = [cache_key(str(pipeline_dir()), p, embeds_hash(embeds)) for p in PROMPTS]
    encode_prompts(str(pipeline_dir()), embeds, PROMPTS, str(cache), keys)
    return [cache / f"{key}.pt" for key in keys]


def test_cache_files_read_back_and_truncated_ones_read_as_none(tmp_path):
    embeds = {"<congeal>": torch.randn(1, 32, generator=torch.Generator().manual_seed(0))}
    paths = encode(tmp_path, embeds)
    values = [read_cached_embedding(str(p)) for p in paths]
    assert all(v is not None and v.shape == (77, 32) for v in values)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])  # what a kill mid-write of plain torch.save used to leave
    assert read_cached_embedding(str(paths[0])) is None
    torch.save({"not": "an embedding"}, paths[1])
    assert read_cached_embedding(str(paths[1])) is None
    assert read_cached_embedding(str(tmp_path / "missing.pt")) is None
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)  # no temporary files left


def test_a_failed_write_leaves_no_cache_file(tmp_path, monkeypatch):
    import errno

    from congeal.common.errors import WriteError

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the disk fills up as the cache file is put in place: the atomic writer's WriteError names the file
    monkeypatch.setattr("congeal.common.atomic.os.replace", full_disk)
    with pytest.raises(WriteError, match="No space left|full"):
        encode(tmp_path, {"<congeal>": torch.zeros(1, 32)})
    assert os.listdir(tmp_path) == []  # neither a truncated cache file nor a temporary one
