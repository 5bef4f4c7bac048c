"""`congeal bench`: time registration at real model sizes with random weights (one JSON line per stage).

    congeal bench                      # GPU: DINOv2-G/14 (1.1 B parameters, random weights), 10 photos, paper preset
    congeal bench --tiny --device cpu  # smoke test: a toy DINOv2 and a toy schedule, seconds on a CPU

The arithmetic of a randomly initialised network is the same as a pretrained one's, so timings and memory are real
without any download. Lines: `synthesise`, `build_model`, then the pipeline's stages (`load`, `candidates`,
`search`, `refine`, `select`, `mapping`, `outputs`), then a `total` line with `search_plus_refine_seconds`
(candidates + search + refine, the issue's ≤ 30 s target) and the peak memory (≤ 20 GB target).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

# ViT-g/14 as DINOv2 ships it (facebook/dinov2-giant): width 1536, 40 blocks, 24 heads, SwiGLU MLP.
# transformers sizes the SwiGLU hidden layer from mlp_ratio=4: int(2/3 · 4 · 1536) rounded up to a multiple of 8 =
# 4096, exactly ViT-g's FFN; 14-px patches; image_size 518 sets the position-embedding grid (37×37), which is
# interpolated to the 224-px input (16×16 patches).
GIANT = dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True, mlp_ratio=4,
             patch_size=14, image_size=518, layerscale_value=1.0)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=56)

# --tiny also shrinks the schedule so a CPU finishes in seconds
TINY_OVERRIDES = [
    "working_size=56", "features.input_size=56", "final_samples=24", "grid.n_azimuth=8", "grid.n_elevation=4",
    "search.render_size=64", "search.render_samples=24", "refine.steps=10", "refine.resolution=32",
    "refine.samples=16", "mapping.steps=10", "mapping.loss_resolution=28",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true", help="toy model and schedule (CPU smoke test)")
    parser.add_argument("--device", default="auto", help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--images", type=int, default=10, help="synthetic photos (default 10)")
    parser.add_argument("--preset", choices=["paper", "fast"], default="paper")
    parser.add_argument("--out", default=None, help="keep the synthetic data and the run here (default: temp dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides (repeatable)")


def build_dinov2(tiny: bool, device="cpu"):
    """A randomly initialised transformers Dinov2Model of ViT-g/14 size (or a toy one), built on `device`
    (initialising 1.1 B parameters on a GPU takes a second; on a CPU it takes most of a minute)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    with torch.device(device):
        return Dinov2Model(Dinov2Config(**(TINY if tiny else GIANT)))


def run(args: argparse.Namespace) -> int:
    import torch

    from congeal.common.device import resolve_device
    from congeal.features.extractors import DINOv2Features
    from congeal.run.pipeline import register_collection
    from congeal.synthetic.generator import make_synthetic_collection

    device = resolve_device(args.device)

    def emit(record):
        print(json.dumps(record), flush=True)

    def peak_mb() -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        start = time.perf_counter()
        collection = make_synthetic_collection(root / "collection", mode="same", n_images=args.images, seed=0)
        emit({"stage": "synthesise", "seconds": round(time.perf_counter() - start, 3), "images": args.images})

        start = time.perf_counter()
        model = build_dinov2(args.tiny, device)
        parameters = sum(p.numel() for p in model.parameters())
        input_size = 56 if args.tiny else 224
        extractor = DINOv2Features(model, input_size=input_size, device=device, batch_size=64)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        emit({"stage": "build_model", "seconds": round(time.perf_counter() - start, 3),
              "parameters": parameters, "dtype": str(extractor.dtype).replace("torch.", ""),
              "peak_memory_mb": round(peak_mb(), 1)})

        stages = []

        def on_stage(record):
            stages.append(record)
            emit(record)

        overrides = (TINY_OVERRIDES if args.tiny else []) + list(args.overrides)
        result = register_collection(collection / "canonical.safetensors", collection / "images", root / "run",
                                     preset=args.preset, features="dinov2", device=device, seed=0,
                                     overrides=overrides, progress=False, extractor=extractor, on_stage=on_stage)
        seconds = {s["stage"]: s["seconds"] for s in stages}
        core = sum(seconds.get(k, 0.0) for k in ("candidates", "search", "refine"))
        peak = max(s["peak_memory_mb"] for s in stages)
        emit({"stage": "total", "seconds": round(sum(seconds.values()), 3),
              "search_plus_refine_seconds": round(core, 3), "peak_memory_mb": round(peak, 1),
              "device": device.type, "tiny": bool(args.tiny), "mean_iou": result.summary["mean_iou"],
              "meets_time_target": core <= 30.0, "meets_memory_target": peak <= 20 * 1024})
    return 0
