"""The checks behind `congeal doctor`: the machine, threestudio and its extensions, compiled packages, versions.

    from congeal.setup.environment_checks import check_python, check_versions
    row = check_python()                 # Check("Python", "OK", "3.10.12 at /usr/bin/python3")
    rows = check_versions()              # known-bad diffusers / huggingface_hub / lightning combinations

Each check returns one or more `Check` rows (status OK / WARN / FAIL, and the fix when not OK). Rows that can block
a `congeal.yaml` run say FAIL; rows about stage 3 or about speed say WARN at worst. Nothing here opens a network
connection: versions come from package metadata. The model rows are in `congeal.setup.model_checks`, the report that
runs them all in `congeal.setup.report`.
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
from typing import Any, Dict, List, Mapping, Optional, Tuple

from congeal.common.paths import PathLike
from congeal.common.versions import MIN_THREESTUDIO, at_least, version_tuple

OK, WARN, FAIL = "OK", "WARN", "FAIL"
# MVDream's authors: SDS at 256 px wants >= 20 GB of GPU memory; the 3D Congealing paper ran on a 24 GB A5000.
MVDREAM_GPU_GB = 20.0
PAPER_GPU_GB = 24.0


@dataclass
class Check:
    """One row of the report."""

    name: str
    """What was checked ("torch", "model mvdream", ...)."""
    status: str
    """OK, WARN or FAIL."""
    detail: str
    """What was found."""
    fix: str = ""
    """What to do (empty when OK)."""

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- helpers

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


def short_error(error: BaseException, limit: int = 160) -> str:
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
        return [Check("torch", FAIL, f"not importable ({short_error(error)})",
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

def find_threestudio(path: Optional[PathLike] = None) -> Tuple[Optional[Path], str]:
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
    if not at_least(version, MIN_THREESTUDIO):
        rows = [Check("threestudio", FAIL, f"version {version or 'unknown'} at {root} ({origin})",
                      f"git pull: threestudio-mvdream needs threestudio >= {'.'.join(map(str, MIN_THREESTUDIO))}")]
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
        source = Path(__file__).resolve().parents[2]  # the extension folder (congeal/setup/ is inside it)
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
    from congeal.models.mvdream import _mvdream_fix

    rows = []
    module, error = try_import("mvdream.model_zoo")
    where = list(spec.submodule_search_locations or [spec.origin])[0]
    if module is None:
        rows.append(Check("MVDream package", FAIL, f"{where}: import fails ({short_error(error)})", _mvdream_fix(error)))
    else:
        rows.append(Check("MVDream package", OK, f"{dist_version('mvdream') or '?'} at {where}"))
    if importlib.util.find_spec("open_clip") is None:
        rows.append(Check("MVDream text encoder (open_clip)", FAIL, "open_clip is not installed",
                          "pip install open-clip-torch (it needs a torchvision that matches your torch)"))
    else:
        module, error = try_import("open_clip")
        if module is None:
            rows.append(Check("MVDream text encoder (open_clip)", FAIL, f"import open_clip fails ({short_error(error)})",
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
        return Check(label, FAIL if required else WARN, f"import fails ({short_error(error)})", pip_fix)
    if getattr(module, "__file__", None) is None:  # a compiled extension always has a file behind it
        return Check(label, FAIL if required else WARN, "no file behind the module: a stand-in, not an install",
                     pip_fix)
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
            return Check(name, FAIL, f"prebuilt kernels fail to load ({short_error(error)})",
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
    elif diffusers and at_least(hub, (0, 26)) and not at_least(diffusers, (0, 20)):
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
    elif not at_least(transformers, (4, 31)):
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
    elif lightning and version_tuple(lightning, 3) == (2, 0, 0) and version_tuple(pl, 3) != (2, 0, 0):
        rows.append(Check("pytorch-lightning", FAIL,
                          f"lightning 2.0.0 with pytorch-lightning {pl}: lightning==2.0.0 does not pin "
                          "pytorch-lightning, and newer versions leave the importance estimator's `randomized` "
                          "flag unset until system.train()",
                          "pip install pytorch-lightning==2.0.0"))
    else:
        rows.append(Check("pytorch-lightning", OK, f"{pl}" + (f" (lightning {lightning})" if lightning else "")))
    return rows
