"""The run folder of a registration: the one place that knows its files.

    run = RunFolder("out/run")
    run.poses                      # out/run/poses.json        (public)
    run.map_path("cat_01")         # out/run/maps/cat_01.npz   (public)
    doc = run.read_register()      # register.json, validated: InputError if the folder is not a finished run
    poses = run.read_poses()       # {"cat_01": {...}}

Layout (README "Output formats"):
    poses.json, transforms.json, maps/<name>.npz      public formats
    canonical.safetensors                            the canonical the run used (the run is self-contained)
    register.json                                    config, inputs, image names, cache key        (internal)
    state/<name>.safetensors                         per-photo working-frame state (crop, warp, render)  (internal)
    cache/                                           candidate bank, search score maps, consensus field (internal)
    pictures/                                        overlays, score maps, NOCS maps, correspondences
    edits/, labels/                                  what `congeal edit` / `congeal propagate` write
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from congeal.common.errors import InputError
from congeal.common.json_files import read_json
from congeal.common.paths import PathLike
from congeal.run.outputs import read_poses

REGISTER_FORMAT = "congeal-register-v1"


@dataclass(frozen=True)
class RunFolder:
    """Paths and readers of one registration run folder."""

    root: Path

    def __init__(self, root: PathLike):
        object.__setattr__(self, "root", Path(root))

    # public files
    @property
    def poses(self) -> Path:
        return self.root / "poses.json"

    @property
    def transforms(self) -> Path:
        return self.root / "transforms.json"

    @property
    def maps_dir(self) -> Path:
        return self.root / "maps"

    def map_path(self, name: str) -> Path:
        return self.maps_dir / f"{name}.npz"

    # internal files
    @property
    def register(self) -> Path:
        return self.root / "register.json"

    @property
    def canonical(self) -> Path:
        return self.root / "canonical.safetensors"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.safetensors"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def consensus_field(self) -> Path:
        """What the registered photos' chosen poses put in the canonical (the votes of `--add`'s joint choice)."""
        return self.cache_dir / "consensus.safetensors"

    def candidates_path(self, key: str) -> Path:
        """The cached candidate bank of cache key `key`."""
        return self.cache_dir / f"candidates-{key}.safetensors"

    def candidate_banks(self) -> List[Path]:
        """Every cached candidate bank of the run (any cache key)."""
        return sorted(self.cache_dir.glob("candidates-*.safetensors"))

    @property
    def search_scores(self) -> Path:
        """Each photo's search score map, kept for pictures after `--add`."""
        return self.cache_dir / "search-scores.safetensors"

    @property
    def pictures_dir(self) -> Path:
        return self.root / "pictures"

    @property
    def edits_dir(self) -> Path:
        """Pose-aware edits (`congeal edit`): one folder per edit."""
        return self.root / "edits"

    @property
    def labels_dir(self) -> Path:
        """Propagated labels (`congeal propagate`): one folder per labels file."""
        return self.root / "labels"

    # readers
    def is_run(self) -> bool:
        return self.register.is_file()

    def read_register(self) -> Dict[str, Any]:
        """register.json of a finished run (InputError if the folder is not one)."""
        if not self.register.is_file():
            raise InputError(self.root, "is not a registration run (no register.json)",
                             "pass the --out folder of a finished `congeal register`")
        doc = read_json(self.register, fix="re-run `congeal register`", expect=dict)
        if doc.get("format") != REGISTER_FORMAT:
            raise InputError(self.register, f"is not a {REGISTER_FORMAT} file", "re-run `congeal register`")
        return doc

    def read_register_json(self) -> Optional[Dict[str, Any]]:
        """register.json as it is, or None when it is absent or unreadable (for readers with defaults)."""
        if not self.register.is_file():
            return None
        try:  # the same limits as every reader (size, depth, numbers): a hostile file reads as absent here
            return read_json(self.register, fix="re-run `congeal register`", expect=dict)
        except InputError:
            return None

    def photo_paths(self) -> Dict[str, Path]:
        """{name: original photo path} from register.json's `images` entries ({} when there are none)."""
        entries = (self.read_register_json() or {}).get("images", [])
        return {e["name"]: Path(e["path"]) for e in entries if isinstance(entries, list)
                and isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("path"), str)}

    def read_poses(self) -> Dict[str, Dict[str, Any]]:
        """poses.json as {name: record}, validated."""
        return read_poses(self.poses)

    def state_names(self) -> List[str]:
        """Photos with a state file (those whose coordinate maps can be queried), sorted."""
        return sorted(p.stem for p in self.state_dir.glob("*.safetensors"))

    def map_names(self) -> List[str]:
        """Photos with a public map file, sorted."""
        return sorted(p.stem for p in self.maps_dir.glob("*.npz"))
