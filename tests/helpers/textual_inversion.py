"""Tiny Stable-Diffusion parts for the textual-inversion tests (random weights, real CLIP tokenizer, built once).

    from helpers.textual_inversion import fresh_text, tiny_denoiser, pipeline_dir, collection, one_thread  # noqa: F401
    tokenizer, text_encoder = fresh_text()      # a new pair each call (placeholders mutate them)
"""
import atexit
import copy
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch


@functools.lru_cache(maxsize=None)
def _base():
    from congeal.inversion.tiny_diffusion import build_sd_parts

    root = Path(tempfile.mkdtemp(prefix="congeal-ti-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    parts = build_sd_parts("tiny", tokenizer_dir=root / "clip-bpe", seed=0)
    parts["tokenizer"].save_pretrained(str(root / "tokenizer"))
    return root, parts


def fresh_text():
    """(CLIPTokenizer, CLIPTextModel): the same weights every call, untouched by earlier tests."""
    from transformers import CLIPTokenizer

    root, parts = _base()
    return CLIPTokenizer.from_pretrained(str(root / "tokenizer")), copy.deepcopy(parts["text_encoder"])


def tiny_denoiser(output_gain: float = 1.0):
    """DiffusersDenoiser over the tiny UNet + VAE; `output_gain` scales conv_out (a copy) so text matters more."""
    from congeal.inversion.diffusers_denoiser import DiffusersDenoiser

    _, parts = _base()
    unet = parts["unet"]
    if output_gain != 1.0:
        unet = copy.deepcopy(unet)
        with torch.no_grad():
            unet.conv_out.weight.mul_(output_gain)
            unet.conv_out.bias.mul_(output_gain)
    return DiffusersDenoiser(unet, parts["vae"])


@functools.lru_cache(maxsize=None)
def pipeline_dir() -> Path:
    """A diffusers folder (StableDiffusionPipeline.save_pretrained) of the tiny parts."""
    from congeal.inversion.tiny_diffusion import save_sd_pipeline

    root, parts = _base()
    return save_sd_pipeline(parts, root / "pipeline")


def collection(n: int = 4, size: int = 32) -> torch.Tensor:
    """A fixed synthetic collection: a blue disc on a warm background at n positions -> [n,3,size,size] in [0,1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    shift = torch.linspace(-0.4, 0.4, n)[:, None, None]
    disc = (((xx[None] - shift) ** 2 + yy[None] ** 2) < 0.3).float()  # [n,H,W]
    return torch.stack([0.85 - 0.75 * disc, 0.7 - 0.5 * disc, 0.55 + 0.4 * disc], dim=1)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: thread hand-off costs more than it saves, and CPU cores are shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
