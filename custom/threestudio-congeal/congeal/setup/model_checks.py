"""The config and model rows of `congeal doctor`: is the config readable, and is every model it names on this machine?

    from congeal.setup.model_checks import check_models, load_config
    config, row = load_config("configs/congeal.yaml")
    rows = check_models(config)          # one row per model: local / in the HF cache / needs a download

Never opens a network connection: models are looked up in the on-disk Hugging Face cache (`congeal.weights`).
"""
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from congeal.common.paths import PathLike
from congeal.weights.hub_cache import hub_cache_dir, hub_offline
from congeal.weights.locate import locate, looks_like_repo_id
from congeal.weights.table import GB, KNOWN_GONE, SOURCES, ModelRef, find_gone_ids, flatten_config, refs_in_config
from congeal.setup.environment_checks import FAIL, OK, WARN, Check, short_error


# ---------------------------------------------------------------------------------------------------- config, models

def default_config_path() -> Path:
    """configs/congeal.yaml in the working directory, else in this repository."""
    here = Path("configs") / "congeal.yaml"
    if here.is_file():
        return here
    # this file is <repo>/custom/threestudio-congeal/congeal/setup/model_checks.py
    return Path(__file__).resolve().parents[4] / "configs" / "congeal.yaml"


def load_config(path: Optional[PathLike]) -> Tuple[Optional[Mapping], Check]:
    """(config as a dict or None, the row that reports it). Known-gone model ids in it are a FAIL."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        return None, Check("config", WARN, f"{path} not found; model rows use the built-in defaults",
                           "pass --config configs/congeal.yaml from the threestudio-congeal checkout")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except Exception as error:  # noqa: BLE001 - YAML syntax errors of several types
        return None, Check("config", FAIL, f"{path}: cannot parse ({short_error(error)})", "fix the YAML syntax")
    gone = find_gone_ids(text)
    if gone:
        fixes = [f"{g} -> {KNOWN_GONE[g] or 'a local copy'}" for g in gone]
        return config, Check("config", FAIL, f"{path} names models that no longer exist: {', '.join(gone)}",
                             "replace " + "; ".join(fixes))
    return config, Check("config", OK, str(path))


def check_models(config: Optional[Mapping], cache_dir: Optional[Path] = None) -> List[Check]:
    """One row per model the config uses: local / in the HF cache / needs a download (never a network call)."""
    offline = hub_offline()
    root = cache_dir or hub_cache_dir()
    rows = []
    refs = refs_in_config(config or {})
    original_guidance = [path for path, value in flatten_config(config or {}).items()
                         if path.endswith("guidance_type") and value == "mvdream-multiview-diffusion-guidance"]
    if original_guidance:  # threestudio-mvdream's own guidance still fetches the full OpenCLIP
        refs.append(ModelRef("openclip-h14", SOURCES["openclip-h14"].default + ":"
                                           + SOURCES["openclip-h14"].filename, original_guidance[0]))
    for ref in refs:
        source = SOURCES[ref.key]
        hit = locate(ref.key, ref.value, cache_dir=root)
        label = f"model {ref.key}"
        origin = f" ({ref.path})" if ref.path else " (default)"
        blocking = source.required_by == "congeal"
        is_local = not looks_like_repo_id(hit.ref)
        if ref.value == "???":  # OmegaConf's mandatory marker: the config expects it on the command line
            rows.append(Check(label, FAIL if blocking else WARN, f"{ref.path} is ??? (not set)",
                              f"set {ref.path} in the config or on the command line ({source.local})"))
            continue
        if ref.key == "openclip-h14":
            rows.append(Check(label, WARN, f"{ref.path} = mvdream-multiview-diffusion-guidance downloads OpenCLIP "
                              f"ViT-H-14 (3.94 GB) that the MVDream checkpoint overwrites; "
                              f"{'in cache' if hit.present else 'not in cache'}",
                              "set system.guidance_type: congeal-mvdream-guidance (same SDS, no OpenCLIP download)"))
        elif hit.present:
            rows.append(Check(label, OK, f"{hit.ref}{origin}: {hit.detail}"))
        elif hit.status == "gone" or is_local:  # a gone id or a wrong local path cannot be fixed by a download
            rows.append(Check(label, FAIL if blocking else WARN, f"{hit.ref}{origin}: {hit.detail}", hit.fix))
        else:
            need = f"{source.download_bytes / GB:.2f} GB"
            if offline:
                status = FAIL if blocking else WARN
                detail = f"{hit.ref}{origin}: {hit.detail}; HF_HUB_OFFLINE is set, so it cannot be downloaded"
            else:
                status = WARN
                detail = f"{hit.ref}{origin}: {hit.detail}; the first run downloads {need}"
            if not blocking:
                detail += " (used by `congeal register`, not by congeal.yaml)"
            rows.append(Check(label, status, detail, hit.fix))
    return rows
