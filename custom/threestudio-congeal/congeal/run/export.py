"""Write a finished run's public files again from its internal state: `maps/<name>.npz` and `transforms.json`.

    reexport_run("out/run")          # e.g. after deleting maps/, or from `launch.py --export` of the registration system

Each map is recomputed from `state/<name>.safetensors` (warp + render xyz + crop) with `congeal.registration.mapping.forward_map`,
the same function the registration used, so the files come back identical; `transforms.json` is rebuilt from
`poses.json` and the photo paths in `register.json`.
"""
from pathlib import Path
from typing import List, Union

from congeal.common.atomic import write_npz
from congeal.common.paths import PathLike


def reexport_run(run_dir: PathLike) -> List[str]:
    """Rewrite maps/*.npz and transforms.json of `run_dir`; returns the image names written."""
    from congeal.registration.mapping import forward_map, load_image_state
    from congeal.run.outputs import read_poses, write_transforms
    from congeal.run.pipeline import config_from_dict, read_run

    run_dir = Path(run_dir)
    doc = read_run(run_dir)
    cfg = config_from_dict(doc["config"]).mapping
    poses = read_poses(run_dir / "poses.json")
    paths = {entry["name"]: Path(entry["path"]) for entry in doc["images"]}
    for name in poses:
        xyz, valid = forward_map(load_image_state(run_dir, name), cfg)
        write_npz(run_dir / "maps" / f"{name}.npz", xyz=xyz.cpu().numpy().astype("float32"),
                  valid=valid.cpu().numpy().astype(bool))
    write_transforms(run_dir / "transforms.json", list(poses.values()), [paths[n] for n in poses])
    return list(poses)
