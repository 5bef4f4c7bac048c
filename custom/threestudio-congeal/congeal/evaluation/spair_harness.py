"""SPair-71k keypoint-transfer harness: PCK@0.1 (target bbox) per category, per-point and per-image averages.

    report = evaluate_spair("SPair-71k", out="eval/spair", canonical="canonicals/")       # congeal each category
    report = evaluate_spair("SPair-71k", out="eval/spair")                                # reuse eval/spair/<cat>/
    report = evaluate_spair("SPair-71k", out="eval/nn", method="dinov2-nn", dinov2="facebook/dinov2-giant")

Protocol (docs/evaluation.md): for every pair of the split's pair list (Layout/large/test.txt), the source
keypoints are transferred to the target; a keypoint is correct when its distance to the annotated target keypoint
is <= alpha · max(w, h) of the target bounding box (x1, y1, x2, y2 from the pair annotation), alpha = 0.1.
Transfers a method marks invalid (or returns as NaN) count as misses. per_point = correct / all keypoints;
per_image = mean over pairs of the pair's fraction correct. Category means are unweighted means over categories.
"""
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float

from congeal.common.atomic import write_json
from congeal.common.errors import InputError
from congeal.common.json_files import json_ready
from congeal.common.paths import PathLike
from congeal.evaluation.metrics import bbox_threshold, mean_of, pck_correct, pck_summary
from congeal.evaluation.runs import RegisterSettings, StagedImage, registered_poses, report_stamp
from congeal.evaluation.spair import SPairDataset, SPairPair, from_continuous, to_continuous

# (predicted target keypoints [P,2] in SPair pixel indices, NaN = no prediction; valid [P])
Transfer = Callable[[SPairPair], Tuple[Float[np.ndarray, "P 2"], Bool[np.ndarray, " P"]]]

METHODS = ("congeal", "dinov2-nn")

PROTOCOL = {
    "benchmark": "SPair-71k",
    "metric": "PCK@alpha",
    "threshold": "alpha * max(x2 - x1, y2 - y1) of the TARGET bounding box (pair annotation trg_bndbox)",
    "correct_if": "euclidean distance (pixels, original target image) <= threshold",
    "invalid_transfer": "a keypoint the method cannot transfer (invalid / NaN) counts as a miss",
    "per_point": "correct keypoints / all keypoints (of the category, or of all categories for 'overall')",
    "per_image": "mean over pairs of each pair's fraction of correct keypoints ('per-image' in the SPair literature)",
    "category_mean": "unweighted mean of the per-category values over the evaluated categories",
    "keypoints": "every keypoint listed in the pair annotation (src_kps/trg_kps), no extra filtering",
    "coordinates": "SPair pixel indices; congeal runs use pixel-centre coordinates (x + 0.5) internally",
}


def evaluate_pairs(pairs: Sequence[SPairPair], transfer: Transfer, alpha: float = 0.1,
                   progress: bool = False) -> List[Dict]:
    """Score every pair.

    Args:
        pairs: annotated pairs.
        transfer: method; returns predicted target keypoints [P,2] (SPair pixel indices) and valid [P].
        alpha: PCK factor of the target bbox's longer side.
    Returns:
        per-pair records {"pair_id", "category", "src", "trg", "n_points", "n_correct", "n_invalid",
        "threshold", "correct" (list of bool)}.
    """
    records = []
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="pairs", leave=False)
    for pair in iterator:
        if len(pair.src_kps) == 0:
            pred, valid = np.zeros((0, 2)), np.zeros(0, dtype=bool)
        else:
            pred, valid = transfer(pair)
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
        valid = np.asarray(valid, dtype=bool).reshape(-1)
        if pred.shape != pair.trg_kps.shape or valid.shape[0] != len(pred):
            raise ValueError(f"transfer returned {pred.shape} points for {pair.trg_kps.shape} keypoints")
        pred = np.where(valid[:, None], pred, np.nan)
        threshold = float(bbox_threshold(torch.as_tensor(pair.trg_bbox), alpha))
        correct = pck_correct(torch.as_tensor(pred), torch.as_tensor(pair.trg_kps), threshold)
        records.append({
            "pair_id": pair.pair_id, "category": pair.category, "src": pair.src_name, "trg": pair.trg_name,
            "n_points": int(len(pred)), "n_correct": int(correct.sum()),
            "n_invalid": int((~np.isfinite(pred).all(-1)).sum()), "threshold": threshold,
            "correct": [bool(c) for c in correct],
        })
    return records


