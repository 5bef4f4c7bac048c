"""The set-up report behind `congeal doctor`: one row per check, each with a verdict and the fix.

    from congeal.setup.doctor import run_checks, render_table
    checks = run_checks(threestudio="/opt/threestudio", config="configs/congeal.yaml")
    print(render_table(checks)); ok = not any(c.status == "FAIL" for c in checks)

Rows that can block a `congeal.yaml` run (stages 1+2: MVDream SDS inside threestudio) say FAIL; rows about stage 3
(registration) or about speed say WARN at worst. Nothing here opens a network connection: versions come from
package metadata, models from the on-disk Hugging Face cache (`congeal.models.sources`).
"""
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from congeal.models import sources as model_sources

OK, WARN, FAIL = "OK", "WARN", "FAIL"
# MVDream's authors: SDS at 256 px wants >= 20 GB of GPU memory; the 3D Congealing paper ran on a 24 GB A5000.
MVDREAM_GPU_GB = 20.0
PAPER_GPU_GB = 24.0
MIN_THREESTUDIO = (0, 2, 0)  # threestudio-mvdream refuses older versions


@dataclass
class Check:
    """One row of the report. status: OK / WARN / FAIL; fix: what to do (empty when OK)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- helpers

def version_tuple(text: Optional[str]) -> Tuple[int, ...]:
    """'2.0.0rc1+cu118' -> (2, 0, 0); None/unparsable -> ()."""
    if not text:
        return ()
    numbers = []
    for part in re.split(r"[.+-]", text):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(numbers)


def dist_version(*names: str) -> Optional[str]:
    """Installed version of the first distribution in `names` that exists (no import), else None."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def try_import(module: str) -> Tuple[Optional[Any], Optional[BaseException]]:
    """(module, None) or (None, error) for `import module`; never raises."""
    try:
        return importlib.import_module(module), None
    except BaseException as error:  # noqa: BLE001 - compiled extensions fail in many ways (OSError, SystemExit)
        if isinstance(error, KeyboardInterrupt):
            raise
        return None, error


def _is_stand_in(module: Any) -> bool:
    # test suites register stand-ins for missing CUDA extensions; a real install always has a file behind it
    return getattr(module, "__file__", None) is None or bool(getattr(module, "__congeal_stand_in__", False)
                                                             or getattr(module, "__stand_in__", False))


def _short(error: BaseException, limit: int = 160) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------- machine

def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info < (3, 9):
        return Check("Python", FAIL, f"{version} at {sys.executable}", "use Python 3.9-3.11 (threestudio's range)")
    if sys.version_info >= (3, 12):
        return Check("Python", WARN, f"{version} at {sys.executable}",
                     "threestudio's pinned deps target 3.8-3.11; use 3.10/3.11 if an install fails")
    return Check("Python", OK, f"{version} at {sys.executable}")


def check_torch() -> List[Check]:
    """Rows: torch (version, CUDA build) and CUDA GPU (device visible)."""
    torch, error = try_import("torch")
    if torch is None:
        return [Check("torch", FAIL, f"not importable ({_short(error)})",
                      "install PyTorch with CUDA from https://pytorch.org/get-started/locally/"),
                Check("CUDA GPU", FAIL, "torch missing", "install torch first")]
    build = getattr(torch.version, "cuda", None)
    rows = [Check("torch", OK if build else FAIL,
                  f"{torch.__version__}, CUDA build {build or 'none (CPU-only build)'}",
                  "" if build else "install a CUDA build of torch (pip install torch --index-url "
                                   "https://download.pytorch.org/whl/cu121, matching your driver)")]
    if not build:
        rows.append(Check("CUDA GPU", FAIL, "no CUDA in this torch build",
                          "congeal.yaml (MVDream SDS, nerfacc) needs an NVIDIA GPU and a CUDA torch build"))
    elif not torch.cuda.is_available():
        rows.append(Check("CUDA GPU", FAIL, "torch has CUDA but sees no GPU",
                          "check nvidia-smi, the driver version, and CUDA_VISIBLE_DEVICES"))
    else:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        rows.append(Check("CUDA GPU", OK, f"{len(names)} visible: {', '.join(names)}"))
    return rows


