"""Write a finished run's public files again from its internal state: `maps/<name>.npz` and `transforms.json`.

    reexport_run("out/run")          # e.g. after deleting maps/, or from `launch.py --export` of the registration system

Each map is recomputed from `state/<name>.safetensors` (warp + render xyz + crop) with `congeal.registration.queries.forward_map`,
the same function the registration used, so the files come back identical; `transforms.json` is rebuilt from
`poses.json` and the photo paths in `register.json`.
"""
from pathlib import Path
from typing import List

from congeal.common.atomic import write_npz
from congeal.common.paths import PathLike
from congeal.registration.registration_config import config_from_dict
from congeal.registration.queries import forward_map
from congeal.registration.state import load_image_state
from congeal.run.folder import RunFolder
from congeal.run.outputs import write_transforms


def reexport_run(run_dir: PathLike) -> List[str]:
    """Rewrite maps/*.npz and transforms.json of `run_dir`; returns the image names written."""
    run = RunFolder(run_dir)
    doc = run.read_register()
    cfg = config_from_dict(doc["config"]).mapping
    poses = run.read_poses()
    paths = {entry["name"]: Path(entry["path"]) for entry in doc["images"]}
    for name in poses:
        xyz, valid = forward_map(load_image_state(run.state_path(name)), cfg)
        write_npz(run.map_path(name), xyz=xyz.cpu().numpy().astype("float32"), valid=valid.cpu().numpy().astype(bool))
    write_transforms(run.transforms, list(poses.values()), [paths[n] for n in poses])
    return list(poses)
