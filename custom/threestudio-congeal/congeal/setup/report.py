"""The report behind `congeal doctor`: every check in order, the verdict, and the Markdown table.

    from congeal.setup.report import run_checks, render_table, can_start
    checks = run_checks(threestudio="/opt/threestudio", config="configs/congeal.yaml")
    print(render_table(checks)); ok = can_start(checks)

The rows come from `congeal.setup.environment_checks` (machine, threestudio, packages, versions) and
`congeal.setup.model_checks` (config, models). A `congeal.yaml` run (stages 1+2) can start when no row is FAIL.
"""
import platform
from pathlib import Path
from typing import List, Optional

from congeal.common.paths import PathLike
from congeal.setup.environment_checks import (FAIL, WARN, Check, check_cuda_extension, check_gpu_memory, check_mvdream,
                                  check_nerfacc_kernels, check_python, check_threestudio, check_torch,
                                  check_versions, find_threestudio, gpu_memory_need)
from congeal.setup.model_checks import check_models, load_config


def run_checks(threestudio: Optional[PathLike] = None, config: Optional[PathLike] = None,
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