def gpu_memory_need(config: Optional[Mapping]) -> float:
    """GB of GPU memory a congeal.yaml run needs. The only published figure is MVDream SDS at 256 px (20 GB,
    MVDream authors); it is used for every config, since stage 2 ends at 256 px."""
    return MVDREAM_GPU_GB


def check_gpu_memory(need_gb: float, total_gb: Optional[float] = None) -> Check:
    """GPU memory of device 0 against `need_gb` (`total_gb` overrides the measurement, for tests)."""
    if total_gb is None:
        torch, _ = try_import("torch")
        if torch is None or not getattr(torch.version, "cuda", None) or not torch.cuda.is_available():
            return Check("GPU memory", FAIL, f"no GPU; MVDream SDS at 256 px wants >= {need_gb:.0f} GB",
                         f"use an NVIDIA GPU with >= {need_gb:.0f} GB (the paper used {PAPER_GPU_GB:.0f} GB)")
        total_gb = torch.cuda.get_device_properties(0).total_memory / 1024 ** 3
    detail = (f"{total_gb:.1f} GB on GPU 0; MVDream SDS at 256 px wants >= {need_gb:.0f} GB "
              f"(MVDream authors), the paper ran on {PAPER_GPU_GB:.0f} GB")
    if total_gb + 0.5 < need_gb:  # cards sold as 20 GB report slightly less
        return Check("GPU memory", FAIL, detail,
                     f"use a GPU with >= {need_gb:.0f} GB, or pick the GPU with CUDA_VISIBLE_DEVICES")
    return Check("GPU memory", OK, detail)


# ---------------------------------------------------------------------------------------------------- threestudio

def find_threestudio(path: Optional[Union[str, Path]] = None) -> Tuple[Optional[Path], str]:
    """(checkout root or None, where it came from): --threestudio, else THREESTUDIO_ROOT, else an importable copy."""
    if path:
        return Path(path).expanduser().resolve(), "--threestudio"
    if os.environ.get("THREESTUDIO_ROOT"):
        return Path(os.environ["THREESTUDIO_ROOT"]).expanduser().resolve(), "THREESTUDIO_ROOT"
    try:
        spec = importlib.util.find_spec("threestudio")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent.parent, "import threestudio"
    return None, ""


def check_threestudio(root: Optional[Path], origin: str = "") -> List[Check]:
    """Rows: threestudio (version, path), threestudio-mvdream in custom/, threestudio-congeal in custom/."""
    how = ("pass --threestudio /path/to/threestudio or set THREESTUDIO_ROOT "
           "(git clone https://github.com/threestudio-project/threestudio)")
    if root is None:
        return [Check("threestudio", FAIL, "no checkout found (no --threestudio, THREESTUDIO_ROOT or import)", how),
                Check("threestudio-mvdream", FAIL, "needs threestudio", "see the threestudio row"),
                Check("threestudio-congeal extension", FAIL, "needs threestudio", "see the threestudio row")]
    init = root / "threestudio" / "__init__.py"
    if not init.is_file():
        return [Check("threestudio", FAIL, f"{root} ({origin}) is not a threestudio checkout (no threestudio/"
                                           "__init__.py)", how),
                Check("threestudio-mvdream", FAIL, "needs threestudio", "see the threestudio row"),
                Check("threestudio-congeal extension", FAIL, "needs threestudio", "see the threestudio row")]
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", init.read_text(encoding="utf-8", errors="replace"))
    version = match.group(1) if match else None
    if version is None or version_tuple(version) < MIN_THREESTUDIO:
        rows = [Check("threestudio", FAIL, f"version {version or 'unknown'} at {root} ({origin})",
                      "git pull: threestudio-mvdream needs threestudio >= 0.2.0")]
    else:
        rows = [Check("threestudio", OK, f"{version} at {root} ({origin})")]
    mvdream_ext = root / "custom" / "threestudio-mvdream"
    if (mvdream_ext / "guidance" / "mvdream_guidance.py").is_file():
        rows.append(Check("threestudio-mvdream", OK, f"{mvdream_ext}"))
    else:
        rows.append(Check("threestudio-mvdream", FAIL, f"not in {root / 'custom'}",
                          f"git clone https://github.com/DSaurus/threestudio-mvdream {mvdream_ext}"))
    ours = root / "custom" / "threestudio-congeal"
    if (ours / "__init__.py").is_file():
        rows.append(Check("threestudio-congeal extension", OK, f"{ours}"
                          + (f" -> {ours.resolve()}" if ours.is_symlink() else "")))
    else:
        source = Path(__file__).resolve().parent.parent
        rows.append(Check("threestudio-congeal extension", FAIL, f"not in {root / 'custom'}",
                          f"ln -s {source} {ours}"))
    return rows


