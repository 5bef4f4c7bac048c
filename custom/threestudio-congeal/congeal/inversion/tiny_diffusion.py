"""Stable-Diffusion parts built from config with random weights: tiny (CPU tests) or real SD2.1-base size (benchmarks).

    tokenizer = clip_tokenizer_offline(tmp_dir)            # the real CLIP BPE, from open_clip's packaged vocabulary
    parts = build_sd_parts("tiny", tokenizer=tokenizer)     # {"tokenizer", "text_encoder", "unet", "vae", "scheduler"}
    save_sd_pipeline(parts, "model_dir")                    # a diffusers folder `congeal invert --model` can read

Nothing is downloaded. The "sd21-base" sizes are SD2.1-base's published configs (text encoder hidden size 1024,
23 layers; UNet 320-640-1280-1280, attention head dims 5-10-20-20, linear projections; VAE 128-256-512-512).
"""
import gzip
import json
from pathlib import Path
from typing import Any, Dict, Optional

from congeal.common.atomic import write_text
from congeal.common.errors import InputError
from congeal.common.paths import PathLike

SIZES = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
        unet=dict(block_out_channels=(32, 64), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
                  norm_num_groups=8, sample_size=16),
        vae=dict(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, sample_size=32),
    ),
    "sd21-base": dict(
        text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  projection_dim=512, hidden_act="gelu"),
        unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                  attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, sample_size=64),
        vae=dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, sample_size=512),
    ),
}


def _bytes_to_unicode() -> Dict[int, str]:
    # GPT-2/CLIP byte-level BPE alphabet: printable bytes map to themselves, the rest to 256+n
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def find_clip_bpe() -> Path:
    """Path of open_clip's packaged `bpe_simple_vocab_16e6.txt.gz` (found without importing open_clip)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "open_clip is not installed (it ships the CLIP BPE vocabulary)",
                         "pip install --no-deps open_clip_torch")
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise InputError(path, "CLIP BPE vocabulary missing from the open_clip package", "reinstall open_clip_torch")
    return path


def clip_tokenizer_offline(out_dir: PathLike, model_max_length: int = 77):
    """The real CLIP tokenizer (49408 entries), written as vocab.json + merges.txt into `out_dir`.

    Returns:
        transformers.CLIPTokenizer; pad token "!" as in SD2.1's tokenizer.
    """
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        lines = gzip.open(find_clip_bpe()).read().decode("utf-8").split("\n")
        merges = lines[1:49152 - 256 - 2 + 1]  # the merge table CLIP uses (48894 merges)
        alphabet = list(_bytes_to_unicode().values())
        vocab = alphabet + [a + "</w>" for a in alphabet] + ["".join(m.split()) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        # merges first, vocab last: the vocab's presence is what says the tokenizer files are complete
        write_text(merges_path, "#version: 0.2\n" + "\n".join(merges) + "\n")
        write_text(vocab_path, json.dumps({v: i for i, v in enumerate(vocab)}))
    return CLIPTokenizer(str(vocab_path), str(merges_path), pad_token="!", model_max_length=model_max_length)


def build_sd_parts(size: str = "tiny", tokenizer=None, tokenizer_dir: Optional[PathLike] = None,
                   seed: int = 0) -> Dict[str, Any]:
    """Random-weight SD parts of the named size ("tiny" or "sd21-base").

    Args:
        tokenizer: a CLIP tokenizer; built offline into `tokenizer_dir` (or a temporary folder it removes) when None.
        seed: torch seed for the random weights.
    Returns:
        {"tokenizer", "text_encoder" (CLIPTextModel), "unet" (UNet2DConditionModel), "vae" (AutoencoderKL),
         "scheduler" (DDPMScheduler, scaled_linear 0.00085-0.012, 1000 steps)}
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in SIZES:
        raise InputError(None, f"unknown model size {size!r}", f"use one of {sorted(SIZES)}")
    spec = SIZES[size]
    if tokenizer is None and tokenizer_dir is not None:
        tokenizer = clip_tokenizer_offline(tokenizer_dir)
    elif tokenizer is None:  # the tokenizer holds its vocabulary in memory: the files need not outlive the call
        with tempfile.TemporaryDirectory(prefix="congeal-clip-") as scratch:
            tokenizer = clip_tokenizer_offline(scratch)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77,
                                                pad_token_id=1, bos_token_id=49406, eos_token_id=49407, **spec["text"]))
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **spec["unet"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **spec["vae"])
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, prediction_type="epsilon",
                              steps_offset=1)
    return dict(tokenizer=tokenizer, text_encoder=text_encoder.eval(), unet=unet.eval(), vae=vae.eval(),
                scheduler=scheduler)


def save_sd_pipeline(parts: Dict[str, Any], out_dir: PathLike) -> Path:
    """Assemble a StableDiffusionPipeline from `parts` and `save_pretrained` it (a diffusers model folder)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                                   unet=parts["unet"], scheduler=parts["scheduler"], safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out_dir))
    return Path(out_dir)
