"""Re-render a finished run's overlays (every photo beside the canonical at its estimated pose) from its files.

    rerender_overlays("out/run")                              # baked canonical of the run, CPU
    rerender_overlays("out/run", renderer=my_renderer)        # any renderer-protocol object (e.g. threestudio's)

Reads `register.json` (photo paths, crops, working size, mask source) and `poses.json` (cameras of the original
photos); each photo's working-frame camera (the same `c2w`, the FoV its square crop spans, the principal point in
crop pixels) comes from `congeal.run.outputs.working_camera`. Used by `launch.py --test` of the registration system and by users who
want the pictures again after editing a run.
"""
from pathlib import Path
from typing import Any, Optional, Union

import torch

from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.run.folder import RunFolder


def working_cameras(run_dir: PathLike, names=None):
    """Working-frame cameras of a run's photos (the inverse of what `outputs.camera_record` stored).

    Args:
        run_dir: a finished registration run.
        names: subset of image names (default: all, in poses.json order).
    Returns:
        (names, c2w [N,4,4] float32, fovy_w [N] radians, principal_w [N,2] working px, register.json entries by name).
    """
    from congeal.io.crop import Crop
    from congeal.run.outputs import working_camera

    run = RunFolder(run_dir)
    poses = run.read_poses()
    entries = {e["name"]: e for e in run.read_register()["images"]}
    names = list(poses) if names is None else list(names)
    unknown = [n for n in names if n not in poses]
    if unknown:
        raise InputError(run.poses, f"has no photos named {unknown}", "check the names")
    cameras = [working_camera(poses[n], Crop.from_dict(entries[n]["crop"])) for n in names]
    c2w = torch.stack([torch.as_tensor(c, dtype=torch.float32) for c, _, _ in cameras])
    fovy = torch.tensor([f for _, f, _ in cameras], dtype=torch.float32)
    principal = torch.stack([torch.as_tensor(p, dtype=torch.float32) for _, _, p in cameras])
    return names, c2w, fovy, principal, entries


@torch.no_grad()
def rerender_overlays(run_dir: PathLike, out_path: Optional[PathLike] = None, renderer: Any = None,
                      device: Union[str, torch.device] = "cpu", chunk: int = 32) -> Path:
    """Write `pictures/overlay-rerendered.png` (or `out_path`) for every photo of a run.

    Args:
        run_dir: a finished registration run.
        out_path: where to write the grid.
        renderer: renderer-protocol object; default: a GridRenderer over the run's canonical.safetensors.
        device: where to render.
        chunk: cameras per render call.
    Returns:
        the written path.
    """
    from congeal.canonical.grid import load_canonical
    from congeal.io.collection import load_image
    from congeal.viz.pictures import write_overlay_grid
    from congeal.canonical.render import GridRenderer
    from congeal.registration.registration_config import config_from_dict
    from congeal.geometry.cameras import Cameras
    from congeal.registration.framing import render_in_frame

    run = RunFolder(run_dir)
    cfg = config_from_dict(run.read_register()["config"])

    names, c2w, fovy, principal, entries = working_cameras(run_dir)
    if renderer is None:
        renderer = GridRenderer(load_canonical(run.canonical).to(device),
                                num_samples=cfg.final_samples)
    size = cfg.working_size
    photos = []
    for name in names:  # decoding is per file by nature
        item = load_image(entries[name]["path"], size=size, mask=cfg.mask, margin=cfg.margin)
        photos.append((item.image * item.mask).clamp(0, 1))
    cameras = Cameras(c2w, fovy, principal, size, size).to(device)
    outs = [render_in_frame(renderer, part, size) for part in cameras.split(chunk)]
    rgb = torch.cat([o["rgb"] for o in outs]).clamp(0, 1).cpu()  # [N,S,S,3]
    opacity = torch.cat([o["opacity"] for o in outs]).cpu()  # [N,S,S,1]
    path = Path(out_path) if out_path is not None else run.pictures_dir / "overlay-rerendered.png"
    poses = run.read_poses()
    statuses = [str(poses.get(name, {}).get("status", "ok")) for name in names]  # frames: failed red, undecided orange
    write_overlay_grid(path, torch.stack(photos), rgb, opacity, names, statuses=statuses)
    return path