# ---------------------------------------------------------------------------------------------------- packages

def check_mvdream() -> List[Check]:
    """Rows: MVDream importable; MVDream's text-encoder class (needs open_clip + torchvision)."""
    spec = importlib.util.find_spec("mvdream")
    if spec is None:
        return [Check("MVDream package", FAIL, "not installed",
                      "pip install git+https://github.com/bytedance/MVDream (threestudio-mvdream's requirements.txt)"),
                Check("MVDream text encoder (open_clip)", FAIL, "needs MVDream", "see the MVDream row")]
    from congeal.inversion.mvdream_model import _mvdream_fix

    rows = []
    module, error = try_import("mvdream.model_zoo")
    where = list(spec.submodule_search_locations or [spec.origin])[0]
    if module is None:
        rows.append(Check("MVDream package", FAIL, f"{where}: import fails ({_short(error)})", _mvdream_fix(error)))
    else:
        rows.append(Check("MVDream package", OK, f"{dist_version('mvdream') or '?'} at {where}"))
    if importlib.util.find_spec("open_clip") is None:
        rows.append(Check("MVDream text encoder (open_clip)", FAIL, "open_clip is not installed",
                          "pip install open-clip-torch (it needs a torchvision that matches your torch)"))
    else:
        module, error = try_import("open_clip")
        if module is None:
            rows.append(Check("MVDream text encoder (open_clip)", FAIL, f"import open_clip fails ({_short(error)})",
                              _mvdream_fix(error) if isinstance(error, ModuleNotFoundError) else
                              "reinstall open-clip-torch and a torchvision that matches your torch"))
        else:
            rows.append(Check("MVDream text encoder (open_clip)", OK,
                              f"open_clip {getattr(module, '__version__', '?')}; pretrained OpenCLIP weights are "
                              "not needed with congeal-mvdream-guidance"))
    return rows


def check_cuda_extension(name: str, pip_fix: str, required: bool = True) -> Check:
    """Is the compiled extension `name` importable (and not a test stand-in)?"""
    label = {"tinycudann": "tiny-cuda-nn", "nvdiffrast": "nvdiffrast", "nerfacc": "nerfacc"}.get(name, name)
    if importlib.util.find_spec(name) is None and name not in sys.modules:
        return Check(label, FAIL if required else WARN, "not installed", pip_fix)
    module, error = try_import(name)
    if module is None:
        return Check(label, FAIL if required else WARN, f"import fails ({_short(error)})", pip_fix)
    if _is_stand_in(module):
        return Check(label, FAIL if required else WARN, "only a test stand-in module is loaded", pip_fix)
    version = getattr(module, "__version__", None) or dist_version(name, label) or "?"
    return Check(label, OK, f"{version}")


def check_nerfacc_kernels() -> Check:
    """Can nerfacc's CUDA kernels load? Prebuilt (nerfacc.csrc) is checked by import; JIT builds are not started."""
    name = "nerfacc CUDA kernels"
    if importlib.util.find_spec("nerfacc") is None:
        return Check(name, FAIL, "nerfacc not installed", "see the nerfacc row")
    torch, _ = try_import("torch")
    if torch is None or not getattr(torch.version, "cuda", None) or not torch.cuda.is_available():
        return Check(name, FAIL, "no CUDA GPU: nerfacc's kernels are CUDA-only", "see the CUDA GPU row")
    try:
        prebuilt = importlib.util.find_spec("nerfacc.csrc")
    except (ImportError, ValueError):
        prebuilt = None
    if prebuilt is not None:
        module, error = try_import("nerfacc.csrc")
        if module is None:
            return Check(name, FAIL, f"prebuilt kernels fail to load ({_short(error)})",
                         "reinstall nerfacc built for this torch/CUDA (pip install nerfacc -f "
                         "https://nerfacc-bucket.s3.us-west-2.amazonaws.com/whl/torch-<ver>_cu<ver>.html)")
        return Check(name, OK, f"prebuilt: {prebuilt.origin}")
    try:
        from torch.utils.cpp_extension import _get_build_directory

        build_dir = Path(_get_build_directory("nerfacc_cuda", verbose=False))
        built = build_dir.is_dir() and any(build_dir.glob("*.so"))
    except Exception:  # noqa: BLE001 - private torch helper
        built = False
    if built:
        return Check(name, OK, f"JIT-built kernels in {build_dir}")
    if shutil.which("nvcc"):
        return Check(name, WARN, "no prebuilt kernels; the first run JIT-compiles them (minutes, needs nvcc)",
                     "python -c 'import nerfacc.cuda._backend' once before the run, or install a prebuilt wheel")
    return Check(name, FAIL, "no prebuilt kernels and no nvcc to JIT-compile them",
                 "install a prebuilt nerfacc wheel for your torch/CUDA, or the CUDA toolkit (nvcc)")


