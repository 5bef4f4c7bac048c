"""Pictures of a run's coordinate maps: NOCS maps and correspondence lines.

    paths = write_map_pictures("out/run")                    # photos found through register.json
    paths = write_map_pictures("out/run", images="photos/")  # or given explicitly

Writes (atomically) under OUT/pictures/:
  nocs/<name>.png            the photo with every mapped pixel coloured by its canonical xyz (one colour scale for
                             all photos, so the same colour means the same canonical point); the rest dimmed
  nocs.png                   all NOCS maps as a grid
  correspondences/<a>__<b>.png  photo pairs side by side (NOCS maps when the photos are not found), lines
                             between sample points and where they transfer (no line: no valid transfer)
The pose-aware edit (a checker painted in canonical space on every photo) is `congeal.apps.edits.textures`:
`congeal edit RUN --texture checker`, written to RUN/edits/texture-checker/.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from congeal.common.atomic import save_image
from congeal.common.paths import PathLike
from congeal.io.listing import IMAGE_SUFFIXES
from congeal.run.folder import RunFolder
from congeal.viz.pictures import image_grid


def _photo_paths(run_dir: Path, images: Optional[PathLike]) -> Dict[str, Path]:
    """{name: photo path}: from the given folder, else from register.json's `images` entries ({name, path})."""
    if images is not None:
        folder = Path(images)
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES} \
            if folder.is_dir() else {}
    return RunFolder(run_dir).photo_paths()


def _load_photo(path: Optional[Path], height: int, width: int) -> Optional[np.ndarray]:
    """The original photo as float [H,W,3] in [0,1] (transparent parts over white); None if missing/mismatched."""
    from PIL import Image, ImageOps

    if path is None or not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            rgba = np.asarray(ImageOps.exif_transpose(image).convert("RGBA"), dtype=np.float32) / 255.0
    except OSError:
        return None
    if rgba.shape[:2] != (height, width):
        return None
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def nocs_colours(xyz: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Canonical xyz [...,3] -> RGB [...,3] in [0,1] by the common bounds lo, hi [3]."""
    return np.clip((xyz - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an image [H,W,3] into a size×size tile (aspect kept, white padding)."""
    from PIL import Image

    h, w = image.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    resized = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((nw, nh), Image.BILINEAR)
    out = np.ones((size, size, 3), np.float32)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = np.asarray(resized, np.float32) / 255.0
    return out


def _grid(tiles: Sequence[np.ndarray], labels: Sequence[str], columns: int) -> np.ndarray:
    return image_grid(list(tiles), columns=columns, labels=[label[:24] for label in labels])


def _correspondence_picture(photo_a: np.ndarray, photo_b: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                            ok: np.ndarray, height: int = 256) -> np.ndarray:
    """Two photos side by side (same height) with a line per valid pair of points pa[i] -> pb[i] ([P,2] each)."""
    from PIL import Image, ImageDraw

    def scaled(photo: np.ndarray) -> Tuple[Image.Image, float]:
        s = height / photo.shape[0]
        img = Image.fromarray((np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8))
        return img.resize((max(1, round(photo.shape[1] * s)), height), Image.BILINEAR), s

    ia, sa = scaled(photo_a)
    ib, sb = scaled(photo_b)
    canvas = Image.new("RGB", (ia.width + ib.width + 8, height), (255, 255, 255))
    canvas.paste(ia, (0, 0))
    canvas.paste(ib, (ia.width + 8, 0))
    draw = ImageDraw.Draw(canvas)
    count = max(1, len(pa))
    for i in range(len(pa)):  # a handful of sampled points: drawing them one by one is fine
        hue = i / count
        colour = tuple(int(255 * c) for c in _hsv(hue))
        xa, ya = pa[i] * sa
        draw.ellipse([xa - 3, ya - 3, xa + 3, ya + 3], outline=colour, width=2)
        if ok[i]:
            xb, yb = pb[i] * sb + np.array([ia.width + 8, 0.0])
            draw.ellipse([xb - 3, yb - 3, xb + 3, yb + 3], outline=colour, width=2)
            draw.line([xa, ya, xb, yb], fill=colour, width=1)
    return np.asarray(canvas, np.float32) / 255.0


def _hsv(h: float) -> Tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(h, 0.9, 0.95)


def write_map_pictures(run_dir: PathLike, images: Optional[PathLike] = None, max_images: int = 24,
                       max_pairs: int = 6, n_points: int = 12, tile: int = 160, seed: int = 0) -> List[Path]:
    """Write the NOCS maps and correspondence lines of a run.

    Args:
        run_dir: the run (needs maps/*.npz; correspondences also need state/).
        images: the photo folder (default: the one register.json names; grey backgrounds when none is found).
        max_images: photos shown in the grids.
        max_pairs: consecutive photo pairs drawn with correspondence lines.
        n_points: sample points per pair.
        tile: grid tile side in pixels.
        seed: sampling seed for the correspondence points.
    Returns:
        the written paths.
    """
    run = RunFolder(run_dir)
    photo_paths = _photo_paths(run.root, images)
    pictures = run.pictures_dir
    names = run.map_names()[:max_images]
    if not names:
        return []
    maps: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        with np.load(run.map_path(name)) as data:
            maps[name] = (data["xyz"], data["valid"].astype(bool))
    points = [xyz[valid] for xyz, valid in maps.values() if valid.any()]
    if points:
        allp = np.concatenate(points)
        lo, hi = np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)
    else:
        lo, hi = np.zeros(3), np.ones(3)
    written: List[Path] = []
    backdrops: Dict[str, np.ndarray] = {}  # what the correspondence lines are drawn on
    nocs_tiles = []
    for name in names:
        xyz, valid = maps[name]
        found = _load_photo(photo_paths.get(name), *valid.shape)
        photo = found if found is not None else np.full((*valid.shape, 3), 0.6, dtype=np.float32)
        safe = np.where(valid[..., None], xyz, 0.0)
        nocs = np.where(valid[..., None], nocs_colours(safe, lo, hi), photo * 0.35)
        backdrops[name] = found if found is not None else nocs
        path = pictures / "nocs" / f"{name}.png"
        save_image(path, nocs)
        written.append(path)
        nocs_tiles.append(_tile(nocs, tile))
    columns = min(6, len(names))
    save_image(pictures / "nocs.png", _grid(nocs_tiles, names, columns))
    written.append(pictures / "nocs.png")

    if run.state_dir.is_dir() and len(names) > 1:
        from congeal.run.correspondence import Correspondence

        corr = Correspondence(run.root)
        rng = np.random.default_rng(seed)
        for i in range(min(max_pairs, len(names) - 1)):
            src, trg = names[i], names[i + 1]
            ys, xs = np.nonzero(maps[src][1])
            if xs.size == 0:
                continue
            pick = rng.choice(xs.size, size=min(n_points, xs.size), replace=False)
            pa = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], -1).astype(np.float32)
            pb, ok = corr.transfer(src, trg, pa)
            path = pictures / "correspondences" / f"{src}__{trg}.png"
            save_image(path, _correspondence_picture(backdrops[src], backdrops[trg], pa, pb, ok))
            written.append(path)
    return written