def summarise(records: Sequence[Dict]) -> Dict:
    """Per-category and overall PCK (both averages) from per-pair records."""
    by_cat: Dict[str, List[Dict]] = {}
    for record in records:
        by_cat.setdefault(record["category"], []).append(record)

    def block(recs):
        summary = pck_summary([torch.tensor(r["correct"], dtype=torch.bool) for r in recs])
        summary["n_invalid"] = sum(r["n_invalid"] for r in recs)
        summary["n_pairs_total"] = len(recs)
        return summary

    categories = {cat: block(recs) for cat, recs in sorted(by_cat.items())}
    return {
        "categories": categories,
        "mean": {
            "pck_per_point": mean_of(c["pck_per_point"] for c in categories.values()),
            "pck_per_image": mean_of(c["pck_per_image"] for c in categories.values()),
            "n_categories": len(categories),
        },
        "overall": block(records),
    }


# ------------------------------------------------------------------------------------------------ methods
def congeal_transfer(run_dir: PathLike, identity_warp: bool = False, device: str = "cpu") -> Transfer:
    """Transfer through a registration run's canonical space (Correspondence.transfer)."""
    from congeal.run.correspondence import Correspondence

    corr = Correspondence(run_dir, identity_warp=identity_warp, device=device)

    def transfer(pair: SPairPair):
        points, valid = corr.transfer(pair.src_name, pair.trg_name, to_continuous(pair.src_kps))
        return from_continuous(np.asarray(points, dtype=np.float64)), np.asarray(valid, dtype=bool)

    return transfer


def dinov2_transfer(dataset: SPairDataset, category: str, names: Sequence[str], matcher) -> Transfer:
    """Pairwise DINOv2 nearest neighbour; features of the category's images are computed once."""
    from PIL import Image

    images, sizes = [], {}
    for name in names:
        path = dataset.image_path(category, name)
        if not path.is_file():
            raise InputError(path, "image is missing", "re-extract JPEGImages/ from the SPair-71k archive")
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
        sizes[name] = (images[-1].height, images[-1].width)
    feats = dict(zip(names, matcher.features(images)))

    def transfer(pair: SPairPair):
        pred = matcher.transfer(feats[pair.src_name], feats[pair.trg_name], to_continuous(pair.src_kps),
                                sizes[pair.src_name], sizes[pair.trg_name])
        pred = pred.numpy()
        return from_continuous(pred), np.isfinite(pred).all(-1)

    return transfer


def _category_images(dataset: SPairDataset, split: str, category: str) -> List[StagedImage]:
    """Every image of the split's pairs of `category` (all pairs, also beyond max_pairs), with its mask if any."""
    names = sorted({n for p in dataset.pairs(split, category) for n in (p.src_name, p.trg_name)})
    return [StagedImage(name, dataset.image_path(category, name),
                        dataset.load_mask(category, name) if dataset.mask_path(category, name).is_file() else None)
            for name in names]