def check_versions() -> List[Check]:
    """diffusers / transformers / huggingface_hub / lightning / pytorch-lightning, with known-bad combinations."""
    rows = []
    diffusers = dist_version("diffusers")
    hub = dist_version("huggingface_hub", "huggingface-hub")
    transformers = dist_version("transformers")
    lightning = dist_version("lightning")
    pl = dist_version("pytorch_lightning", "pytorch-lightning")

    if hub is None:
        rows.append(Check("huggingface_hub", FAIL, "not installed", "pip install huggingface_hub"))
    elif diffusers and version_tuple(hub) >= (0, 26) and version_tuple(diffusers) < (0, 20):
        rows.append(Check("huggingface_hub", FAIL, f"{hub} with diffusers {diffusers}: huggingface_hub 0.26 removed "
                          "cached_download, which diffusers < 0.20 imports",
                          'pip install "huggingface_hub<0.26" (or upgrade diffusers)'))
    else:
        rows.append(Check("huggingface_hub", OK, hub))

    if diffusers is None:
        rows.append(Check("diffusers", FAIL, "not installed (threestudio's prompt processors import it)",
                          "pip install diffusers"))
    else:
        rows.append(Check("diffusers", OK, diffusers))

    if transformers is None:
        rows.append(Check("transformers", FAIL, "not installed (prompt processor text encoder)",
                          "pip install transformers"))
    elif version_tuple(transformers) < (4, 31):
        has_timm = importlib.util.find_spec("timm") is not None
        rows.append(Check("transformers", OK if has_timm else WARN,
                          f"{transformers}: no Dinov2Model (added in 4.31), DINOv2 features use timm "
                          f"({'installed' if has_timm else 'NOT installed'})",
                          "" if has_timm else "pip install timm (or transformers>=4.31) before `congeal register`"))
    else:
        rows.append(Check("transformers", OK, f"{transformers} (DINOv2 via transformers)"))

    if pl is None:
        rows.append(Check("pytorch-lightning", FAIL, "not installed (threestudio imports pytorch_lightning)",
                          "pip install pytorch-lightning==2.0.0 (threestudio's pin)"))
    elif lightning and version_tuple(lightning) == (2, 0, 0) and version_tuple(pl) != (2, 0, 0):
        rows.append(Check("pytorch-lightning", FAIL,
                          f"lightning 2.0.0 with pytorch-lightning {pl}: lightning==2.0.0 does not pin "
                          "pytorch-lightning, and newer versions leave the importance estimator's `randomized` "
                          "flag unset until system.train()",
                          "pip install pytorch-lightning==2.0.0"))
    else:
        rows.append(Check("pytorch-lightning", OK, f"{pl}" + (f" (lightning {lightning})" if lightning else "")))
    return rows


# ---------------------------------------------------------------------------------------------------- config, models

def default_config_path() -> Path:
    """configs/congeal.yaml in the working directory, else in this repository."""
    here = Path("configs") / "congeal.yaml"
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[3] / "configs" / "congeal.yaml"


def load_config(path: Optional[Union[str, Path]]) -> Tuple[Optional[Mapping], Check]:
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
        return None, Check("config", FAIL, f"{path}: cannot parse ({_short(error)})", "fix the YAML syntax")
    gone = model_sources.find_gone_ids(text)
    if gone:
        fixes = [f"{g} -> {model_sources.KNOWN_GONE[g] or 'a local copy'}" for g in gone]
        return config, Check("config", FAIL, f"{path} names models that no longer exist: {', '.join(gone)}",
                             "replace " + "; ".join(fixes))
    return config, Check("config", OK, str(path))


def check_models(config: Optional[Mapping], cache_dir: Optional[Path] = None) -> List[Check]:
    """One row per model the config uses: local / in the HF cache / needs a download (never a network call)."""
    offline = model_sources.hub_offline()
    root = cache_dir or model_sources.hub_cache_dir()
    rows = []
    refs = model_sources.refs_in_config(config or {})
    original_guidance = [path for path, value in model_sources.flatten_config(config or {}).items()
                         if path.endswith("guidance_type") and value == "mvdream-multiview-diffusion-guidance"]
    if original_guidance:  # threestudio-mvdream's own guidance still fetches the full OpenCLIP
        refs.append(model_sources.ModelRef("openclip-h14", model_sources.SOURCES["openclip-h14"].default + ":"
                                           + model_sources.SOURCES["openclip-h14"].filename, original_guidance[0]))
    for ref in refs:
        source = model_sources.SOURCES[ref.key]
        hit = model_sources.locate(ref.key, ref.value, cache_dir=root)
        label = f"model {ref.key}"
        origin = f" ({ref.path})" if ref.path else " (default)"
        blocking = source.required_by == "congeal"
        is_local = not model_sources.looks_like_repo_id(hit.ref)
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
            need = f"{source.download_bytes / model_sources.GB:.2f} GB"
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


# ---------------------------------------------------------------------------------------------------- report

def run_checks(threestudio: Optional[Union[str, Path]] = None, config: Optional[Union[str, Path]] = None,
               cache_dir: Optional[Path] = None) -> List[Check]:
    """Every check, in report order.

    Args:
        threestudio: checkout root (default: THREESTUDIO_ROOT, else an importable threestudio).
        config: the congealing config (default: configs/congeal.yaml).
        cache_dir: Hugging Face hub cache (default: from HF_HUB_CACHE / HF_HOME).

    Returns:
        the rows; a `congeal.yaml` run can start when none is FAIL.
    """
    cfg, config_row = load_config(config)
    rows = [check_python(), *check_torch(), check_gpu_memory(gpu_memory_need(cfg))]
    root, origin = find_threestudio(threestudio)
    rows += check_threestudio(root, origin)
    rows += check_mvdream()
    rows.append(check_cuda_extension(
        "tinycudann", "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch "
                      "(needs nvcc and a GPU at build time)"))
    rows.append(check_cuda_extension("nerfacc", "pip install nerfacc==0.5.2 (or a prebuilt wheel for your torch/CUDA)"))
    rows.append(check_nerfacc_kernels())
    rows.append(check_cuda_extension("nvdiffrast", "pip install git+https://github.com/NVlabs/nvdiffrast.git"))
    rows += check_versions()
    rows.append(config_row)
    rows += check_models(cfg, cache_dir)
    return rows


def can_start(checks: List[Check]) -> bool:
    """True when no row is FAIL."""
    return not any(check.status == FAIL for check in checks)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(checks: List[Check]) -> str:
    """A Markdown table (pastes into a GitHub issue as-is) followed by a one-line verdict."""
    from congeal import __version__

    lines = [f"congeal doctor (congeal {__version__}, {platform.system()} {platform.machine()})", "",
             "| check | status | detail | fix |", "|---|---|---|---|"]
    for check in checks:
        lines.append(f"| {_cell(check.name)} | {check.status} | {_cell(check.detail)} | {_cell(check.fix)} |")
    n_fail = sum(c.status == FAIL for c in checks)
    n_warn = sum(c.status == WARN for c in checks)
    verdict = ("a congeal.yaml run can start" if n_fail == 0 else
               f"a congeal.yaml run cannot start: fix the {n_fail} FAIL row{'s' if n_fail != 1 else ''}")
    lines += ["", f"{verdict} ({n_warn} warning{'s' if n_warn != 1 else ''})."]
    return "\n".join(lines)