def evaluate_spair(root: PathLike, out: Optional[PathLike] = None,
                   categories: Optional[Sequence[str]] = None, split: str = "test", method: str = "congeal",
                   canonical: Optional[PathLike] = None, dinov2: Optional[str] = None,
                   dinov2_size: int = 448, alpha: float = 0.1, preset: str = "fast", features: str = "dinov2",
                   identity_warp: bool = False, device: str = "cpu", seed: int = 0, max_pairs: Optional[int] = None,
                   overrides: Optional[Sequence[str]] = None,
                   output: Optional[PathLike] = None, progress: bool = True) -> Dict:
    """Run the SPair harness and write the report JSON (see docs/evaluation.md).

    Args:
        root: SPair-71k folder.
        out: runs folder: `out/<category>/` is (or becomes, with `canonical`) that category's registration run.
            Required for method "congeal"; for "dinov2-nn" it only decides where the report goes.
        categories: default all categories with pairs in the split.
        method: "congeal" or "dinov2-nn".
        canonical: a canonical .safetensors (one category) or a folder with `<cat>.safetensors` /
            `<cat>/canonical.safetensors`; categories without a run are registered (staged images + masks in
            `out/<cat>/collection/`).
        dinov2: DINOv2 model id or local folder: the "dinov2-nn" model, and the registration's DINOv2 when
            `canonical` is given with features "dinov2" (None = the registration preset's default).
        dinov2_size: "dinov2-nn" input side (multiple of 14).
        preset, features, seed, overrides: registration settings used with `canonical` (overrides are
            "key=value" strings, see congeal.run.pipeline).
        identity_warp: congeal transfers with the pose alone (coordinate maps off), an ablation.
        max_pairs: evaluate only the first N pairs per category (smoke tests; the report says so).
        output: report path; default `<out>/eval_spair.json` (`eval_spair-dinov2-nn.json` for the baseline).
    Returns:
        the report dict that was written.
    """
    if method not in METHODS:
        raise InputError(None, f"unknown method {method!r}", f"use one of {', '.join(METHODS)}")
    if method == "congeal" and out is None:
        raise InputError(None, "method congeal needs --run-dir", "pass --run-dir OUT holding OUT/<category>/ runs")
    if method == "dinov2-nn" and not dinov2:
        raise InputError(None, "method dinov2-nn needs --dinov2", "pass --dinov2 facebook/dinov2-giant or a folder")
    settings = RegisterSettings(preset=preset, features=features, device=device, seed=seed, overrides=overrides,
                                dinov2=dinov2, progress=progress)
    dataset = SPairDataset(root)
    all_pairs = dataset.pair_ids(split)
    present = sorted({pid.rsplit(":", 1)[1] for pid in all_pairs})
    if categories:
        unknown = [c for c in categories if c not in present]
        if unknown:
            raise InputError(dataset.root, f"split {split!r} has no pairs for category {unknown}",
                             f"choose from {', '.join(present)}")
        chosen = list(categories)
    else:
        chosen = present
    if not chosen:
        raise InputError(dataset.root, f"split {split!r} lists no pairs", "check Layout/large/")

    # read (and validate) every annotation before any model loads or registration runs
    pairs_by_cat: Dict[str, List[SPairPair]] = {}
    for category in chosen:
        pairs = dataset.pairs(split, category)
        pairs_by_cat[category] = pairs if max_pairs is None else pairs[:max_pairs]

    matcher = None
    if method == "dinov2-nn":
        from congeal.evaluation.dinov2_nn import DinoNNMatcher
        from congeal.features.extractors import build_extractor

        extractor = build_extractor("dinov2", device=device, model=dinov2, input_size=dinov2_size)
        matcher = DinoNNMatcher(extractor, input_size=dinov2_size)

    start = time.time()
    records: List[Dict] = []
    runs: Dict[str, str] = {}
    for category in chosen:
        pairs = pairs_by_cat[category]
        names = sorted({p.src_name for p in pairs} | {p.trg_name for p in pairs})
        if method == "congeal":
            run_dir = Path(out) / category
            registered_poses(run_dir, canonical, category, single=len(chosen) == 1,
                             images=lambda category=category: _category_images(dataset, split, category),
                             needed=names, what=f"SPair {category}", settings=settings)
            runs[category] = str(run_dir)
            transfer = congeal_transfer(run_dir, identity_warp=identity_warp, device=device)
        else:
            transfer = dinov2_transfer(dataset, category, names, matcher)
        records.extend(evaluate_pairs(pairs, transfer, alpha=alpha, progress=progress))

    report = {
        "benchmark": "SPair-71k",
        "split": split,
        "layout": dataset.layout,
        "method": method,
        "alpha": alpha,
        "protocol": dict(PROTOCOL, metric=f"PCK@{alpha:g}"),
        "method_settings": _method_settings(method, dinov2, dinov2_size, canonical, preset, features,
                                            identity_warp, seed, overrides),
        "max_pairs_per_category": max_pairs,
        "complete": max_pairs is None and categories is None,
        **summarise(records),
        "runs": runs,
        **report_stamp(start),
    }
    if output is None:
        base = Path(out) if out is not None else Path(".")
        output = base / ("eval_spair.json" if method == "congeal" else "eval_spair-dinov2-nn.json")
    output = Path(output)
    write_json(output, json_ready(report))
    write_json(output.with_name(output.stem + ".pairs.json"), json_ready(records), indent=None)
    report["output"] = str(output)
    return report


def _method_settings(method, dinov2, dinov2_size, canonical, preset, features, identity_warp, seed,
                     overrides) -> Dict:
    if method == "dinov2-nn":
        return {"model": str(dinov2), "input_size": dinov2_size, "feature": "final layer patch tokens, L2-normalised",
                "matching": "source cell feature -> argmax cosine over all target cells -> target cell centre"}
    return {"transfer": "reverse_trg(forward_src(p)) through the canonical space (congeal.Correspondence)",
            "identity_warp": identity_warp,
            "registered_here": canonical is not None, "canonical": None if canonical is None else str(canonical),
            "preset": preset, "features": features, "dinov2": dinov2, "seed": seed,
            "overrides": list(overrides or [])}
